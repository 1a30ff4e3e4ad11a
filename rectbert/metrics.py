"""metrics.jsonl: one JSON object per line, each with "step"; TensorBoard too when installed.

Only process 0 writes; the others hold a disabled writer.
"""

from __future__ import annotations

import json
import os

from rectbert import workdir as workdir_lib


def _path(workdir: str) -> str:
    return os.path.join(workdir, "metrics.jsonl")


def read(workdir: str) -> list[dict]:
    with open(_path(workdir)) as f:
        return [json.loads(line) for line in f if line.strip()]


def append(workdir: str, step: int, scalars: dict) -> None:
    """One more line (e.g. an evaluation made after training)."""
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(_path(workdir), "a") as f:
        f.write(json.dumps(row) + "\n")


class Writer:
    """The run's metrics, as a context manager. A resumed run first drops the lines past its
    checkpoint: those steps are trained, and logged, again."""

    def __init__(self, workdir: str, resume_step: int, *, enabled: bool = True):
        self.workdir, self.enabled, self.tb = workdir, enabled, None
        if not enabled:
            return
        if os.path.exists(_path(workdir)):
            keep = [r for r in read(workdir) if r["step"] <= resume_step]
            workdir_lib.write_atomic(_path(workdir), "".join(json.dumps(r) + "\n" for r in keep))
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

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        append(self.workdir, step, scalars)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, float(v), step)
            self.tb.flush()
