"""Every random draw of a run derives from its seed: one key per purpose, folded from the root.

Two purposes never share a key, so changing how one draw is used never moves another.
"""

from __future__ import annotations

import jax

# fold_in index of each purpose: arbitrary, but fixed (a changed index moves every run's draws)
_PURPOSES = {
    "init": 0,  # model parameters
    "data": 1,  # training batches (with the step)
    "dropout": 2,
    "held_out": 3,  # the evaluation set
    "codebook_and_train_set": 7,  # split in two: codebook fit, fixed training shapes
    "fixed_points": 8,  # the points of a fixed training set, drawn once
    "baseline": 9,  # the majority-token baseline's sample
    "fourier": 10,  # the Fourier position embedding's frequencies
    "figures": 11,  # examples drawn only for figures
    "oracle": 12,
    "curve": 13,  # which points the oracle curve shows at each visible count
    "samples": 14,  # completions drawn from model and oracle (analysis/samples)
    "validation": 15,  # a validation set apart from the held-out one (benchmarks)
    "extra_targets": 16,  # the extra hidden training points (SparseTask.extra_targets)
    "unseen": 17,  # the evaluation set of shapes held out of training (Scene.unseen)
}


def key(seed: int, purpose: str):
    """The key of `purpose` for a run with this seed."""
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose must be one of {sorted(_PURPOSES)}; got {purpose!r}")
    return jax.random.fold_in(jax.random.key(seed), _PURPOSES[purpose])


def codebook(seed: int):
    return jax.random.split(key(seed, "codebook_and_train_set"))[0]


def train_set(seed: int):
    return jax.random.split(key(seed, "codebook_and_train_set"))[1]


MAX_SEED = 2**32 - 1  # jax keys keep 32 bits of a seed: 2**32 would repeat seed 0


def valid_seed(seed) -> bool:
    return isinstance(seed, int) and 0 <= seed <= MAX_SEED
