"""StreamFold: provider quirks one by one, and properties over random fragmented scripts."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopwright.engine.errors import LLMError
from loopwright.engine.testing.chunks import (
    content_chunk,
    delta_chunk,
    error_chunk,
    finish_chunk,
    role_chunk,
    tool_call_chunk,
    usage_chunk,
)
from loopwright.workflows.agent.fold import StreamFold


def fold_all(chunks: list[dict[str, Any]]) -> StreamFold:
    fold = StreamFold()
    for chunk in chunks:
        fold.add(chunk)
    return fold


def test_text_is_returned_as_it_arrives_including_on_the_finish_chunk() -> None:
    fold = StreamFold()
    assert fold.add(role_chunk()) == ""
    assert fold.add(content_chunk("Hel")) == "Hel"
    # vLLM: the last text rides on the chunk with finish_reason "length".
    assert fold.add(delta_chunk({"content": "lo"}, finish_reason="length")) == "lo"
    result = fold.result()
    assert (result.text, result.finish_reason, result.outcome) == ("Hello", "length", "reply")


def test_tool_call_decided_from_content_not_finish_reason() -> None:
    # Ollama: the whole call with no index in the role chunk, then finish_reason "stop".
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    fold = fold_all(
        [
            delta_chunk({"role": "assistant", "content": "", "tool_calls": [call]}),
            delta_chunk({"role": "assistant", "content": ""}, finish_reason="stop"),
        ]
    )
    result = fold.result()
    assert result.outcome == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("call_1", "f", '{"a": 1}')]


def test_parallel_calls_in_one_delta_without_index_stay_apart() -> None:
    # Mistral: two whole calls in one delta, no index, no type.
    calls = [
        {"id": "a1", "function": {"name": "plus", "arguments": '{"a": 1}'}},
        {"id": "b2", "function": {"name": "minus", "arguments": '{"b": 2}'}},
    ]
    fold = StreamFold()
    fold.add(delta_chunk({"tool_calls": calls}, finish_reason="tool_calls"))
    assert list(fold.started) == [0, 1]
    assert list(fold.fragments) == [(0, '{"a": 1}'), (1, '{"b": 2}')]
    got = [(c.id, c.name, c.arguments) for c in fold.result().tool_calls]
    assert got == [("a1", "plus", '{"a": 1}'), ("b2", "minus", '{"b": 2}')]


def test_an_index_reused_with_a_new_id_is_a_new_call() -> None:
    fold = fold_all(
        [
            tool_call_chunk(0, id="x", name="f", arguments='{"n":'),
            tool_call_chunk(0, arguments="1}"),
            tool_call_chunk(0, id="y", name="g", arguments="{}"),
        ]
    )
    got = [(c.id, c.name, c.arguments) for c in fold.result().tool_calls]
    assert got == [("x", "f", '{"n":1}'), ("y", "g", "{}")]


def test_ids_and_names_repeated_or_null_on_every_fragment() -> None:
    fold = fold_all(
        [
            # Kimi via OpenRouter: id, type and name again on each fragment.
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "0",
                            "type": "function",
                            "function": {"name": "v", "arguments": ""},
                        }
                    ]
                }
            ),
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "0",
                            "type": "function",
                            "function": {"name": "v", "arguments": "{}"},
                        }
                    ]
                }
            ),
            # Together: continuation fragments with explicit nulls.
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "w", "arguments": ""},
                        }
                    ]
                }
            ),
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": None,
                            "type": "function",
                            "function": {"name": None, "arguments": '{"p": 1}'},
                        }
                    ]
                }
            ),
        ]
    )
    got = [(c.id, c.name, c.arguments) for c in fold.result().tool_calls]
    assert got == [("0", "v", "{}"), ("c2", "w", '{"p": 1}')]


def test_call_without_arguments_key_and_arguments_as_an_object() -> None:
    fold = fold_all(
        [
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "k",
                            "type": "function",
                            "function": {"name": "llm_version"},
                        }
                    ]
                }
            ),
            delta_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "m",
                            "function": {"name": "obj", "arguments": {"a": [1]}},
                        }
                    ]
                }
            ),
        ]
    )
    got = [(c.id, c.name, c.arguments) for c in fold.result().tool_calls]
    assert got == [("k", "llm_version", ""), ("m", "obj", '{"a": [1]}')]


def test_call_without_id_gets_a_stable_generated_one() -> None:
    chunks = [
        delta_chunk(
            {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}, meta={"id": "resp1"}
        )
    ]
    first, second = fold_all(chunks).result(), fold_all(chunks).result()
    assert first.tool_calls[0].id == second.tool_calls[0].id == "call_resp1_0"


def test_usage_anywhere_is_kept_and_never_overwritten_by_null() -> None:
    azure_filter = {
        "id": "",
        "object": "",
        "model": "",
        "created": 0,
        "choices": [],
        "prompt_filter_results": [],
    }
    fold = fold_all(
        [
            azure_filter,  # empty choices, no usage: not a usage chunk
            role_chunk(meta={"id": "r", "model": "m"}),
            content_chunk("hi"),
            finish_chunk("stop"),
            usage_chunk(3, 4),
            {"id": "r", "choices": [], "moderation": {}, "usage": None},  # gpt-5 trailing chunk
        ]
    )
    result = fold.result()
    assert result.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert (result.response_id, result.model) == ("r", "m")


def test_usage_on_the_finish_chunk_and_repeated_finish_keeps_the_first() -> None:
    fold = fold_all(
        [
            tool_call_chunk(0, id="c", name="f", arguments="{}"),
            finish_chunk("tool_calls"),
            finish_chunk("tool_calls"),
            finish_chunk(
                "stop", usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
            ),
        ]
    )
    result = fold.result()
    assert result.finish_reason == "tool_calls"
    assert result.usage is not None
    assert result.usage["total_tokens"] == 3


def test_only_choice_zero_is_folded() -> None:
    def choice(index: int, text: str) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "finish_reason": None}

    fold = StreamFold()
    assert fold.add({"id": "n", "choices": [choice(1, "B")]}) == ""
    assert fold.add({"id": "n", "choices": [choice(2, "C"), choice(0, "A")]}) == "A"
    assert fold.result().text == "A"


def test_reasoning_is_never_visible_and_refusal_is_heard_but_kept_apart() -> None:
    fold = StreamFold()
    assert fold.add(delta_chunk({"content": None, "reasoning_content": "hmm"})) == ""
    assert fold.add(delta_chunk({"reasoning": " so", "channel": "analysis"})) == ""
    assert fold.add(delta_chunk({"content": None, "refusal": ""})) == ""
    assert fold.add(delta_chunk({"refusal": "No."})) == "No."  # the user hears a refusal
    assert fold.add(delta_chunk({"content": "", "refusal": "", "tool_calls": []})) == ""
    result = fold.result()
    assert (result.text, result.reasoning, result.refusal) == ("", "hmm so", "No.")
    assert result.tool_calls == ()


def test_empty_refusals_are_no_refusal() -> None:
    fold = fold_all([delta_chunk({"content": "4", "refusal": "", "tool_calls": None})])
    assert fold.result().refusal is None


def test_error_object_inside_a_chunk_raises() -> None:
    fold = StreamFold()
    fold.add(content_chunk("partial"))
    with pytest.raises(LLMError) as caught:
        fold.add(error_chunk("Token limit reached", code=400))
    assert caught.value.code == "bad_request"
    assert fold.text == "partial"


def test_clean_eof_without_finish() -> None:
    result = fold_all([role_chunk(), content_chunk("1\n2")]).result()
    assert (result.text, result.finish_reason, result.usage) == ("1\n2", None, None)


def test_fragments_and_started_describe_only_the_last_chunk() -> None:
    fold = StreamFold()
    fold.add(tool_call_chunk(0, id="a", name="f", arguments=""))
    assert (list(fold.started), list(fold.fragments)) == ([0], [])
    fold.add(tool_call_chunk(0, arguments='{"pre'))
    assert (list(fold.started), list(fold.fragments)) == ([], [(0, '{"pre')])
    fold.add(content_chunk("x"))
    assert (list(fold.started), list(fold.fragments)) == ([], [])
    assert (fold.name_of(0), fold.id_of(0), fold.arguments_of(0)) == ("f", "a", '{"pre')


# -- properties -------------------------------------------------------------------------------

_json = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    max_size=4,
)
_calls = st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _json), max_size=4)
STYLES = ["indexed", "repeat_ids", "nulls", "no_index", "no_index_whole", "index_reused"]


def _pieces(draw: Any, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=6))))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _entry(style: str, index: int, call_id: str, name: str, args: str, head: bool) -> Any:
    entry: dict[str, Any] = {"function": {"arguments": args}}
    if style in ("indexed", "repeat_ids", "nulls"):
        entry["index"] = index
    elif style == "index_reused":
        entry["index"] = 0
    if head or style == "repeat_ids":
        entry["id"] = call_id
        entry["function"]["name"] = name
    elif style == "nulls":
        entry["id"] = None
        entry["function"]["name"] = None
    return entry


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, list[tuple[str, str, str]]]:
    """Chunks of a random text + parallel-calls response in one provider style."""
    style = draw(st.sampled_from(STYLES))
    text = draw(st.text(max_size=30))
    calls = [(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(draw(_calls))]
    chunks = [role_chunk()] + [content_chunk(p) for p in _pieces(draw, text)]
    if style == "no_index_whole":  # Mistral: every call whole, all in one delta
        if calls:
            entries = [_entry(style, i, c, n, a, True) for i, (c, n, a) in enumerate(calls)]
            chunks.append(delta_chunk({"tool_calls": entries}))
    else:
        for i, (call_id, name, args) in enumerate(calls):
            pieces = _pieces(draw, args)
            chunks.append(delta_chunk({"tool_calls": [_entry(style, i, call_id, name, "", True)]}))
            chunks += [
                delta_chunk({"tool_calls": [_entry(style, i, call_id, name, p, False)]})
                for p in pieces
            ]
    chunks.append(finish_chunk(draw(st.sampled_from(["stop", "tool_calls"]))))
    usage_at = draw(st.integers(0, len(chunks)))
    chunks.insert(usage_at, usage_chunk(5, 6))
    return chunks, text, calls


@given(scripts())
def test_fold_recovers_text_and_calls_exactly(
    script: tuple[list[dict[str, Any]], str, list[tuple[str, str, str]]],
) -> None:
    chunks, text, calls = script
    fold = StreamFold()
    streamed: list[str] = []
    fragments: dict[int, str] = {}
    for chunk in chunks:
        streamed.append(fold.add(chunk))
        for position, piece in fold.fragments:
            fragments[position] = fragments.get(position, "") + piece
    result = fold.result()
    assert "".join(streamed) == result.text == text
    got = [(c.id, c.name, c.arguments) for c in result.tool_calls]
    assert got == calls  # parallel calls never merge, order kept
    assert fragments == {i: a for i, (_, _, a) in enumerate(calls) if a}
    assert result.outcome == ("tool_calls" if calls else "reply")
    assert result.usage == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}


@given(_calls.filter(lambda calls: len(calls) >= 2), st.data())
def test_interleaved_indexed_fragments_still_fold_by_index(
    calls: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    expected, queues = [], []
    for i, (name, args) in enumerate(calls):
        text = json.dumps(args)
        expected.append((f"call_{i}", name, text))
        queue = [tool_call_chunk(i, id=f"call_{i}", name=name, arguments="")]
        queue += [tool_call_chunk(i, arguments=p) for p in _pieces(data.draw, text)]
        queues.append(queue)
    mixed = []
    while any(queues):
        mixed.append(data.draw(st.sampled_from([q for q in queues if q])).pop(0))
    result = fold_all(mixed).result()
    assert sorted((c.id, c.name, c.arguments) for c in result.tool_calls) == expected
