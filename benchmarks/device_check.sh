#!/usr/bin/env bash
# Every GPU check of performance and scale-out in one call; results land in $OUT.
#   device tool:  bash benchmarks/device_check.sh          (PYTHONPATH=., no install needed)
#   here (CPU):   OUT=/tmp/dc bash benchmarks/device_check.sh   (small size, grid_quick: tests the script)
# Steps run in order of importance, each capped so the whole call stays within BUDGET seconds
# (default 540, under the device tool's 600 s per call): throughput against the peer first.
# ONLY=throughput,grid,tests,scenes,ceiling,ttc,relative,triton picks steps (default
# ttc,relative,tests,scenes,ceiling:
# what no card has measured yet; throughput, grid
# and triton are measured on the H100 and the H200 already), e.g. ONLY=grid for grid_seed.
set -uo pipefail
OUT=${OUT:-/tmp/rectbert_device_check}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
export PYTHONPATH=.
export TF_CPP_MIN_LOG_LEVEL=2
step() { echo "== $* (t=${SECONDS}s)" | tee -a "$OUT/summary.txt"; }
keep() { grep -v -i -e "warning" -e "libtpu" | tee -a "$OUT/summary.txt"; }
left() {  # seconds for the next step: its cap, or what the budget has left minus a reserve
  local cap=$1 rest=$(( BUDGET - SECONDS - 10 ))
  (( rest < cap )) && cap=$rest
  (( cap < 1 )) && cap=1
  echo "$cap"
}

ONLY=${ONLY:-ttc,relative,tests,scenes,ceiling}
REL=${REL:-rope}  # the relative geometry (--relative) timed against today's fast path
want() { [[ ",$ONLY," == *",$1,"* ]]; }
if python -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  SIZE=seed GRID=experiments/flags/grid_seed.flags
  THROUGHPUT=()
  SCENE_ARGS=(--num_steps=1500 --log_every=500 --eval_every=1500 --checkpoint_every=1500)
  CURVE=64 SAMPLES=16
  TTC=(--configs=gpu --validation_examples=512 --eval_every=500)
  REL_TTC=(--configs=gpu_$REL --validation_examples=512 --eval_every=500)
else  # tests the script: tiny sizes
  SIZE=small GRID=experiments/flags/grid_quick.flags
  THROUGHPUT=(--batch_size=8)  # two variants in the relative step's 120 s on a busy 2-core CPU
  SCENE_ARGS=(--num_steps=2 --log_every=1 --eval_every=2 --checkpoint_every=2 --batch_size=8
    --eval_examples=32 --embed_dim=32 --mlp_dim=64 --num_layers=1 --num_heads=2 --dtype=float32)
  CURVE=2 SAMPLES=2
  TTC=(--configs= --validation_examples=64 --eval_every=20
    --setting=num_steps=40 --setting=embed_dim=32 --setting=mlp_dim=64 --setting=num_layers=1
    --setting=num_heads=2 --setting=eval_examples=64)
  REL_TTC=("${TTC[@]}" --setting=relative=$REL)
  [[ $REL == te ]] && REL_TTC+=(--setting=position=none)  # te sees no absolute position
