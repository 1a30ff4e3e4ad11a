"""Long computations as short compiled calls: a batch of examples cut into chunks of a fixed
size (one compilation), each call waited for with the main thread free to take a signal,
its memory measured before it runs, and a progress line with examples/s and ETA.

A compiled call of minutes (the oracle on a grid glyph run takes minutes an example on a
CPU) would hold a stop until it ends: each call here is signals.responsive.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from rectbert import files, rate
from rectbert.rate import Rate
from rectbert.training.signals import responsive

SAY = rate.SAY  # progress lines go to stdout as they happen
EVERY = rate.EVERY  # seconds between progress lines
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
    progress, parts = Rate(what, b, say, every=EVERY), []
    for i in range(0, b, size):
        n = min(size, b - i)
        idx = np.minimum(np.arange(i, i + size), b - 1)
        args = (*(a[idx] for a in mapped), *shared)
        files.check_live()  # a stopped stage's worker computes no further call
        program = compiled(jitted, args, statics, what, say)
        out = responsive(lambda p=program, a=args: jax.device_get(p(*a)))
        parts.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], out))
        progress.done(i + n)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
