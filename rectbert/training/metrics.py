"""metrics.jsonl: one strict-JSON object per line, each with "step"; TensorBoard too when
installed.

Only process 0 writes; the others hold a disabled writer (that still refuses non-finite
values, so every process stops at the same point). A line is appended in one write; one a
killed process left torn (no newline) is dropped with a warning the next time the file is
read or written.
"""

from __future__ import annotations

import json
import math
import os

from rectbert.files import WriteError, check_live, write_atomic
from rectbert.warn import warn


class MetricsError(ValueError):
    """metrics.jsonl cannot be read (a damaged line that is not a torn last one)."""


class NonFiniteError(RuntimeError):
    """A non-finite loss, gradient norm or metric: the run stops before it is logged or saved."""


def _path(workdir: str) -> str:
    return os.path.join(workdir, "metrics.jsonl")


def _no_nan(constant: str):
    raise ValueError(f"{constant} is not strict JSON")


def read(workdir: str) -> list[dict]:
    """The rows, oldest first. A torn last line (no newline: a write a kill cut short) is
    dropped with a warning; any other line that is not a strict-JSON object with a step is a
    MetricsError naming it."""
    path = _path(workdir)
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as e:
        raise MetricsError(f"{path} is unreadable ({e.strerror})") from None
    rows = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"), parse_constant=_no_nan)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an object with an integer step")
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                warn(f"dropping the torn last line of {path} ({raw[:40]!r}...)")
                break
            raise MetricsError(
                f"{path} line {i + 1} is unreadable ({str(e).splitlines()[0]}): fix or delete it"
            ) from None
        rows.append(row)
    return rows


def rewrite(workdir: str, rows: list[dict]) -> None:
    """Replace the file with `rows`, whole or not at all."""
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
    write_atomic(_path(workdir), text)


def _row(step: int, scalars: dict) -> dict:
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    bad = [k for k, v in row.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteError(f"non-finite {bad[0]}={row[bad[0]]} at step {step}; not written")
    return row


def _heal(workdir: str) -> None:
    """Drop a torn last line, so the next append starts on a line of its own."""
    path = _path(workdir)
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn:
            rewrite(workdir, read(workdir))


def append(workdir: str, step: int, scalars: dict) -> None:
    """One more line."""
    line = json.dumps(_row(step, scalars), allow_nan=False) + "\n"
    check_live()
    _heal(workdir)
    try:
        with open(_path(workdir), "a") as f:
            f.write(line)
    except OSError as e:  # a line cut short is torn: the next read drops it, with a warning
        raise WriteError(_path(workdir), e) from None


def put(workdir: str, step: int, scalars: dict) -> None:
    """The scalars at `step`, replacing what earlier lines held under these names at that
    step (a re-evaluation replaces its rows, never duplicates them)."""
    row = _row(step, scalars)
    rows = read(workdir) if os.path.exists(_path(workdir)) else []
    kept = []
    for r in rows:
        if r["step"] == row["step"]:
            r = {k: v for k, v in r.items() if k not in scalars}
            if len(r) == 1:  # only its step was left
                continue
        kept.append(r)
    rewrite(workdir, [*kept, row])


class Writer:
    """The run's metrics, as a context manager. A resumed run first drops the lines past its
    checkpoint: those steps are trained, and logged, again."""

    def __init__(self, workdir: str, resume_step: int, *, enabled: bool = True):
        self.workdir, self.enabled, self.tb = workdir, enabled, None
        if not enabled:
            return
        if os.path.exists(_path(workdir)):
            rewrite(workdir, [r for r in read(workdir) if r["step"] <= resume_step])
        try:
            import tensorboardX

            self.tb = tensorboardX.SummaryWriter(workdir)
        except ImportError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.tb is not None:
            self.tb.close()

    def write(self, step: int, scalars: dict, *, replace: bool = False) -> None:
        """Append a row (NonFiniteError on every process if a value is not finite); with
        `replace`, put() it instead."""
        row = _row(step, scalars)
        if not self.enabled:
            return
        (put if replace else append)(self.workdir, step, scalars)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
