"""The configurations `benchmarks/time_to_ceiling.py` times: name -> the sparse recipe's
settings over its defaults (`--configs=a,b,...`). Each was a question; RESULTS.md has its
prediction and what it measured."""

from rectbert.model import relative

# sparse_anycount_quick.flags, as its settings (the any-count configurations start from it)
ANYCOUNT_QUICK = dict(
    mask_schedule="anycount",
    num_steps=2700,
    num_heads=4,
    eval_examples=512,
    log_every=250,
    eval_every=1500,
    checkpoint_every=1000,
    workdir="runs/sparse_anycount_quick",
)
CONFIGS = {  # name -> the sparse recipe's settings over its defaults (lr pinned where measured)
    "default": {},  # `python -m experiments.sparse` as it ships
    "before": dict(embed_dim=64, mlp_dim=128, num_layers=3, num_steps=6000, learning_rate=1e-3),
    # the time-to-ceiling goal's second configuration: 0.9996 of the oracle in 20 min
    "wide4": dict(embed_dim=128, mlp_dim=512, num_layers=4, num_steps=8000, learning_rate=1e-3),
    "lr2e-3": dict(learning_rate=2e-3),
    "batch32": dict(batch_size=32, num_steps=11000, learning_rate=1e-3),
    "w96x2": dict(embed_dim=96, mlp_dim=384, num_layers=2, num_steps=5000, learning_rate=1e-3),
    "w128x2": dict(embed_dim=128, mlp_dim=256, num_layers=2, num_steps=4400, learning_rate=1e-3),
    "targets12": dict(extra_targets=12, learning_rate=2e-3, num_steps=3400),
    "targets24": dict(extra_targets=24, learning_rate=2e-3, num_steps=2400),
    "lr3e-3": dict(learning_rate=3e-3),
    "lr5e-3": dict(learning_rate=5e-3),
    "deep4_lr3e-3": dict(num_layers=4, learning_rate=3e-3, num_steps=4600),
    "mlp256_lr3e-3": dict(mlp_dim=256, learning_rate=3e-3, num_steps=5000),
    "lion": dict(optimizer="lion", learning_rate=3e-4),
    "lion6e-4": dict(optimizer="lion", learning_rate=6e-4, weight_decay=0.05),
    "warmup500": dict(learning_rate=3e-3, warmup_steps=500),
    "w96x2_lr3e-3": dict(
        embed_dim=96, mlp_dim=384, num_layers=2, learning_rate=3e-3, num_steps=5000
    ),
    # device_check.sh: a card-sized model (bf16 on the card, batch 256)
    "gpu": dict(
        embed_dim=256,
        mlp_dim=1024,
        num_heads=8,
        num_layers=4,
        batch_size=256,
        learning_rate=1e-3,
        num_steps=6000,
    ),
    # sparse_anycount_quick before this benchmark
    "anycount_before": {**ANYCOUNT_QUICK, "learning_rate": 1e-3, "num_steps": 3000},
    "anycount_quick": ANYCOUNT_QUICK,
    "anycount_lr3e-3": {**ANYCOUNT_QUICK, "learning_rate": 3e-3, "num_steps": 3000},
}
# relative geometry in attention (--relative), each at the wall of the configuration it varies:
# its steps scaled by the step times measured in turn on this CPU (2026-12-02, one process,
# 64 x 3 at batch 64: none 20.2 ms, rope 23.9, rope_mixed 28.0, bias 45.2, te 52.4); the
# "_steps" ones at the same steps instead (what a GPU, where the extra terms cost little, sees)
RELATIVE_COST = {
    "rope": 23.9 / 20.2,
    "rope_mixed": 28.0 / 20.2,
    "bias": 45.2 / 20.2,
    "te": 52.4 / 20.2,
}
# rotated's oracle runs at ~0.5 examples/s here: its held-out set is scored on 128 examples
ROTATED = {"scene": "rotated", "eval_examples": 128}


ANYCOUNT_ROTATED = {**ANYCOUNT_QUICK, **ROTATED, "eval_examples": 64}


def _relative(base: dict, steps: int, name: str) -> dict:
    position = {} if relative.RELATIVES[name].absolute else {"position": "none"}
    return {**base, "relative": name, **position, "num_steps": round(steps / RELATIVE_COST[name])}


for _rel in RELATIVE_COST:
    CONFIGS[_rel] = _relative({}, 6000, _rel)
    CONFIGS[f"rotated_{_rel}"] = _relative(ROTATED, 6000, _rel)
    CONFIGS[f"anycount_{_rel}"] = _relative(ANYCOUNT_QUICK, 2700, _rel)
    CONFIGS[f"anycount_rotated_{_rel}"] = _relative(ANYCOUNT_ROTATED, 2700, _rel)
    CONFIGS[f"{_rel}_steps"] = {**CONFIGS[_rel], "num_steps": 6000}
    CONFIGS[f"gpu_{_rel}"] = {**CONFIGS["gpu"], **_relative({}, 6000, _rel), "num_steps": 6000}
CONFIGS["rotated"] = ROTATED
CONFIGS["anycount_rotated"] = ANYCOUNT_ROTATED
