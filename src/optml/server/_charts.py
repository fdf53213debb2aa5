"""Chart data for the study page, aggregated or sampled on the server: each figure is a plain
plotly JSON dict (data and layout) of bounded size whatever the number of trials."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from optml.storage import TrialRow

# The most points a chart sends to the browser.
MAX_POINTS = 2000
# Bars of the error-per-configuration chart (the best configurations).
MAX_BARS = 40
# Grid cells per axis of the contour plot.
CONTOUR_BINS = 24
# Trials the contour's grid averages (a spread sample beyond that, the best always in).
CONTOUR_TRIALS = 5000
CHARTS = ("history", "bars", "parallel", "slice", "contour", "importance", "timeline")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _complete(rows: Sequence[TrialRow]) -> list[TrialRow]:
    isfinite = math.isfinite
    return [r for r in rows if r.state == "COMPLETE" and r.value is not None and isfinite(r.value)]


def _rank(r: TrialRow, minimize: bool) -> float:
    """Sort key: better first (only for completed trials, whose value is finite)."""
    v = float(r.value or 0.0)
    return v if minimize else -v


Fetch = Callable[[list[int]], dict[int, dict[str, Any]]]


def _with_params(rows: list[TrialRow], fetch: Fetch | None) -> list[TrialRow]:
    """``rows`` with their parameters, read for these trials only (a sample, not the study)."""
    if fetch is None or all(r.params is not None for r in rows):
        return rows
    params = fetch([r.number for r in rows])
    return [r._replace(params=params.get(r.number, {})) for r in rows]


def _stride(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    step = n / k
    return sorted({int(i * step) for i in range(k)} | {n - 1})


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 360,
        **extra,
    }


def history(rows: Sequence[TrialRow], metric: str, minimize: bool) -> dict[str, Any]:
    """Each completed trial's value by number, and the best value so far (a step line). Above
    MAX_POINTS trials a spread sample of the dots is sent, and every improvement of the best."""
    done = _complete(rows)
    best_x: list[int] = []
    best_y: list[float] = []
    best = math.inf if minimize else -math.inf
    for r in done:
        v = float(r.value or 0.0)
        if (v < best) if minimize else (v > best):
            best = v
            best_x.append(r.number)
            best_y.append(v)
    if done:  # the line runs on to the last trial
        best_x.append(done[-1].number)
        best_y.append(best)
    shown = [done[i] for i in _stride(len(done), MAX_POINTS)]
    return {
        "data": [
            {
                "type": "scattergl",
                "mode": "markers",
                "name": metric,
                "x": [r.number for r in shown],
                "y": [r.value for r in shown],
                "marker": {"size": 5, "opacity": 0.6},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "best so far",
                "x": best_x,
                "y": best_y,
                "line": {"shape": "hv", "width": 2},
            },
        ],
        "layout": _layout(
            f"Optimisation history ({len(done)} completed)",
            xaxis={"title": {"text": "trial"}},
            yaxis={"title": {"text": metric}},
        ),
    }


def _label(params: dict[str, Any] | None) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in (params or {}).items())


def bars(
    rows: Sequence[TrialRow], metric: str, minimize: bool, fetch: Fetch | None = None
) -> dict[str, Any]:
    """The error of each configuration, as the seed's bar charts: every one for a small study,
    the MAX_BARS best otherwise."""
    import heapq

    done = _complete(rows)
    if len(done) > MAX_BARS:
        done = heapq.nsmallest(MAX_BARS, done, key=lambda r: (_rank(r, minimize), r.number))
    done = _with_params(done, fetch)
    labels = [f"#{r.number}" for r in done]
    title = f"{metric} per configuration" + (
        f" (the {MAX_BARS} best)" if len(_complete(rows)) > MAX_BARS else ""
    )
    return {
        "data": [
            {
                "type": "bar",
                "x": labels,
                "y": [r.value for r in done],
                "text": [_label(r.params) for r in done],
                "hovertemplate": "%{x}: %{y}<br>%{text}<extra></extra>",
            }
        ],
        "layout": _layout(title, xaxis={"type": "category"}, yaxis={"title": {"text": metric}}),
    }


def _numeric(values: list[Any]) -> tuple[list[float], dict[str, Any]]:
    """A parameter's values as numbers for an axis; categories become their index (with tick
    labels), a log-spread positive range becomes log10."""
    if all(_finite(v) for v in values):
        nums = [float(v) for v in values]
        positive = [v for v in nums if v > 0]
        if len(positive) == len(nums) and nums and max(nums) / min(nums) > 1000:
            return [math.log10(v) for v in nums], {"log": True}
        return nums, {}
    cats = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(cats)}
    return [float(index[str(v)]) for v in values], {"categories": cats}


def _param_names(rows: Sequence[TrialRow]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for k in r.params or {}:
            if k not in names:
                names.append(k)
    return names


def _sample(done: list[TrialRow], k: int, minimize: bool) -> list[TrialRow]:
    """At most ``k`` trials: the best quarter of ``k``, and a spread of the rest."""
    if len(done) <= k:
        return done
    ranked = sorted(done, key=lambda r: _rank(r, minimize))
    top = ranked[: k // 4]
    rest = ranked[k // 4 :]
    rest = sorted((rest[i] for i in _stride(len(rest), k - len(top))), key=lambda r: r.number)
    return sorted(top + rest, key=lambda r: r.number)


def parallel(
    rows: Sequence[TrialRow], metric: str, minimize: bool, fetch: Fetch | None = None
) -> dict[str, Any]:
    done = _with_params(_sample(_complete(rows), MAX_POINTS // 2, minimize), fetch)
    dims = []
    for name in _param_names(done):
        values = [(r.params or {}).get(name) for r in done]
        if any(v is None for v in values):
            continue  # a parameter of another model family (CASH): not on every line
        nums, how = _numeric(values)
        dim: dict[str, Any] = {
            "label": name + (" (log10)" if how.get("log") else ""),
            "values": nums,
        }
        if "categories" in how:
            dim["tickvals"] = list(range(len(how["categories"])))
            dim["ticktext"] = how["categories"]
        dims.append(dim)
    values = [r.value for r in done]
    dims.append({"label": metric, "values": values})
    return {
        "data": [
            {
                "type": "parcoords",
                "line": {
                    "color": values,
                    "colorscale": "Viridis",
                    "reversescale": minimize,
                    "showscale": True,
                },
                "dimensions": dims,
            }
        ],
        "layout": _layout(f"Parallel coordinates ({len(done)} trials)"),
    }


def slices(
    rows: Sequence[TrialRow], metric: str, minimize: bool, fetch: Fetch | None = None
) -> dict[str, Any]:
    """The value against each parameter, one panel per parameter (up to 6)."""
    done = _with_params(_sample(_complete(rows), MAX_POINTS, minimize), fetch)
    names = _param_names(done)[:6]
    data: list[dict[str, Any]] = []
    layout = _layout(f"Slice plots ({len(done)} trials)", showlegend=False)
    n = max(1, len(names))
    for i, name in enumerate(names):
        pts = [(r.params or {}).get(name) for r in done]
        keep = [(p, r.value, r.number) for p, r in zip(pts, done, strict=True) if p is not None]
        axis = "" if i == 0 else str(i + 1)
        numeric = all(_finite(p) for p, _, _ in keep)
        data.append(
            {
                "type": "scattergl",
                "mode": "markers",
                "x": [p if numeric else str(p) for p, _, _ in keep],
                "y": [v for _, v, _ in keep],
                "text": [f"#{k}" for _, _, k in keep],
                "marker": {"size": 4, "opacity": 0.6, "color": [k for _, _, k in keep]},
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "name": name,
            }
        )
        lo, hi = i / n, (i + 1) / n - 0.04
        positive = numeric and keep and all(float(p) > 0 for p, _, _ in keep)
        wide = (
            positive
            and max(float(p) for p, _, _ in keep) / min(float(p) for p, _, _ in keep) > 1000
        )
        layout[f"xaxis{axis}"] = {
            "domain": [lo, max(lo + 0.01, hi)],
            "title": {"text": name},
            "type": "log" if wide else ("linear" if numeric else "category"),
        }
        layout[f"yaxis{axis}"] = {
            "anchor": f"x{axis}",
            **({"title": {"text": metric}} if i == 0 else {}),
        }
    return {"data": data, "layout": layout}


def contour(
    rows: Sequence[TrialRow],
    metric: str,
    minimize: bool,
    x: str | None,
    y: str | None,
    fetch: Fetch | None = None,
) -> dict[str, Any]:
    """The mean value on a CONTOUR_BINS² grid of two parameters (the first two numeric ones
    unless chosen) over at most CONTOUR_TRIALS trials, with the trials drawn over it (sampled)."""
    done = _with_params(_sample(_complete(rows), CONTOUR_TRIALS, minimize), fetch)
    names = _param_names(done)
    numeric = [n for n in names if all(_finite((r.params or {}).get(n)) for r in done)]
    x = x if x in numeric else (numeric[0] if numeric else None)
    y = y if y in numeric and y != x else next((n for n in numeric if n != x), None)
    if x is None or y is None:
        return {
            "data": [],
            "layout": _layout("Contour: needs two numeric parameters"),
            "params": numeric,
        }
    xs, xhow = _numeric([(r.params or {})[x] for r in done])
    ys, yhow = _numeric([(r.params or {})[y] for r in done])
    vals = [float(r.value or 0.0) for r in done]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    bins = CONTOUR_BINS
    sums = [[0.0] * bins for _ in range(bins)]
    counts = [[0] * bins for _ in range(bins)]

    def cell(v: float, lo: float, hi: float) -> int:
        return 0 if hi == lo else min(bins - 1, int((v - lo) / (hi - lo) * bins))

    for a, b, v in zip(xs, ys, vals, strict=True):
        i, j = cell(b, y0, y1), cell(a, x0, x1)
        sums[i][j] += v
        counts[i][j] += 1
    z = [
        [s / c if c else None for s, c in zip(sr, cr, strict=True)]
        for sr, cr in zip(sums, counts, strict=True)
    ]
    xc = [x0 + (j + 0.5) * (x1 - x0) / bins for j in range(bins)]
    yc = [y0 + (i + 0.5) * (y1 - y0) / bins for i in range(bins)]
    pick = _stride(len(xs), MAX_POINTS)
    return {
        "data": [
            {
                "type": "contour",
                "x": xc,
                "y": yc,
                "z": z,
                "connectgaps": True,
                "colorscale": "Viridis",
                "reversescale": minimize,
                "colorbar": {"title": {"text": metric}},
            },
            {
                "type": "scattergl",
                "mode": "markers",
                "x": [xs[i] for i in pick],
                "y": [ys[i] for i in pick],
                "marker": {"size": 4, "color": "white", "line": {"width": 1, "color": "black"}},
                "name": "trials",
                "showlegend": False,
            },
        ],
        "layout": _layout(
            f"Contour of {metric} over {x} and {y}",
            xaxis={"title": {"text": x + (" (log10)" if xhow.get("log") else "")}},
            yaxis={"title": {"text": y + (" (log10)" if yhow.get("log") else "")}},
        ),
        "params": numeric,
        "x": x,
        "y": y,
    }


def importance(
    rows: Sequence[TrialRow], metric: str, minimize: bool, fetch: Fetch | None = None
) -> dict[str, Any]:
    """Each parameter's importance: impurity importance of a small random forest fitted to the
    value on (at most MAX_POINTS) completed trials."""
    done = _with_params(_sample(_complete(rows), MAX_POINTS, minimize), fetch)
    names = [
        n for n in _param_names(done) if all((r.params or {}).get(n) is not None for r in done)
    ]
    scores: list[float] = []
    if len(done) >= 4 and names:
        import numpy as np
        from sklearn.ensemble import RandomForestRegressor

        columns = [_numeric([(r.params or {})[n] for r in done])[0] for n in names]
        x = np.asarray(columns, dtype=float).T
        y = np.asarray([r.value for r in done], dtype=float)
        forest = RandomForestRegressor(n_estimators=32, max_depth=8, random_state=0, n_jobs=1)
        forest.fit(x, y)
        scores = [float(s) for s in forest.feature_importances_]
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [scores[i] for i in order],
                "y": [names[i] for i in order],
            }
        ],
        "layout": _layout(
            "Parameter importance" + ("" if scores else " (needs 4 completed trials)"),
            xaxis={"title": {"text": "importance (random forest)"}},
        ),
    }


def timeline(rows: Sequence[TrialRow]) -> dict[str, Any]:
    """Trials as bars from start to end, one lane per worker, with the measured speedup: the
    trials' summed durations over the wall-clock time from the first start to the last end."""
    spans = [
        (r, r.started_at, r.finished_at or r.started_at) for r in rows if r.started_at is not None
    ]
    if not spans:
        return {"data": [], "layout": _layout("Timeline: no trial has started"), "speedup": None}
    t0 = min(start for _, start, _ in spans)
    now = max(end for _, _, end in spans)
    busy = sum(((r.finished_at or now) - start).total_seconds() for r, start, _ in spans)
    wall = (now - t0).total_seconds()
    speedup = busy / wall if wall > 0 else None
    lanes: dict[str, list[tuple[TrialRow, datetime]]] = {}
    for i in _stride(len(spans), MAX_POINTS):
        r, start, _ = spans[i]
        lanes.setdefault(f"{r.host or 'local'}:{r.runner or '?'}", []).append((r, start))
    colours = {
        "COMPLETE": "#2ca02c",
        "FAILED": "#d62728",
        "TIMEOUT": "#9467bd",
        "RUNNING": "#1f77b4",
    }
    data = []
    for lane, items in sorted(lanes.items()):
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": lane,
                "y": [lane] * len(items),
                "base": [(start - t0).total_seconds() for _, start in items],
                "x": [
                    max(0.001, ((r.finished_at or now) - start).total_seconds())
                    for r, start in items
                ],
                "text": [f"#{r.number} {r.state}" for r, _ in items],
                "marker": {"color": [colours.get(r.state, "#7f7f7f") for r, _ in items]},
                "hovertemplate": "%{text}: %{x:.2f} s<extra></extra>",
                "textposition": "none",
                "showlegend": False,
            }
        )
    title = f"Trials per worker ({len(lanes)} lanes)"
    if speedup is not None:
        title += f": measured speedup {speedup:.2f}x over one after another"
    return {
        "data": data,
        "layout": _layout(
            title,
            barmode="overlay",
            xaxis={"title": {"text": "seconds since the first trial started"}},
            yaxis={"type": "category"},
        ),
        "speedup": speedup,
        "busy_s": busy,
        "wall_s": wall,
    }


def figure(
    chart: str,
    rows: Sequence[TrialRow],
    metric: str,
    minimize: bool,
    x: str | None = None,
    y: str | None = None,
    fetch: Fetch | None = None,
) -> dict[str, Any]:
    """The figure ``chart`` (one of CHARTS) of a study's ``rows``; ``fetch(numbers)`` reads the
    parameters of the trials a chart shows when the rows come without them."""
    if chart == "history":
        return history(rows, metric, minimize)
    if chart == "bars":
        return bars(rows, metric, minimize, fetch)
    if chart == "parallel":
        return parallel(rows, metric, minimize, fetch)
    if chart == "slice":
        return slices(rows, metric, minimize, fetch)
    if chart == "contour":
        return contour(rows, metric, minimize, x, y, fetch)
    if chart == "importance":
        return importance(rows, metric, minimize, fetch)
    return timeline(rows)


# Charts drawn from completed trials only (the timeline shows every trial that started).
COMPLETE_ONLY = frozenset({"history", "bars", "parallel", "slice", "contour", "importance"})
