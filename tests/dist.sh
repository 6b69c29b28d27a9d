#!/usr/bin/env bash
# dist.sh R1 SRC - multi-process runs under mpirun on one machine (CPU, 2 ranks, 1 thread each),
# with tests/recipes/dist/lm.yaml (pretrain + sft, four micro-batches per update):
#  1. data parallel = one process: the losses of every step agree to 1e-4 (relative) and the
#     final weights to 1e-3 (absolute; measured 2.5e-5: only the order of the gradient sum
#     differs, and Adam's normalised updates carry that rounding on);
#  2. the same job twice gives the same bytes (the world size fixes every sum's order);
#  3. one output: only rank 0 prints the header and the summary, and writes the run
#     directory;
#  4. a rank killed with -9 mid-stage ends the job with a non-zero status naming that rank,
#     and `mpirun -np 2 r1 resume` then ends bit-identical to the uninterrupted job;
#  5. resuming a 2-process run with one process is refused (exit 2, naming both counts);
#  6. GRPO with every option (tests/recipes/grpo/features.yaml: dynamic sampling, KL with
#     reference resets, two iterations over two minibatches, DAPO, micro-batches): each
#     rank samples and scores half of every draw's groups and runs half the micro-batches;
#     the rewards of every step equal one process's exactly (the same completions), the
#     losses to 1e-4; rank 0 killed mid-GRPO and resumed ends bit-identical.
# Exits 77 when mpirun is missing or r1 was built without MPI.
set -u
r1=$(realpath "$1")
src=$(realpath "$2")
recipe=$src/tests/recipes/dist/lm.yaml
if ! command -v mpirun >/dev/null; then
  echo "dist.sh: skipped: mpirun not found (tools/setup installs OpenMPI)" >&2; exit 77
fi
if "$r1" --version | grep -q "MPI: no"; then
  echo "dist.sh: skipped: this r1 was built without MPI (install OpenMPI, reconfigure)" >&2; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# CI runs as root; OpenMPI refuses that unless told
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { timeout 300 mpirun -np 2 --oversubscribe "$@"; }
final=checkpoints/sft/00000012/model.safetensors
losses() { grep -o '"loss":[0-9.e-]*' "$1/metrics.jsonl" | cut -d: -f2; }

"$r1" run "$recipe" --run-dir "$tmp/one" --threads 1 >"$tmp/one.log" 2>&1 ||
  { echo "FAIL: one-process run: $(tail -3 "$tmp/one.log")"; exit 1; }
mpi "$r1" run "$recipe" --run-dir "$tmp/two" --threads 1 >"$tmp/two.log" 2>&1 ||
  { echo "FAIL: 2-rank run: $(tail -5 "$tmp/two.log")"; exit 1; }

# 1. the same training
if paste <(losses "$tmp/one") <(losses "$tmp/two") | awk '
    { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4 * ($1 > 0 ? $1 : -$1)) bad++ }
    END { exit !(n == 36 && bad == 0) }'; then
  echo "ok: 36 step losses agree between 1 and 2 ranks"
else
  echo "FAIL: losses differ:"; paste <(losses "$tmp/one") <(losses "$tmp/two") | head -40; fail=1
fi
if python3 -c "import numpy, safetensors" 2>/dev/null; then
  python3 - "$tmp/one/$final" "$tmp/two/$final" <<'PY' || fail=1
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys()
d = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
if d > 1e-3:
    print(f"FAIL: final weights differ by {d:.3g} between 1 and 2 ranks (want <= 1e-3)")
    sys.exit(1)
print(f"ok: final weights agree between 1 and 2 ranks (max |diff| {d:.3g})")
PY
else
  echo "note: numpy/safetensors not importable (tools/setup --tests): weights not compared"
fi

# 2. determinism at a fixed world size
mpi "$r1" run "$recipe" --run-dir "$tmp/two-b" --threads 1 -q >"$tmp/two-b.log" 2>&1 ||
  { echo "FAIL: second 2-rank run: $(tail -5 "$tmp/two-b.log")"; fail=1; }
if cmp -s "$tmp/two/$final" "$tmp/two-b/$final"; then
  echo "ok: two 2-rank runs give the same bytes"
else
  echo "FAIL: two 2-rank runs differ"; fail=1
fi

# 3. one output, one writer
n=$(grep -c "^recipe dist-lm" "$tmp/two.log")
grep -q "^run dir .*, 2 processes$" "$tmp/two.log" || { echo "FAIL: the header does not say 2 processes"; fail=1; }
s=$(grep -c '^  sft  *done' "$tmp/two.log")
if [ "$n" -eq 1 ] && [ "$s" -eq 1 ] && [ "$(wc -l <"$tmp/two/metrics.jsonl")" -eq "$(wc -l <"$tmp/one/metrics.jsonl")" ]; then
  echo "ok: one header, one summary, one metrics.jsonl"
