"""Objectives: how a trial runs user code (a Python callable, a model module, a command line)."""

from optml.objectives._base import (
    Objective,
    TrialContext,
    TrialPrunedError,
    TrialTimeoutError,
    normalize_result,
    optimised_value,
    primary_value,
)
from optml.objectives._command import CommandObjective
from optml.objectives._python import FunctionObjective, ModuleObjective, load_callable, load_module

__all__ = [
    "CommandObjective",
    "FunctionObjective",
    "ModuleObjective",
    "Objective",
    "TrialContext",
    "TrialPrunedError",
    "TrialTimeoutError",
    "load_callable",
    "load_module",
    "normalize_result",
    "optimised_value",
    "primary_value",
]
