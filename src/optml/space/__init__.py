"""Search spaces: parameters, parsing from dicts, YAML and hyperparameter files, unit-cube encoding,
and the conditional (CASH) space of several model families."""

from optml.space._conditional import MetaSpace, meta_space
from optml.space._params import Categorical, Float, Int, Param
from optml.space._parse import parse_param, parse_space, read_grid_file
from optml.space._space import Space

__all__ = [
    "Categorical",
    "Float",
    "Int",
    "MetaSpace",
    "Param",
    "Space",
    "meta_space",
    "parse_param",
    "parse_space",
    "read_grid_file",
]
