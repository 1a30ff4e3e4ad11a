"""Warnings: what a run survives but its user should know (a damaged checkpoint moved aside, a
torn metrics line dropped, cuDNN attention unavailable). Issued through the warnings module,
so a notebook or a test sees them as such; the command line shows each as one line,
`warning: ...`, on stderr."""

from __future__ import annotations

import warnings


class RectbertWarning(UserWarning):
    """Something a run survived that its user should know."""


def warn(message: str) -> None:
    warnings.warn(message, RectbertWarning, stacklevel=3)


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """warn(message) the first time this process is told it (e.g. once per traced layer)."""
    if message not in _WARNED:
        _WARNED.add(message)
        warn(message)
