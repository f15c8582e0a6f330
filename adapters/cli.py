"""The `loopwright` command line: one small function per verb, imports inside the verbs.

`validate FILE...` and `graph FILE` check workflow files against the default registry (the
handlers `loopwright.workflows.registry()` names); the agent verbs live in `cli_agent`.
A bad file is never a traceback: every problem is one line `FILE: location: message`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from loopwright.engine import Compiled, Problem, Registry


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (usage errors: 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits for usage errors and --help
        return exit_.code if isinstance(exit_.code, int) else 2
    code: int = args.func(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="loopwright", description="Declarative workflows and a low-latency agent loop."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "validate",
        help="check workflow files (every problem, each located)",
        description="Check workflow files; a FILE may also name a packaged workflow.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=cmd_validate)
    graph = sub.add_parser(
        "graph",
        help="print a workflow as a Mermaid state diagram",
        description="Print a validated workflow as Mermaid `stateDiagram-v2` text.",
    )
    graph.add_argument("file", metavar="FILE")
    graph.set_defaults(func=cmd_graph)
    from .cli_agent import add_parsers
    from .cli_serve import add_parser as add_serve

    add_parsers(sub)
    add_serve(sub)
    return parser


def default_registry() -> Registry:
    """The registry workflow files resolve in: `loopwright.workflows.registry()` if it exists."""
    from loopwright.engine import Registry

    try:
        import loopwright.workflows as packaged
    except ImportError:
        return Registry()
    factory = getattr(packaged, "registry", None)
    return factory() if callable(factory) else Registry()


def cmd_validate(args: argparse.Namespace) -> int:
    """`loopwright validate FILE...`: `ok`, or every problem of every file (exit 1)."""
    registry = _registry_or_none()
    if registry is None:
        return 1
    failed = False
    for file in args.files:
        compiled = _compile(file, registry, sys.stdout)
        failed = failed or compiled is None
    if not failed:
        print("ok")
    return 1 if failed else 0


def cmd_graph(args: argparse.Namespace) -> int:
    """`loopwright graph FILE`: Mermaid text on stdout, or the problems on stderr (exit 1)."""
    from loopwright.engine.diagram import to_mermaid

    registry = _registry_or_none()
    if registry is None:
        return 1
    compiled = _compile(args.file, registry, sys.stderr)
    if compiled is None:
        return 1
    sys.stdout.write(to_mermaid(compiled.workflow))
    return 0


def _registry_or_none() -> Registry | None:
    try:
        return default_registry()
    except Exception as err:  # a broken install: say so in one line
        print(f"loopwright: cannot load the default registry: {_one_line(err)}", file=sys.stderr)
        return None


def _compile(file: str, registry: Registry, out: TextIO) -> Compiled | None:
    """The validated workflow, or None after printing its problems to `out`."""
    from loopwright.engine import Problem, WorkflowError
    from loopwright.engine.validate import load_and_validate

    try:
        return load_and_validate(_locate(file), registry)
    except WorkflowError as err:
        problems = list(err.problems)
    except Exception as err:  # a bug, not a bad file: still one line, never a traceback
        problems = [Problem("", f"internal error, please report it: {_one_line(err)}")]
    for problem in problems:
        print(f"{file}: {_format(problem)}", file=out)
    return None


def _locate(file: str) -> str:
    """A path as given, or the packaged workflow of that name when no such file exists."""
    from pathlib import Path

    from loopwright.engine.loader import packaged_workflow_path

    if Path(file).exists() or Path(file).suffix:
        return file
    try:
        return str(packaged_workflow_path(file))
    except FileNotFoundError:
        return file


def _format(problem: Problem) -> str:
    return " ".join(str(problem).splitlines())


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".splitlines())


if __name__ == "__main__":
    sys.exit(main())
