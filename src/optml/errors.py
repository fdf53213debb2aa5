"""Errors a user can cause: each says what was wrong, where, and what is accepted."""

from __future__ import annotations


class OptMLError(Exception):
    """Base class of every error OptML raises for bad input or a bad state a user can fix."""


class SpaceError(OptMLError):
    """A search space (dict, YAML or hyperparameter file) is malformed."""


class SpecError(OptMLError):
    """A study spec is malformed."""


class StorageError(OptMLError):
    """A storage URL, study or trial lookup failed."""


class LostTrialError(StorageError):
    """A controller tried to change a trial it no longer owns (taken for dead, and requeued)."""


class StudyNotFoundError(StorageError):
    """No study of that name exists in the storage."""


class DuplicateStudyError(StorageError):
    """A study of that name already exists in the storage."""


class ObjectiveError(OptMLError):
    """The objective could not be loaded or returned something unusable."""


class GpuError(OptMLError):
    """A study asks for GPUs that the machine or cluster does not offer (or not whole ones)."""


class MissingDependencyError(OptMLError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_dependency(module: str, extra: str) -> MissingDependencyError:
    """Build the error for an optional import that failed."""
    return MissingDependencyError(
        f"this feature needs the optional package {module!r}: install it with "
        f"pip install 'optml[{extra}]'"
    )


class Terminated(KeyboardInterrupt):
    """A run was asked to stop by SIGTERM; it stops as after Ctrl-C (see ``Study.optimize``)."""
