"""Progress of a long stage, said as it goes: a line with its rate and ETA at most every EVERY
seconds, to stdout (SAY) unless told otherwise. Used by the oracle's calls
(rectbert/analysis/calls.py) and by building thousands of drawings (rectbert/geometry)."""

from __future__ import annotations

import functools
import time

SAY = functools.partial(print, flush=True)  # progress lines go to stdout as they happen
EVERY = 10.0  # seconds between progress lines


def eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Rate:
    """Progress of a stage over `total` units: a line with units/s and ETA at most every
    `every` seconds (default EVERY; nothing for a stage shorter than that)."""

    def __init__(self, what: str, total: int, say=None, unit: str = "examples", every=None):
        self.what, self.total, self.say, self.unit = what, total, say, unit
        self.every = EVERY if every is None else every
        self.start = self.last = time.time()

    def done(self, n: int) -> None:
        now = time.time()
        if self.say is None or now - self.last < self.every:
            return
        self.last, rate = now, n / max(now - self.start, 1e-9)
        self.say(
            f"  {self.what}: {n}/{self.total} {self.unit}  {rate:.3g} {self.unit}/s  "
            f"ETA {eta((self.total - n) / rate)}"
        )
