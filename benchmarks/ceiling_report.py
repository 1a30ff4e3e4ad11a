"""Rows of `benchmarks/time_to_ceiling.py --json` side by side: each against a baseline row,
paired on the same held-out tokens, and a figure of model / oracle against training seconds.

python -m benchmarks.ceiling_report --json=A.json[,B.json ...] [--baseline=default] [--figure=F.png]

A row is paired with the baseline only where both drew the same held-out set (HELD_OUT: the
settings it depends on; its key is fixed), so the difference of their right/wrong vectors is
paired; its standard error treats tokens as independent, as the experiments'
`eval/model_minus_oracle_stderr` does. Other rows are listed unpaired, saying why.
"""

from __future__ import annotations

import json

import numpy as np
from absl import flags

from benchmarks import usage
from rectbert.model import losses
from rectbert.recipes import common, sparse

# the settings the held-out set depends on (the task's and the scene's, and the seed)
HELD_OUT = (
    "seed",
    "scene",
    "mask_schedule",
    "mask_ratio",
    "num_points",
    "point_sampler",
    "eval_examples",
    "num_train_rects",
    "fixed_points",
    "extra_targets",
)

NUMBERS = ("steps", "train_s", "held_out", "held_out_ratio")  # a row's line prints these
CURVE = ("step", "train_s", "ratio")  # the figure draws these of each point of a row's curve
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    flags.DEFINE_list("json", [], "time_to_ceiling --json files, their rows read in order.")
    flags.DEFINE_string("baseline", "default", "The row the others are compared with (its name).")
    flags.DEFINE_string("figure", "", "Also draw model / oracle against training seconds here.")
    flags.DEFINE_string("title", "", "The figure's title.")


def check(paths, baseline: str, figure: str) -> list[dict]:
    """The rows of the --json files, or a usage.Error naming the flag, or the file and what is
    wrong in it (before anything is printed or drawn)."""
    if not paths:
        raise usage.refuse("json", paths, "one or more time_to_ceiling --json files")
    rows = load(paths)
    if baseline not in [r["name"] for r in rows]:
        raise usage.refuse("baseline", baseline, f"a row's name: {[r['name'] for r in rows]}")
    usage.output("figure", figure)  # last: it makes the folder
    return rows


def load(paths: list[str]) -> list[dict]:
    """The rows of time_to_ceiling --json files, each checked; a usage.Error naming the file."""
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                found = json.load(f)
        except (OSError, ValueError) as e:
            raise usage.Error(f"{path}: not a time_to_ceiling --json file ({e})") from None
        found = found.get("rows") if isinstance(found, dict) else None
        if not isinstance(found, list):
            raise usage.Error(f'{path}: not a time_to_ceiling --json file (no list "rows")')
        for i, row in enumerate(found):
            wrong = _wrong(row)
            if wrong:
                raise usage.Error(f"{path}: row {i} {wrong}")
        rows += found
    return rows


def _wrong(row) -> str:
    """What is wrong with a row and what was expected, or "" (nothing)."""
    if not isinstance(row, dict) or not isinstance(row.get("name"), str):
        return 'has no name: expected an object with a "name" string'

    def got(key: str, expected: str) -> str:
        shown = repr(row.get(key))
        shown = shown if len(shown) <= 40 else f"{shown[:36]}..."
        return f"({row['name']}): {key} is {shown}: expected {expected}"

    for key in NUMBERS:
        if not _number(row.get(key)):
            return got(key, "a number")
    settings = row.get("settings")
    if not isinstance(settings, dict):
        return got("settings", "an object of the sparse recipe's settings")
    unknown = sorted(set(settings) - set(common.defaults(sparse)))
    if unknown:
        said = f"settings has {unknown[0]!r}, which the sparse recipe does not have"
        return f"({row['name']}): {said}: expected its settings"
    text = row.get("held_out_right")
    if text is not None and not (isinstance(text, str) and text and set(text) <= {"0", "1"}):
        return got("held_out_right", "a string of 0s and 1s, one per held-out token")
    curve = row.get("curve")
    if not isinstance(curve, list) or not all(
        isinstance(c, dict) and all(_number(c.get(k)) for k in CURVE) for c in curve
    ):
        return got("curve", f"a list of objects with numbers {', '.join(CURVE)}")
    return ""


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def right(row) -> np.ndarray | None:
    text = row.get("held_out_right")
    return None if text is None else np.frombuffer(text.encode(), np.uint8) - ord("0")


def paired(rows: list[dict], baseline: str) -> list[str]:
    """One line per row: held-out accuracy, its ratio to the oracle, and its paired
    difference from the baseline row (points, with the standard error)."""
    base = [r for r in rows if r["name"] == baseline]
    b, b_key = right(base[0]), held_out(base[0])
    lines = []
    for row in rows:
        line = (
            f"{row['name']:>18}: {row['steps']:>5} steps, {row['train_s']:5.0f} s, held-out "
            f"{row['held_out']:.4f} = {row['held_out_ratio']:.4f} of the oracle"
        )
        r = right(row)
        if row is base[0] or r is None or b is None:
            pass
        elif held_out(row) != b_key or r.size != b.size:
            line += f"; not paired: another held-out set than {baseline}'s"
        else:
            diff, se = losses.paired_difference(r, b)
            line += f"; minus {baseline}: {100 * diff:+.2f} +- {100 * se:.2f} pt"
        lines.append(line)
    return lines


def held_out(row) -> tuple:
    values = common.values(sparse, **row["settings"])
    return tuple(str(values.get(k)) for k in HELD_OUT)


def figure(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharey=True)
    for ax, key, label in [
        (axes[0], "train_s", "training seconds (this machine, compile excluded)"),
        (axes[1], "step", "training steps"),
    ]:
        for row in rows:
            curve = row["curve"]
            ax.plot([c[key] for c in curve], [c["ratio"] for c in curve], label=row["name"])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.995, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.set_ylim(0.9, 1.005)
    axes[0].set_ylabel("validation accuracy / oracle's (worst count)")
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv  # none (usage.run)
    rows = check(FLAGS.json, FLAGS.baseline, FLAGS.figure)
    for line in paired(rows, FLAGS.baseline):
        print(line)
    if FLAGS.figure:
        figure(rows, FLAGS.figure, FLAGS.title)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
