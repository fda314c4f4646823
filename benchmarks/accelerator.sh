#!/usr/bin/env bash
# The JAX side of benchmarks/README.md on whatever device JAX finds first (a GPU or TPU where
# there is one), in one command sized for a 10-minute call. Each step has its own time limit
# (together 570 s; the command exits with a failed step's status), so one that runs long costs only its share, and each writes its table and
# its log (per-configuration lines, kept when a step is stopped) to $OUT:
#
#   1. the filters (benchmarks/filters.py): serial against parallel scans at T = 7200, where
#      the parallel ones are meant to pay off;
#   2. the machine's limit (benchmarks/flops.py): batch-1024 rollouts' FLOPs against the
#      device's large-matrix-product rate;
#   3. cross-validation (benchmarks/cv_vmap.py): K folds as one vmapped program against the
#      same folds one after another.
#
# The PyTorch comparison (torch_vs_jax.py) runs its references on CPU and is not part of it.
# Needs only wearjax's own dependencies (jax with the device's plugin, equinox, diffrax, optax,
# flax, jaxtyping, tqdm, matplotlib), from the repository root, without installing wearjax:
#
#   OUT=results bash benchmarks/accelerator.sh
#   QUICK=1 OUT=/tmp/smoke bash benchmarks/accelerator.sh     # every step, small: 2.5-3.2 min
#                                                              # on 2 CPU cores
set -u -o pipefail

out=${OUT:-accelerator-results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -n "${QUICK:-}" ]; then
  filters=(--state-sizes 2 --batches 1 8 --reps 2)
  flops=(--batch 64 --seconds 60)
  cv=(--runners 3 --sessions 2 --epochs 1 --steps 2)
else
  filters=(--reps 3)
  flops=(--batch 1024 --seconds 600 --matmul-size 8192)  # a 2048 product is too short there
  cv=()
fi

failed=0
step() {  # step NAME LIMIT_SECONDS COMMAND...: its output in $out/NAME.log, its status here
  local name=$1 limit=$2 start=$SECONDS status
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
  status=$?
  echo "   exit $status after $((SECONDS - start)) s"
  if [ "$status" -ne 0 ]; then
    failed=$status
    tail -5 "$out/$name.log"
  fi
}

step devices 30 "$py" -c "import jax; print('jax', jax.__version__, jax.devices())"
cat "$out/devices.log"
if grep -q "CpuDevice" "$out/devices.log"; then
  echo "   no accelerator: JAX found only the CPU (set JAX_PLATFORMS=cuda to fail instead)"
fi
command -v nvidia-smi >/dev/null && timeout 10 nvidia-smi -L >"$out/nvidia-smi.log" 2>&1
step filters 300 "$py" benchmarks/filters.py ${filters[@]+"${filters[@]}"} --out "$out/filters.md"
step flops 120 "$py" benchmarks/flops.py ${flops[@]+"${flops[@]}"} --out "$out/flops.md"
step cv_vmap 120 "$py" benchmarks/cv_vmap.py ${cv[@]+"${cv[@]}"} --out "$out/cv_vmap.md"
ls -l "$out"
exit "$failed"