fi
step "machine"
date -u | keep
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | keep
# the drawings' packages (Hershey-Fonts, shapely, kanjivg, pytablericons), which the card's
# machine has no registry to install: carried as wheels (bash benchmarks/wheels.sh here, then
# the device tool's carry=[".wheels"]); without them the glyph, kanji and icon steps say so and
# skip
if ls .wheels/*.whl >/dev/null 2>&1; then
  pip install -q --no-deps --no-index .wheels/*.whl 2>&1 | tail -1 | keep
fi
python -c "import jax, flax, optax, orbax.checkpoint as o, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())" 2>&1 | keep

if want throughput; then
step "throughput, size $SIZE: fast-path check, rectbert variants, the peer (eager, torch.compile)"
timeout "$(left 300)" python -m benchmarks.train_throughput --size=$SIZE --check_fast_path \
  --variants=fast,bf16 --json="$OUT/throughput.json" 2>&1 | keep
fi

if want grid; then
step "grid end to end: $GRID (codebook, training, evaluation, figures)"
start=$SECONDS
limit=$(left 200)
timeout "$limit" python -m experiments.grid --flagfile=$GRID --workdir="$OUT/grid_run" \
  --log_every=1000 2>&1 | tail -8 | keep
rc=${PIPESTATUS[0]}
echo "grid wall $(( SECONDS - start )) s, exit $rc (124: stopped at the ${limit} s limit)" | keep
rm -rf "$OUT/grid_run/ckpt"  # figures, metrics and flags come back; checkpoints are too big
fi

if want ttc; then
step "time to the ceiling: ${TTC[*]} (oracle on the validation and held-out sets first)"
start=$SECONDS
limit=$(left 150)
timeout "$limit" python -m benchmarks.time_to_ceiling "${TTC[@]}" --cache_dir="$OUT/ttc_cache" \
  --json="$OUT/time_to_ceiling.json" 2>&1 | grep -e "oracle" -e "step" -e "summary" -e "rror" \
  | tail -12 | keep
rc=${PIPESTATUS[0]}
echo "time to ceiling wall $(( SECONDS - start )) s, exit $rc (124: stopped at ${limit} s)" | keep
fi

if want relative; then
step "relative geometry: the write-up's model, fast vs fast_$REL (same batch), then ${REL_TTC[*]}"
timeout "$(left 120)" python -m benchmarks.train_throughput --size=$SIZE "${THROUGHPUT[@]}" --nopeer \
  --variants=fast,fast_$REL --json="$OUT/throughput_relative.json" 2>&1 | grep -e "^rectbert" \
  -e "rror" | keep
start=$SECONDS
limit=$(left 150)
timeout "$limit" python -m benchmarks.time_to_ceiling "${REL_TTC[@]}" --cache_dir="$OUT/ttc_cache" \
  --json="$OUT/time_to_ceiling_relative.json" 2>&1 | grep -e "oracle" -e "step" -e "summary" \
  -e "rror" | tail -12 | keep
rc=${PIPESTATUS[0]}
echo "time to ceiling ($REL) wall $(( SECONDS - start )) s, exit $rc (124: stopped at ${limit} s)" | keep
fi

if want tests; then
step "fast-path tests on this device (cuDNN on a GPU)"
if python -c "import pytest" 2>/dev/null; then
  timeout "$(left 90)" python -m pytest -q -p no:cacheprovider -o addopts="" tests/test_model.py \
    tests/test_relative.py -k "fast_path or padding or auto_attention or one_hot or falls_back \
    or cudnn" 2>&1 | tail -2 | keep
else
  echo "no pytest here: the throughput step's fast path check stands in" | keep
fi
fi

if want scenes; then
# the full-size flagfile of every scene beyond rect, shortened to ${SCENE_ARGS[0]}: steps/s
# at full size (x 50,000 steps = the full run's time) and a finished evaluation with figures
for run in sparse_rotated sparse_rects sparse_junction grid_rotated sparse_glyph sparse_kanji \
  sparse_kanji_unseen sparse_icon_unseen sparse_kanji_junctions sparse_kanji_occlude; do
  step "scene at full size: $run ${SCENE_ARGS[*]}"
  need="import HersheyFonts, shapely, importlib.metadata as m"
  [[ $run == sparse_kanji* ]] && need+="; m.distribution('kanjivg')"
  [[ $run == sparse_icon* ]] && need+="; m.distribution('pytablericons')"
  if [[ $run == sparse_glyph* || $run == sparse_kanji* || $run == sparse_icon* ]] \
    && ! python -c "$need" 2>/dev/null; then
    echo "$run skipped: Hershey-Fonts, shapely, kanjivg or pytablericons missing (carry .wheels)" \
      | keep
    continue
  fi
  start=$SECONDS
  limit=$(left 60)
  timeout "$limit" python -m experiments.${run%%_*} --flagfile=experiments/flags/$run.flags \
    --workdir="$OUT/$run" "${SCENE_ARGS[@]}" 2>&1 | grep -e "^step" -e "eval/" -e "^done" \
    -e "rror" | tail -4 | keep
  rc=${PIPESTATUS[0]}
  echo "$run wall $(( SECONDS - start )) s, exit $rc (124: stopped at the ${limit} s limit)" | keep
  rm -rf "$OUT/$run/ckpt"
done
fi

if want ceiling; then
# the any-count model at full size, shortened, then its oracle curve on 64 examples at two
# counts: the oracle's speed on this card decides the full flagfile's --curve_examples
# (junction: the mixture oracle over 2-4 strokes, at a quarter of the examples: 0.15 examples/s
# on the 2-core CPU)
for run in sparse_anycount sparse_anycount_rotated sparse_anycount_junction; do
  n=$CURVE
  [[ $run == sparse_anycount_junction ]] && n=$(( CURVE / 4 > 2 ? CURVE / 4 : 2 ))
  step "ceiling at full size: $run ${SCENE_ARGS[*]}, curve $n examples at 4 and 23 visible"
  start=$SECONDS
  limit=$(left 100)
  timeout "$limit" python -m experiments.sparse --flagfile=experiments/flags/$run.flags \
    --workdir="$OUT/$run" "${SCENE_ARGS[@]}" --curve_examples=$n --curve_visible=4,23 2>&1 \
    | grep -e "^step" -e "visible" -e "^done" -e "rror" | tail -5 | keep
  rc=${PIPESTATUS[0]}
  echo "$run wall $(( SECONDS - start )) s, exit $rc (124: stopped at the ${limit} s limit)" | keep
  if [[ $run == sparse_anycount ]]; then  # completions of the full-size model, scored
    # the random (ancestral) and repair samplers: repair's gain on a card-sized model
    step "samples: $run, $SAMPLES examples x 4 completions at 2 and 8 visible, random and repair"
    start=$SECONDS
    limit=$(left 90)
    timeout "$limit" python -m experiments.sample --workdir="$OUT/$run" --sample_visible=2,8 \
      --sample_examples=$SAMPLES --samples_per_example=4 --joint_samplers=random,repair 2>&1 \
      | grep -e "visible" -e "rror" | tail -14 | keep
    rc=${PIPESTATUS[0]}
    echo "samples wall $(( SECONDS - start )) s, exit $rc (124: stopped at the ${limit} s limit)" | keep
  fi
  rm -rf "$OUT/$run/ckpt"
done
fi

if want triton; then
step "one XLA flag: cuBLAS instead of Triton GEMMs (fast variant, no peer)"
XLA_FLAGS=--xla_gpu_enable_triton_gemm=false timeout "$(left 90)" \
  python -m benchmarks.train_throughput --size=$SIZE --nopeer \
  --json="$OUT/throughput_no_triton.json" 2>&1 | tail -1 | keep
fi
step "done"
