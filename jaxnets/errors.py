"""The library's exceptions, in one place.

Every one but :class:`GradientCheckError` (an ``AssertionError``: a check that fails, not bad
input) is a ``ValueError``, so a caller that catches bad input catches them all; each message
names the argument or file at fault and what is wrong with it.
"""


class DataError(ValueError):
    """A data file is missing, malformed or fails verification, or a training/evaluation array
    holds values the engine refuses (NaN/Inf, labels out of range).

    The message always names the file (or argument) and what is wrong with it.
    """


class DataNotFoundError(DataError, FileNotFoundError):
    """No copy of a data set could be found or downloaded.

    Also a ``FileNotFoundError`` so callers that fall back to another data set (MNIST full →
    MNIST-5k) can catch either.
    """


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, corrupt, or of another run or tree."""


class GradientCheckError(AssertionError):
    """A hand-written gradient disagrees with its reference; the message says where and how."""


__all__ = ["CheckpointError", "DataError", "DataNotFoundError", "GradientCheckError"]
