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
#     losses to 1e-4, and the evaluations (split over the ranks by prompt) exactly; rank 0
#     killed mid-GRPO and resumed ends bit-identical;
#  7. reward_model (tests/recipes/rm/prefs.yaml, two micro-batches per update): the 40
#     losses agree with one process's to 1e-4;
#  8. a rank that hangs (R1_TEST_HANG) ends the job within R1_DIST_TIMEOUT (3 s here) with a
#     line saying so, and the resume ends bit-identical;
#  9. rejection_sft (tests/recipes/rejection/pipeline.yaml: pretrain, grpo, rejection
#     sampling split by prompt, then data-parallel SFT): the dataset is byte-identical to
#     one process's and the SFT losses agree to 1e-4;
# 10. ZeRO-1 (optimizer.zero 1): the same bytes as without it, half the optimizer memory
#     per rank, rank 1's shard in every checkpoint (r1 verify passes), and a kill of rank 1
#     mid-SFT resumes bit-identical from the shards;
# 11. gradient buckets (optimizer.grad_bucket_mb) of any size, or none, give the same bytes;
# 12. ZeRO-1 in precision bf16 gives the bytes of bf16 without it (the bf16 weights' copy is
#     remade after the gather of the other ranks' shards).
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
grep -q "^run dir .*, 2 processes (sums over MPI)$" "$tmp/two.log" || { echo "FAIL: the header does not say 2 processes (sums over MPI)"; fail=1; }
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
if [ -n "$(grep '"eval/' "$tmp/g1/metrics.jsonl")" ] &&
   [ "$(grep '"eval/' "$tmp/g1/metrics.jsonl")" = "$(grep '"eval/' "$tmp/g2/metrics.jsonl")" ]; then
  echo "ok: the split evaluations equal one process's"
else
  echo "FAIL: evaluations differ between 1 and 2 ranks"; fail=1
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
# 7. reward model
rrecipe=$src/tests/recipes/rm/prefs.yaml
rml() { grep '"stage":"rm"' "$1/metrics.jsonl" | grep -v '"eval/' | grep -o '"loss":[0-9.e-]*' | cut -d: -f2; }
if "$r1" run "$rrecipe" --run-dir "$tmp/rm1" --threads 1 -q >"$tmp/rm1.log" 2>&1 &&
   mpi "$r1" run "$rrecipe" --run-dir "$tmp/rm2" --threads 1 -q >"$tmp/rm2.log" 2>&1 &&
   paste <(rml "$tmp/rm1") <(rml "$tmp/rm2") | awk '
     { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 + 1e-4 * $1) bad++ }
     END { exit !(n == 40 && bad == 0) }'; then
  echo "ok: 40 reward-model losses agree between 1 and 2 ranks"
else
  echo "FAIL: reward model on 2 ranks: $(tail -3 "$tmp/rm2.log")"
  paste <(rml "$tmp/rm1") <(rml "$tmp/rm2") | head; fail=1
fi
# 8. a rank hangs
start=$(date +%s)
R1_DIST_TIMEOUT=3 R1_TEST_HANG=sft:3:step R1_TEST_CRASH_RANK=1 mpi "$r1" run "$recipe" \
  --run-dir "$tmp/hang" --threads 1 -q >"$tmp/hang.log" 2>&1
rc=$? took=$(( $(date +%s) - start ))
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "hangs without answering (R1_DIST_TIMEOUT=3)" "$tmp/hang.log"; then
  echo "ok: a hung rank ends the job after ${took}s (status $rc)"
else
  echo "FAIL: hung rank: status $rc after ${took}s: $(head -3 "$tmp/hang.log")"; fail=1
fi
if mpi "$r1" resume "$tmp/hang" --threads 1 -q >"$tmp/hangr.log" 2>&1 &&
   cmp -s "$tmp/two/$final" "$tmp/hang/$final"; then
  echo "ok: resume after the hang ends bit-identical"
else
  echo "FAIL: resume after the hang: $(tail -3 "$tmp/hangr.log")"; fail=1
fi
# 9. rejection sampling
jrecipe=$src/tests/recipes/rejection/pipeline.yaml
rsl() { grep '"stage":"rs"' "$1/metrics.jsonl" | grep -o '"loss":[0-9.e-]*' | cut -d: -f2; }
if "$r1" run "$jrecipe" --run-dir "$tmp/j1" --threads 1 -q >"$tmp/j1.log" 2>&1 &&
   mpi "$r1" run "$jrecipe" --run-dir "$tmp/j2" --threads 1 -q >"$tmp/j2.log" 2>&1; then
  c=$(ls "$tmp/j1/checkpoints/rs" | tail -1)
  if [ "$(wc -l <"$tmp/j1/checkpoints/rs/$c/dataset.jsonl")" -gt 0 ] &&
     cmp -s "$tmp/j1/checkpoints/rs/$c/dataset.jsonl" "$tmp/j2/checkpoints/rs/$c/dataset.jsonl" &&
     paste <(rsl "$tmp/j1") <(rsl "$tmp/j2") | awk '
       { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 + 1e-4 * $1) bad++ }
       END { exit !(n > 0 && bad == 0) }'; then
    echo "ok: rejection sampling on 2 ranks gives one process's dataset and SFT losses"
  else
    echo "FAIL: rejection_sft differs between 1 and 2 ranks"; fail=1
  fi
