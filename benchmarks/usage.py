"""The benchmarks' command lines, as the experiments' (experiments/cli.py, which benchmarks do
not import): a flag that is not allowed is one line `error: --flag=value is not allowed: ...`
with a non-zero exit, before any compute; so is one absl cannot parse (not absl's usage text,
~50 lines with the error last), and a stray argument.

A benchmark checks its flags' values with the helpers here (plain values in, so a test calls
them in its own process) and runs through run(main). It defines its flags only when it runs
(define_flags(), called under `if __name__ == "__main__"`): benchmarks share flag names
(--visible, --json, --examples), and a test's process imports them all."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import tempfile

from absl import app, flags

from rectbert.training import signals

INT32_MAX = 2**31 - 1  # steps and counts go through int32 arrays


class Error(Exception):
    """A flag that is not allowed: one line."""


def refuse(flag: str, value, allowed: str) -> Error:
    """`--flag=value is not allowed: allowed` (a list flag's value as it was written)."""
    shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
    return Error(f"--{flag}={shown} is not allowed: {allowed}")


def names(flag: str, given, known, *, empty: bool = False) -> list[str]:
    """A list flag's names, each one of `known`; at least one unless `empty`."""
    if any(g not in known for g in given) or not (given or empty):
        raise refuse(flag, given, f"{'' if empty else 'one or more '}names from {list(known)}")
    return list(given)


def integer(flag: str, value: int, lo: int, hi: int = INT32_MAX, why: str = "") -> int:
    if not lo <= value <= hi:
        raise refuse(flag, value, f"an integer in [{lo}, {hi}]{why}")
    return value


def integers(flag: str, given, lo: int, hi: int = INT32_MAX) -> tuple[int, ...]:
    """A list flag's whole numbers, each in [lo, hi], at least one."""
    try:
        out = tuple(int(v) for v in given)
    except ValueError:
        out = ()
    if not out or not all(lo <= v <= hi for v in out):
        raise refuse(flag, given, f"one or more integers in [{lo}, {hi}], 'a,b,...'")
    return out


def positive(flag: str, value: float, hi: float = math.inf) -> float:
    """A finite number in (0, hi]."""
    if not (math.isfinite(value) and 0 < value <= hi):
        allowed = "a finite number > 0" if hi == math.inf else f"a number in (0, {hi:g}]"
        raise refuse(flag, value, allowed)
    return value


def output(flag: str, path: str) -> str:
    """A file to write (empty: none): not a directory, in a writable directory (made if need
    be: a benchmark that writes only at its end must not fail there)."""
    if not path:
        return path
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise refuse(flag, path, "a file's path (this is a directory)")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        pass  # refused just below
    if not _writable(folder):
        raise refuse(flag, path, f"a file in a writable directory ({folder} is not)")
    return path


def folder(flag: str, path: str) -> str:
    """A writable directory (made if need be)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        pass  # refused just below
    if not _writable(path):
        raise refuse(flag, path, "a writable directory")
    return path


def _writable(folder: str) -> bool:
    """Whether a file can be made in folder: tried (os.access says yes to root, even in /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {e}")


def run(main) -> None:
    """app.run(main) with every failure of the flags (absl's, a stray argument, an Error
    raised by main's checks) as one line `error: ...` and exit status 1; a SIGTERM or Ctrl-C
    as one line `stopped by signal N`, exit 128 + N, once the call in flight returns."""

    def guarded(argv):
        if len(argv) > 1:
            sys.exit(
                f"error: {argv[1]!r} is not a flag (flags are --name=value): a stray argument?"
            )
        try:
            with signals.promptly():  # SIGTERM and Ctrl-C: the cleanups run, then one line
                main(argv)
        except Error as e:
            sys.exit(f"error: {e}")
        except (signals.Interrupted, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"stopped by signal {signum}", file=sys.stderr, flush=True)
            sys.stdout.flush()  # what it printed (to a file or a pipe) is kept
            logging.shutdown()
            os._exit(128 + signum)  # not the teardown of the XLA work it abandoned

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # its backend search
    app.run(guarded, flags_parser=_parse)
