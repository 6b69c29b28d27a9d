#!/usr/bin/env bash
# dist-gpu.sh R1 SRC - data parallel on GPUs: `mpirun -np 2` with backend cuda, one GPU per
# rank, sums over NCCL (core/dist.c), with tests/recipes/dist/lm.yaml (pretrain + sft, four
# micro-batches per update):
#  1. the header says the sums go over NCCL;
#  2. NCCL and MPI through host memory (R1_NCCL=0) give the same bytes: with two ranks every
#     sum is a + b whichever carries it;
#  3. gradient buckets summed during the backward (the default 25 MiB, and 0.01 MiB: many
#     buckets on the second stream) give the bytes of one sum after the backward (0);
#  4. ZeRO-1 (optimizer.zero 1, the parameters gathered with NCCL broadcasts) gives the bytes
#     of the run without it;
#  5. the same job twice gives the same bytes;
#  6. two ranks on one GPU: NCCL refuses, and the job ends with one line saying what to do.
# Exits 77 without mpirun, without a build with MPI and NCCL, or with fewer than 2 GPUs
# (6 alone needs one GPU).
set -u
r1=$(realpath "$1")
src=$(realpath "$2")
recipe=$src/tests/recipes/dist/lm.yaml
skip() { echo "dist-gpu.sh: skipped: $*" >&2; exit 77; }
command -v mpirun >/dev/null || skip "mpirun not found (tools/setup installs OpenMPI)"
"$r1" --version | grep -q "NCCL" || skip "this r1 was built without NCCL (needs CUDA and MPI)"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU ")
[ "${gpus:-0}" -ge 1 ] || skip "no GPU (nvidia-smi -L lists none)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { timeout 600 mpirun -np 2 --oversubscribe "$@"; }
final=checkpoints/sft/00000012/model.safetensors
run() { # NAME [ENV=VALUE...] -- [--set KEY=VALUE...]
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=(-x "$1"); shift; done
  shift
  mpi "${envs[@]}" "$r1" run "$recipe" --run-dir "$tmp/$name" --set backend=cuda "$@" \
    >"$tmp/$name.log" 2>&1 || { echo "FAIL: $name: $(tail -3 "$tmp/$name.log")"; fail=1; }
}
same() { # A B WHAT
  if cmp -s "$tmp/$1/$final" "$tmp/$2/$final"; then echo "ok: $3"; else echo "FAIL: $3: bytes differ"; fail=1; fi
}

# 6. first: it needs one GPU only
mpi -x CUDA_VISIBLE_DEVICES=0 "$r1" run "$recipe" --run-dir "$tmp/shared" --set backend=cuda \
  >"$tmp/shared.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "NCCL cannot start on rank .*run one rank per GPU" "$tmp/shared.log"; then
  echo "ok: two ranks on one GPU end the job (status $rc) with NCCL's refusal"
else
  echo "FAIL: two ranks on one GPU: status $rc: $(tail -3 "$tmp/shared.log")"; fail=1
fi
if [ "$gpus" -lt 2 ]; then
  [ "$fail" -eq 0 ] || exit 1
  skip "one GPU: the NCCL sums need two (the refusal above passed)"
fi

run nccl R1_NCCL=1 --
if grep -q "^run dir .*, 2 processes (sums over NCCL [0-9.]*)$" "$tmp/nccl.log"; then
  echo "ok: the header says the sums go over NCCL"
else
  echo "FAIL: header: $(grep '^run dir' "$tmp/nccl.log")"; fail=1
fi
run mpi R1_NCCL=0 --
grep -q "sums over MPI through host memory (no NCCL: R1_NCCL=0)" "$tmp/mpi.log" ||
  { echo "FAIL: R1_NCCL=0 header: $(grep '^run dir' "$tmp/mpi.log")"; fail=1; }
same nccl mpi "NCCL and MPI sums give the same bytes"
run nobuckets R1_NCCL=1 -- --set stages.pretrain.optimizer.grad_bucket_mb=0 \
  --set stages.sft.optimizer.grad_bucket_mb=0
run small R1_NCCL=1 -- --set stages.pretrain.optimizer.grad_bucket_mb=0.01 \
  --set stages.sft.optimizer.grad_bucket_mb=0.01
same nccl nobuckets "sums during the backward (25 MiB buckets) = one sum after it"
same small nobuckets "0.01 MiB buckets = one sum after the backward"
run zero R1_NCCL=1 -- --set stages.pretrain.optimizer.zero=1 --set stages.sft.optimizer.zero=1
same nccl zero "ZeRO-1 with NCCL broadcasts gives the bytes of the run without it"
run again R1_NCCL=1 --
same nccl again "the same job twice gives the same bytes"
exit $fail
