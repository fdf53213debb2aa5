"""Samplers: grid, random, quasi-random and the model-based ones, all behind one contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optml.errors import SpecError
from optml.samplers._base import Metric, Sampler, SearchContext, TrialMemo, fill_unique
from optml.samplers._simple import GridSampler, LatinHypercubeSampler, RandomSampler, SobolSampler
from optml.space import Space

# name -> "module:Class", imported on demand so that `import optml` stays light.
_REGISTRY: dict[str, str] = {
    "grid": "optml.samplers._simple:GridSampler",
    "random": "optml.samplers._simple:RandomSampler",
    "sobol": "optml.samplers._simple:SobolSampler",
    "lhs": "optml.samplers._simple:LatinHypercubeSampler",
    "tpe": "optml.samplers._tpe:TPESampler",
    "gp": "optml.samplers._gp:GPSampler",
    "forest": "optml.samplers._forest:ForestSampler",
    "cmaes": "optml.samplers._cmaes:CMAESSampler",
    "meta": "optml.samplers._meta:MetaSampler",
    "nsga2": "optml.samplers._nsga2:NSGA2Sampler",
    "auto": "optml.samplers._auto:AutoSampler",
}


def available_samplers() -> list[str]:
    return sorted(_REGISTRY)


def make_sampler(spec: str | Mapping[str, Any] | Sampler, **context: Any) -> Sampler:
    """Build a sampler from its name or ``{"name": ..., **options}`` (as :meth:`Sampler.to_spec`)."""
    if isinstance(spec, Sampler):
        if isinstance(context.get("space"), Space):
            spec.check_space(context["space"])
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    options = dict(spec)
    name = str(options.pop("name", ""))
    if name not in _REGISTRY:
        raise SpecError(f"algorithm: unknown {name!r}; choose one of {available_samplers()}")
    module_name, _, class_name = _REGISTRY[name].partition(":")
    import importlib

    cls: type[Sampler] = getattr(importlib.import_module(module_name), class_name)
    return cls.from_spec(options, **context)


__all__ = [
    "GridSampler",
    "LatinHypercubeSampler",
    "Metric",
    "RandomSampler",
    "Sampler",
    "SearchContext",
    "TrialMemo",
    "SobolSampler",
    "available_samplers",
    "fill_unique",
    "make_sampler",
]
