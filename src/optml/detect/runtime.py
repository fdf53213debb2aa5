"""What a script rewritten by ``optml detect`` imports: the trial's values and its metric."""

from __future__ import annotations

import math
from typing import Any

params: dict[str, Any] = {}
_recorded: list[float] = []


def start(values: dict[str, Any]) -> None:
    """Begin a trial: the rewritten script reads ``values`` through ``optml_params``."""
    params.clear()
    params.update(values)
    _recorded.clear()


def _number(value: Any) -> float:
    if hasattr(value, "item"):  # a NumPy scalar or a one-element tensor
        value = value.item()
    return float(value)


def record(value: Any, how: str = "value") -> Any:
    """Note the metric a statement computed and give the value back unchanged.

    ``how`` converts it: ``evaluate`` (Keras: the loss, first of a list), ``fit`` (Keras: the best
    ``val_loss`` of the history), ``mean`` (``cross_val_score``'s scores), ``value``/``report``.
    """
    if how == "evaluate":
        metric = value[0] if isinstance(value, list | tuple) else value
        if isinstance(metric, dict):
            metric = metric.get("loss")
        _recorded.append(_number(metric))
    elif how == "fit":
        history = getattr(value, "history", {})
        losses = history.get("val_loss") or history.get("loss") or []
        if losses:
            _recorded.append(min(_number(v) for v in losses))
    elif how == "mean":
        scores = [_number(v) for v in value]
        _recorded.append(sum(scores) / len(scores) if scores else math.nan)
    else:
        _recorded.append(_number(value))
    return value


def result() -> float:
    """The trial's metric: the last value recorded."""
    if not _recorded:
        raise RuntimeError(
            "the script finished without computing its metric (the statement that computes it "
            "did not run); check its control flow or mark the metric with optml.report(value)"
        )
    return _recorded[-1]