else
  echo "FAIL: $n headers, $s summaries (want 1 each), or metrics.jsonl lines differ"; fail=1
fi
grep -q '"world_size": 2' "$tmp/two/run.json" || { echo "FAIL: run.json lacks world_size 2"; fail=1; }
"$r1" verify "$tmp/two" >/dev/null 2>&1 || { echo "FAIL: r1 verify of the 2-rank run"; fail=1; }

# 4. a rank dies: the job ends naming it, and resume finishes bit-identical
R1_TEST_CRASH=sft:3:step R1_TEST_CRASH_RANK=1 mpi "$r1" run "$recipe" --run-dir "$tmp/kill" \
  --threads 1 -q >"$tmp/kill.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "rank 1" "$tmp/kill.log"; then
  echo "ok: killing rank 1 ends the job (status $rc) naming rank 1"
else
  echo "FAIL: killed rank 1: status $rc, log: $(tail -5 "$tmp/kill.log")"; fail=1
fi
if mpi "$r1" resume "$tmp/kill" --threads 1 -q >"$tmp/resume.log" 2>&1 &&
   cmp -s "$tmp/two/$final" "$tmp/kill/$final"; then
  echo "ok: resume after the kill ends bit-identical to the uninterrupted job"
else
  echo "FAIL: resume after the kill: $(tail -5 "$tmp/resume.log")"; fail=1
fi

# 5. another world size
"$r1" resume "$tmp/two" --threads 1 >"$tmp/ws.log" 2>&1
rc=$?
if [ "$rc" -eq 2 ] && grep -q "started by 2 processes and this resume has 1" "$tmp/ws.log"; then
  echo "ok: a 2-rank run refuses a 1-process resume"
else
  echo "FAIL: 1-process resume of a 2-rank run: status $rc: $(cat "$tmp/ws.log")"; fail=1
fi
# 6. GRPO
grecipe=$src/tests/recipes/grpo/features.yaml
gfinal=checkpoints/rl/00000012
"$r1" run "$grecipe" --run-dir "$tmp/g1" --threads 1 -q >"$tmp/g1.log" 2>&1 ||
  { echo "FAIL: one-process GRPO: $(tail -3 "$tmp/g1.log")"; exit 1; }
mpi "$r1" run "$grecipe" --run-dir "$tmp/g2" --threads 1 -q >"$tmp/g2.log" 2>&1 ||
  { echo "FAIL: 2-rank GRPO: $(tail -5 "$tmp/g2.log")"; exit 1; }
rl() { grep '"stage":"rl"' "$1/metrics.jsonl" | grep -v '"eval/' | grep -o "\"$2\":[0-9.e-]*" | cut -d: -f2; }
if [ "$(rl "$tmp/g1" reward)" = "$(rl "$tmp/g2" reward)" ] && [ "$(rl "$tmp/g1" reward | wc -l)" -eq 12 ]; then
  echo "ok: 12 GRPO steps have the same rewards on 1 and 2 ranks"
else
  echo "FAIL: GRPO rewards differ:"; paste <(rl "$tmp/g1" reward) <(rl "$tmp/g2" reward); fail=1
fi
if paste <(rl "$tmp/g1" loss) <(rl "$tmp/g2" loss) | awk '
    { n++; d = $1 - $2; if (d < 0) d = -d; m = $1 > 0 ? $1 : -$1; if (d > 1e-6 + 1e-4 * m) bad++ }
    END { exit !(n == 12 && bad == 0) }'; then
  echo "ok: the 12 GRPO losses agree between 1 and 2 ranks"
else
  echo "FAIL: GRPO losses differ:"; paste <(rl "$tmp/g1" loss) <(rl "$tmp/g2" loss); fail=1
fi
R1_TEST_CRASH=rl:5:step R1_TEST_CRASH_RANK=0 mpi "$r1" run "$grecipe" --run-dir "$tmp/gk" \
  --threads 1 -q >"$tmp/gk.log" 2>&1
rc=$?
[ "$rc" -ne 0 ] && grep -q "rank 0" "$tmp/gk.log" ||
  { echo "FAIL: killed rank 0 mid-GRPO: status $rc: $(tail -3 "$tmp/gk.log")"; fail=1; }
if mpi "$r1" resume "$tmp/gk" --threads 1 -q >"$tmp/gkr.log" 2>&1 &&
   cmp -s "$tmp/g2/$gfinal/model.safetensors" "$tmp/gk/$gfinal/model.safetensors" &&
   cmp -s "$tmp/g2/$gfinal/ref_model.safetensors" "$tmp/gk/$gfinal/ref_model.safetensors" &&
   cmp -s "$tmp/g2/samples/rl.jsonl" "$tmp/gk/samples/rl.jsonl"; then
  echo "ok: GRPO with rank 0 killed at step 5 resumes bit-identical (weights, reference, samples)"
else
  echo "FAIL: GRPO resume after the kill: $(tail -3 "$tmp/gkr.log")"; fail=1
fi
exit $fail
