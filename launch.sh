#!/usr/bin/env bash
# Run an experiment on every worker of a Cloud TPU VM (all hosts of a pod slice), or here.
#
#   ./launch.sh [--dry-run] TPU_NAME ZONE MODULE [FLAGS...]
#   ./launch.sh [--dry-run] local MODULE [FLAGS...]
#
# e.g. ./launch.sh my-v4-8 us-central2-b experiments.grid --flagfile=experiments/flags/grid_seed.flags
#
# Copies this checkout (tracked and untracked-but-not-ignored files) to ~/rectbert on every
# worker, installs it with the TPU jax extra, and runs `python -m MODULE --distributed FLAGS`
# on all workers at once; jax.distributed discovers the coordinator, process count and index.
# Worker 0's output streams here; every worker keeps its own log in ~/rectbert/launch.log.
# --dry-run prints the commands instead of running them.
set -euo pipefail

usage() {
  echo "usage: ./launch.sh [--dry-run] TPU_NAME ZONE MODULE [FLAGS...]" >&2
  echo "       ./launch.sh [--dry-run] local MODULE [FLAGS...]" >&2
  exit 2
}

DRY=0
if [[ ${1:-} == --dry-run ]]; then
  DRY=1
  shift
fi
[[ $# -ge 2 ]] || usage

run() {  # print the command (quoted so it can be pasted), then run it unless --dry-run
  python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@"
  if [[ $DRY == 0 ]]; then "$@"; fi
}

cd "$(dirname "$0")"
if [[ $1 == local ]]; then
  shift
  MODULE=$1
  shift
  run python -m "$MODULE" "$@"
  exit
fi

[[ $# -ge 3 ]] || usage
TPU=$1 ZONE=$2 MODULE=$3
shift 3
[[ $MODULE =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || { echo "error: MODULE=$MODULE is not a python module name" >&2; exit 2; }

FLAGS=$(printf '%q ' "$@")
TARBALL=$(mktemp -t rectbert.XXXXXX.tar.gz)
if [[ $DRY == 0 ]]; then
  git ls-files --cached --others --exclude-standard -z | tar --null -czf "$TARBALL" -T -
fi
echo "# $(git ls-files --cached --others --exclude-standard | wc -l) files of this checkout -> $TARBALL"

GCLOUD=(gcloud compute tpus tpu-vm)
run "${GCLOUD[@]}" scp "$TARBALL" "$TPU:rectbert.tar.gz" --zone="$ZONE" --worker=all

INSTALL="mkdir -p ~/rectbert && tar -xzf ~/rectbert.tar.gz -C ~/rectbert && cd ~/rectbert"
INSTALL+=" && pip install -q -e '.[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
run "${GCLOUD[@]}" ssh "$TPU" --zone="$ZONE" --worker=all --command="$INSTALL"

# Every worker runs the job; only worker 0 (from the TPU metadata server) prints to this terminal.
WORKER='curl -s -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number'
JOB="cd ~/rectbert && python -m $MODULE --distributed $FLAGS 2>&1 | tee launch.log"
JOB+=" | if [ \"\$($WORKER)\" = 0 ]; then cat; else cat >/dev/null; fi"
run "${GCLOUD[@]}" ssh "$TPU" --zone="$ZONE" --worker=all --command="$JOB"
rm -f "$TARBALL"
