"""tqdm progress bars that stay silent unless asked for or on a terminal."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def _disable(enabled: bool | None) -> bool | None:
    # tqdm's disable=None means "disable when stderr is not a TTY" — right for CI logs.
    return None if enabled is None else not enabled


def progress_iter(it: Iterable[T], *, desc: str, enabled: bool | None = None, **kw) -> Iterable[T]:
    """Wrap ``it`` in a tqdm bar (``enabled=None``: only when stderr is a terminal)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a missing bar must never break loading
        return it
    return tqdm(it, desc=desc, disable=_disable(enabled), leave=False, **kw)


def progress_bar(total: int | None, *, desc: str, enabled: bool | None = None):
    """A byte-counting tqdm bar (or a no-op stand-in) usable as a context manager."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=_disable(enabled), leave=False)


class _NoBar:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
