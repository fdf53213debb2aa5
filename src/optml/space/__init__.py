"""Search spaces: parameters, parsing from dicts, YAML and hyperparameter files, unit-cube encoding."""

from optml.space._params import Categorical, Float, Int, Param
from optml.space._parse import parse_param, parse_space, read_grid_file
from optml.space._space import Space

__all__ = [
    "Categorical",
    "Float",
    "Int",
    "Param",
    "Space",
    "parse_param",
    "parse_space",
    "read_grid_file",
]
