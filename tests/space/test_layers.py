"""Dependencies point down: the space and storage layers (and the trial record, constraints and
ranking beneath them) import nothing from the samplers or anything above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import optml

SRC = Path(optml.__file__).parent
LOWER = [
    *sorted((SRC / "space").glob("*.py")),
    *sorted((SRC / "storage").glob("*.py")),
    SRC / "trial.py",
    SRC / "constraints.py",
    SRC / "ranking.py",
]
ABOVE = ("optml.samplers", "optml.study", "optml._controller", "optml.cli", "optml.objectives")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", LOWER, ids=lambda p: str(p.relative_to(SRC)))
def test_lower_layers_import_nothing_from_above(path: Path) -> None:
    upward = sorted(m for m in _imports(path) if m.startswith(ABOVE))
    assert not upward, f"{path.relative_to(SRC)} imports {upward}"


def test_metric_and_the_cash_space_keep_their_public_names() -> None:
    from optml.samplers import Metric as SamplersMetric
    from optml.samplers._meta import MetaSpace as OldMetaSpace
    from optml.space import MetaSpace
    from optml.trial import Metric

    assert optml.Metric is Metric is SamplersMetric
    assert OldMetaSpace is MetaSpace
