"""Errors `optml detect` and `optml tune` raise for a script they cannot work with."""

from __future__ import annotations

from optml.errors import OptMLError


class DetectError(OptMLError):
    """A model script cannot be analysed, rewritten or tuned."""


class ScriptSyntaxError(DetectError):
    """The script is not valid Python."""


class NothingToTuneError(DetectError):
    """The script has no literal the metadata table knows as a hyperparameter."""


class NoMetricError(DetectError):
    """The script computes no metric the rules recognise and has no ``optml.report(...)``."""


class MetadataError(DetectError):
    """A metadata CSV (shipped or the user's) is malformed."""
