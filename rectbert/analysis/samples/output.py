"""What the sampling scores say and write: progress lines on stdout as they happen, and
samples.json."""

from __future__ import annotations

import json
import os

from rectbert.analysis import oracle_curve
from rectbert.files import write_atomic

say = oracle_curve.SAY  # progress lines go to stdout as they happen, as the curve's do


def line(label: str, r: dict, elapsed: float) -> str:
    """One progress line: a row's scores, and the seconds since scoring began."""
    scores = f"accuracy {r['accuracy']:.3f}  diversity {r['diversity']:.3f}"
    if r["mmd"] is not None:
        scores += f"  consistent {r['consistent_fraction']:.3f}  MMD {r['mmd']:.4f}"
        scores += f"  pair TV {r['pairwise_tv']:.3f}"
    return f"  visible {r['visible']:2d} {label:18s} {scores}  [{elapsed:.0f} s]"


def write(workdir_path: str, rows: list[dict]) -> str:
    """samples.json (the rows), written atomically."""
    path = os.path.join(workdir_path, "samples.json")
    write_atomic(path, json.dumps(rows, indent=1) + "\n")
    return path
