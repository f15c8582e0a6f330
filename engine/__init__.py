"""The generic engine: workflow definitions, validation, the machine and the runner.

Never imports `openai`, `sqlalchemy`, `loopwright.workflows` or `loopwright.adapters`.
"""

from .compiled import Compiled
from .context import Outcome, RunContext
from .errors import (
    LLMError,
    LoopwrightError,
    ParamError,
    Problem,
    ResolveError,
    RunFinishedError,
    RunNotFoundError,
    StaleWriteError,
    StepError,
    UndeclaredOutcomeError,
    WorkflowError,
)
from .ports import LLM, Clock, IdSource, RunStore
from .registry import HandlerSpec, Registry, handler
from .run import Run
from .runner import Engine

__all__ = [
    "LLM",
    "Clock",
    "Compiled",
    "Engine",
    "HandlerSpec",
    "IdSource",
    "LLMError",
    "LoopwrightError",
    "Outcome",
    "ParamError",
    "Problem",
    "Registry",
    "ResolveError",
    "Run",
    "RunContext",
    "RunFinishedError",
    "RunNotFoundError",
    "RunStore",
    "StaleWriteError",
    "StepError",
    "UndeclaredOutcomeError",
    "WorkflowError",
    "handler",
]
