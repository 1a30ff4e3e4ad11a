"""The oracle against rejection sampling from the prior, for the cases too slow for the test
suite (tests/test_oracle_rejection.py holds the reference and every case; the suite's slow
tier runs all but its BENCHMARK_ONLY ones, which are this command's default).

python -m benchmarks.oracle_rejection [--cases=rect-8-12,junction,glyph,kanji,icon-small]
Prints, per case, the examples with >= 200 accepted shapes, argmax agreement and mean TV,
and whether the test's thresholds hold; exits 1 if any case fails them. The HARD cases
(--cases=glyph-8,rects-1-3-8,junction-8: 8 visible on the mixtures, 8 letters; ~14 min:
glyph-8 8 min before the tempering cap, the mixtures 1 and 5 with it) are named, not run
by default: the mixtures' two hold, p(k | v) within 0.1 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import sys
import time

from absl import flags

from benchmarks import usage
from tests import test_oracle_rejection as reference

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined when it runs: benchmarks share flag names)."""
    default = [c for c in reference.BENCHMARK_ONLY if c not in reference.HARD]
    flags.DEFINE_list("cases", default, f"Cases of {list(reference.CASES)}.")


def main(argv) -> None:
    del argv  # none (usage.run)
    usage.names("cases", FLAGS.cases, reference.CASES)
    failed = []
    for case in FLAGS.cases:
        start = time.time()
        try:
            reference.test_the_oracle_matches_rejection_sampling_from_the_prior(case)
            verdict = "thresholds hold"
        except AssertionError as e:
            failed.append(case)
            verdict = f"FAILS the test's thresholds ({e})"
        print(f"{case}: {verdict} [{time.time() - start:.0f} s]", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    define_flags()
    usage.run(main)