else
  echo "FAIL: rejection pipeline runs: $(tail -3 "$tmp/j2.log")"; fail=1
fi
# 10. ZeRO-1
zset=(--set stages.pretrain.optimizer.zero=1 --set stages.sft.optimizer.zero=1)
mpi "$r1" run "$recipe" --run-dir "$tmp/z" --threads 1 "${zset[@]}" >"$tmp/z.log" 2>&1 ||
  { echo "FAIL: ZeRO-1 run: $(tail -5 "$tmp/z.log")"; fail=1; }
if cmp -s "$tmp/two/$final" "$tmp/z/$final" &&
   [ -f "$tmp/z/checkpoints/sft/00000012/optimizer-rank1-of-2.safetensors" ] &&
   grep -q '^sft starts at step 0 of 12: .* 451 KiB grads + 451 KiB optimizer' "$tmp/z.log" &&
   "$r1" verify "$tmp/z" >/dev/null 2>&1; then
  echo "ok: ZeRO-1 gives the same bytes with half the optimizer state per rank, shards verified"
else
  echo "FAIL: ZeRO-1: $(grep 'sft starts' "$tmp/z.log")"; fail=1
fi
R1_TEST_CRASH=sft:3:step R1_TEST_CRASH_RANK=1 mpi "$r1" run "$recipe" --run-dir "$tmp/zk" \
  --threads 1 -q "${zset[@]}" >"$tmp/zk.log" 2>&1
if mpi "$r1" resume "$tmp/zk" --threads 1 -q >"$tmp/zkr.log" 2>&1 &&
   cmp -s "$tmp/z/$final" "$tmp/zk/$final"; then
  echo "ok: a ZeRO-1 run killed mid-SFT resumes bit-identical from its shards"
else
  echo "FAIL: ZeRO-1 resume: $(tail -3 "$tmp/zkr.log")"; fail=1
fi
# 11. gradient sums in buckets during the backward: many small buckets (0.01 MiB: 44 for the
#     tiny model, the first summed while the lower layers' backward runs) and none (one sum
#     after the backward) give the bytes of the default (one 25 MiB bucket)
for mb in 0.01 0; do
  bset=(--set stages.pretrain.optimizer.grad_bucket_mb=$mb --set stages.sft.optimizer.grad_bucket_mb=$mb)
  mpi "$r1" run "$recipe" --run-dir "$tmp/b$mb" --threads 1 -q "${bset[@]}" >"$tmp/b$mb.log" 2>&1 ||
    { echo "FAIL: grad_bucket_mb=$mb run: $(tail -5 "$tmp/b$mb.log")"; fail=1; }
  if cmp -s "$tmp/two/$final" "$tmp/b$mb/$final"; then
    echo "ok: grad_bucket_mb $mb gives the same bytes as the default buckets"
  else
    echo "FAIL: grad_bucket_mb $mb changes the weights"; fail=1
  fi
done
# 12. ZeRO-1 in precision bf16: each rank's AdamW writes the bf16 working copy of its own
#     shard only, so after the gather the copy is remade from the gathered weights: the
#     bytes of the same bf16 job without ZeRO-1
hset=(--set stages.pretrain.precision=bf16 --set stages.sft.precision=bf16)
mpi "$r1" run "$recipe" --run-dir "$tmp/h" --threads 1 -q "${hset[@]}" >"$tmp/h.log" 2>&1 &&
mpi "$r1" run "$recipe" --run-dir "$tmp/hz" --threads 1 -q "${hset[@]}" "${zset[@]}" \
  >"$tmp/hz.log" 2>&1 ||
  { echo "FAIL: bf16 runs: $(tail -3 "$tmp/h.log" "$tmp/hz.log")"; fail=1; }
if cmp -s "$tmp/h/$final" "$tmp/hz/$final" && ! cmp -s "$tmp/two/$final" "$tmp/h/$final"; then
  echo "ok: ZeRO-1 in bf16 gives the bytes of bf16 without it"
else
  echo "FAIL: ZeRO-1 in bf16 differs from bf16 without it"; fail=1
fi
exit $fail
