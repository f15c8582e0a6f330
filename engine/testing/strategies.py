"""Hypothesis strategies for loopwright's data: JSON values, run records, agents, messages.

Values are what a real store must round-trip exactly: JSON-compatible data (finite floats,
64-bit integers, string keys), text without lone surrogates (UTF-8 cannot encode them).
"""

from __future__ import annotations

from typing import Any, Literal

from hypothesis import strategies as st

from loopwright.schemas import (
    Agent,
    Block,
    ErrorInfo,
    Message,
    Role,
    RunRecord,
    RunStatus,
    ToolCall,
)

_INT64 = st.integers(-(2**63), 2**63 - 1)
_COUNT = st.integers(0, 2**62)
_TIME = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)


def texts(*, nul: bool = False, min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Unicode text; `nul` admits U+0000 (which PostgreSQL text columns cannot hold)."""
    chars = st.characters(
        exclude_categories=_SURROGATES, exclude_characters=None if nul else "\x00"
    )
    return st.text(chars, min_size=min_size, max_size=max_size)


ids = texts(min_size=1, max_size=24)
"""Ids and names."""


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """JSON-compatible values, as `json.loads` would give them."""
    scalars = st.none() | st.booleans() | _INT64 | st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(
        scalars | texts(nul=True),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(texts(nul=True), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


params = st.dictionaries(
    ids,
    st.booleans() | _INT64 | st.floats(allow_nan=False, allow_infinity=False) | texts(),
    max_size=4,
)
"""Workflow param overrides."""

_STATUSES: list[RunStatus] = ["running", "background", "finished", "failed", "cancelled"]
run_statuses = st.sampled_from(_STATUSES)


@st.composite
def run_records(draw: st.DrawFn, *, id: str | None = None) -> RunRecord:
    """Run records with every field drawn."""
    error = st.builds(ErrorInfo, code=ids, message=texts(nul=True), retryable=st.booleans())
    return RunRecord(
        id=id if id is not None else draw(ids),
        workflow=draw(ids),
        state=draw(ids),
        status=draw(run_statuses),
        seq=draw(_COUNT),
        epoch=draw(_COUNT),
        counters=draw(st.dictionaries(ids, _INT64, max_size=4)),
        data=draw(json_values()),
        inputs=draw(json_values(max_leaves=4)),
        params=draw(params),
        visited=tuple(draw(st.lists(ids, max_size=4))),
        stop_reason=draw(st.none() | ids),
        error=draw(st.none() | error),
        key=draw(st.none() | ids),
        created_at=draw(_TIME),
        updated_at=draw(_TIME),
        started_at=draw(_TIME),
    )


tool_calls = st.builds(ToolCall, id=ids, name=ids, arguments=texts())
_ROLES: list[Role] = ["system", "user", "assistant", "tool"]
roles = st.sampled_from(_ROLES)


@st.composite
def messages(draw: st.DrawFn, *, id: str | None = None) -> Message:
    """Messages with every field drawn (not necessarily a coherent conversation)."""
    return Message(
        id=id if id is not None else draw(ids),
        role=draw(roles),
        content=draw(st.none() | texts()),
        tool_calls=tuple(draw(st.lists(tool_calls, max_size=3))),
        tool_call_id=draw(st.none() | ids),
        name=draw(st.none() | ids),
        run_id=draw(st.none() | ids),
        step=draw(_COUNT),
        incomplete=draw(st.booleans()),
        created_at=draw(_TIME),
    )


blocks = st.builds(
    Block,
    label=ids,
    value=texts(max_size=200),
    limit=st.integers(0, 2**31),
    read_only=st.booleans(),
    description=texts(),
)


@st.composite
def agents(draw: st.DrawFn, *, id: str | None = None, name: str | None = None) -> Agent:
    """Agents with every field drawn."""
    return Agent(
        id=id if id is not None else draw(ids),
        name=name if name is not None else draw(ids),
        model=draw(ids),
        system=draw(texts(max_size=200)),
        workflow=draw(ids),
        tools=tuple(draw(st.lists(ids, max_size=3))),
        params=draw(params),
        version=draw(_COUNT),
        created_at=draw(_TIME),
    )
