"""Long computations as short compiled calls: a batch of examples cut into chunks of a fixed
size (one compilation), each call waited for with the main thread free to take a signal,
its memory measured before it runs, and a progress line with examples/s and ETA.

A compiled call of minutes (the oracle on a grid glyph run takes minutes an example on a
CPU) would hold a stop until it ends: each call here is signals.responsive.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np

from rectbert import files
from rectbert.training.progress import eta
from rectbert.training.signals import responsive

SAY = functools.partial(print, flush=True)  # progress lines go to stdout as they happen
EVERY = 10.0  # seconds between progress lines
KEEP = 16  # compiled programs kept (compiled)


class TooLarge(ValueError):
    """A compiled call needs more memory than the device has free (one line)."""


def free_bytes() -> int | None:
    """The memory free for a call on the default device: an accelerator's own (its limit less
    what is in use), the host's available memory on a CPU; None where neither is known."""
    stats = getattr(jax.local_devices()[0], "memory_stats", lambda: None)()
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = getattr(os, "sysconf", lambda _: -1)
    try:
        return int(pages("SC_AVPHYS_PAGES")) * int(pages("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return None


_COMPILED: dict = {}


def compiled(jitted, args: tuple, statics: tuple, what: str, say=None):
    """The compiled program of `jitted` for these arguments (dynamic `args` first, then the
    `statics`), compiled once per shapes and statics; TooLarge, in one line, when XLA's own
    count of what one call holds (arguments, outputs, temporaries) is more than is free. A
    compilation of EVERY seconds or more is said to `say`."""
    shapes = tuple((np.shape(a), str(getattr(a, "dtype", type(a)))) for a in args)
    key = (jitted, shapes, statics)
    if key not in _COMPILED:
        start = time.time()
        program = responsive(lambda: jitted.lower(*args, *statics).compile())
        seconds = time.time() - start
        m = program.memory_analysis()
        need = None if m is None else m.temp_size_in_bytes + m.output_size_in_bytes
        if say is not None and seconds >= EVERY:  # a long compilation: said, with its cost
            cost = "" if need is None else f"; {need / 2**30:.2f} GiB a call (XLA's count)"
            say(f"  {what}: compiled in {seconds:.0f} s{cost}")
        if need is not None:
            need += m.argument_size_in_bytes
            free = free_bytes()
            if free is not None and need > free:
                raise TooLarge(
                    f"{what} needs {need / 2**30:.1f} GiB a call (XLA's count for this scene and "
                    f"these points) and {free / 2**30:.1f} GiB is free on "
                    f"{jax.local_devices()[0].platform}: a machine with more memory runs it"
                )
        if len(_COMPILED) >= KEEP:  # the oldest program goes
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = program
    return _COMPILED[key]


class Rate:
    """Progress of a stage over `total` examples: a line with examples/s and ETA at most every
    EVERY seconds (nothing for a stage shorter than that)."""

    def __init__(self, what: str, total: int, say=None):
        self.what, self.total, self.say = what, total, say
        self.start = self.last = time.time()

    def done(self, n: int) -> None:
        now = time.time()
        if self.say is None or now - self.last < EVERY:
            return
        self.last, rate = now, n / max(now - self.start, 1e-9)
        self.say(
            f"  {self.what}: {n}/{self.total} examples  {rate:.3g} examples/s  "
            f"ETA {eta((self.total - n) / rate)}"
        )


def in_chunks(jitted, mapped: tuple, shared: tuple, statics: tuple, chunk: int, *, what, say=None):
    """jitted(*mapped, *shared, *statics), a program mapped over the examples (the first axis
    of each of `mapped`), as calls of `chunk` examples (the last padded with copies of the
    last example, then dropped), each responsive, its memory checked once (compiled); numpy
    outputs, and a progress line to `say` every EVERY seconds."""
    b = int(np.shape(mapped[0])[0])
    if b == 0:  # no call: the outputs' shapes, with no example
        one = [jax.ShapeDtypeStruct((1, *np.shape(a)[1:]), a.dtype) for a in mapped]
        out = jax.eval_shape(lambda *a: jitted(*a, *statics), *one, *shared)
        return jax.tree.map(lambda x: np.zeros((0, *x.shape[1:]), x.dtype), out)
    size = max(1, min(chunk, b))
    rate, parts = Rate(what, b, say), []
    for i in range(0, b, size):
        n = min(size, b - i)
        idx = np.minimum(np.arange(i, i + size), b - 1)
        args = (*(a[idx] for a in mapped), *shared)
        files.check_live()  # a stopped stage's worker computes no further call
        program = compiled(jitted, args, statics, what, say)
        out = responsive(lambda p=program, a=args: jax.device_get(p(*a)))
        parts.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], out))
        rate.done(i + n)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
