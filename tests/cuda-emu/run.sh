#!/usr/bin/env bash
# run.sh R1-EMU R1 - r1 end to end on the emulated GPU (tests/cuda-emu; R1-EMU is r1 linked
# with the emulator, R1 the normal build), so every stage's host side runs against device
# memory that only the backend's ops may touch:
#  1. a chat sft stage with backend: cuda says so in its header, and its losses stay within
#     1e-4 (relative) of the CPU backend's (f32: only summation orders differ);
#  2. killed with -9 inside a checkpoint write and resumed, it ends bit-identical to the
#     uninterrupted run on the emulated GPU, and r1 verify passes;
#  3. a GRPO stage (KL with a resetting reference, old log-probs, sampling; precision bf16,
#     tests/recipes/emu/grpo.yaml) runs on the emulated GPU and resumes bit-identical after
#     kill -9;
#  4. the other stage kinds (tests/recipes/emu/stages.yaml: pretraining, a pairwise and a
#     pointwise reward model, rejection sampling, align scored by both): the deterministic
#     ones match the CPU's losses within 1e-4, and align resumes bit-identical after kill -9.
set -u
emu=$(realpath "$1")
r1=$(realpath "$2")
src=$(cd "$(dirname "$0")/.." && pwd)  # tests/
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
[ -n "${R1_CUBLASLT:-}" ] ||
  { echo "FAIL: R1_CUBLASLT (the emulator's cuBLASLt) is not set"; exit 1; }
cp "$src"/recipes/sft/chat.yaml "$src"/recipes/sft/chat.jsonl "$src"/recipes/emu/grpo.yaml \
   "$src"/recipes/emu/stages.yaml "$tmp"/

# 1. sft on the emulated GPU against the CPU
final() {
  sha256sum "$1"/checkpoints/sft/00000008/model.safetensors \
            "$1"/checkpoints/sft/00000008/trainer_state.json "$1"/metrics.jsonl 2>/dev/null |
    awk '{print $1}'
}
losses() { grep "\"stage\":\"$2\"" "$1/metrics.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2; }
# same_losses GPU CPU STAGE: as many losses, each within 1e-4 (relative) of the cpu's
same_losses() {
  [ "$(losses "$1" "$3" | wc -l)" -eq "$(losses "$2" "$3" | wc -l)" ] &&
    paste <(losses "$1" "$3") <(losses "$2" "$3") |
    awk '{ if (!($1 == $1 + 0 && ($1 - $2) ^ 2 <= (1e-4 * $2) ^ 2)) bad = 1 } END { exit bad }'
}
"$r1" run "$tmp/chat.yaml" --run-dir "$tmp/cpu" --set backend=cpu >"$tmp/cpu.log" 2>&1 ||
  { echo "FAIL: cpu run: $(tail -3 "$tmp/cpu.log")"; exit 1; }
"$emu" run "$tmp/chat.yaml" --run-dir "$tmp/gpu" --set backend=cuda >"$tmp/gpu.log" 2>&1 ||
  { echo "FAIL: emulated gpu run: $(tail -3 "$tmp/gpu.log")"; exit 1; }
if ! grep -q "backend cuda (r1 CUDA emulator (CPU))" "$tmp/gpu.log"; then
  echo "FAIL: the run header does not name the emulated GPU: $(head -2 "$tmp/gpu.log")"; fail=1
elif [ "$(losses "$tmp/gpu" sft | wc -l)" -ne 8 ] || ! same_losses "$tmp/gpu" "$tmp/cpu" sft; then
  echo "FAIL: losses on the emulated gpu $(losses "$tmp/gpu" sft | tr '\n' ' ')" \
       "vs cpu $(losses "$tmp/cpu" sft | tr '\n' ' ')"; fail=1
else
  echo "ok: sft on the emulated GPU matches the CPU's losses within 1e-4"
fi

# 2. kill -9 and resume on the emulated GPU
want=$(final "$tmp/gpu")
d=$tmp/crash
(R1_TEST_CRASH=sft:3:before-commit exec "$emu" run "$tmp/chat.yaml" --run-dir "$d" \
  --set backend=cuda >/dev/null 2>&1)
rc=$?
if [ $rc -ne 137 ]; then
  echo "FAIL: expected a kill (137) at sft step 3, got $rc"; fail=1
elif ! "$emu" resume "$d" >/dev/null 2>"$tmp/err"; then
  echo "FAIL: resume on the emulated gpu: $(cat "$tmp/err")"; fail=1
elif [ "$(final "$d")" != "$want" ]; then
  echo "FAIL: the resumed run differs from the uninterrupted one on the emulated gpu"; fail=1
elif ! "$r1" verify "$d" >/dev/null 2>"$tmp/err"; then
  echo "FAIL: r1 verify: $(cat "$tmp/err")"; fail=1
else
  echo "ok: kill -9 at sft:3 and resume on the emulated GPU give the same bytes"
fi

# 3. GRPO in bf16 on the emulated GPU
gfinal() {
  local c=$1/checkpoints/rl/00000004
  sha256sum "$c"/model.safetensors "$c"/optimizer.safetensors "$c"/ref_model.safetensors \
            "$c"/trainer_state.json 2>/dev/null | awk '{print $1}'
  grep '"stage":"rl"' "$1"/metrics.jsonl | grep -o '"\(loss\|reward\|kl\)":[0-9.e+-]*'
}
"$emu" run "$tmp/grpo.yaml" --run-dir "$tmp/g" --set backend=cuda >"$tmp/g.log" 2>&1 ||
  { echo "FAIL: grpo on the emulated gpu: $(tail -3 "$tmp/g.log")"; fail=1; }
want=$(gfinal "$tmp/g")
d=$tmp/gcrash
(R1_TEST_CRASH=rl:2:before-commit exec "$emu" run "$tmp/grpo.yaml" --run-dir "$d" \
  --set backend=cuda >/dev/null 2>&1)
rc=$?
if [ "$(echo "$want" | head -4 | grep -c .)" -ne 4 ]; then
  echo "FAIL: the grpo run lacks its files"; fail=1
elif [ $rc -ne 137 ]; then
  echo "FAIL: expected a kill (137) at rl step 2, got $rc"; fail=1
elif ! "$emu" resume "$d" >/dev/null 2>"$tmp/err"; then
  echo "FAIL: grpo resume on the emulated gpu: $(cat "$tmp/err")"; fail=1
elif [ "$(gfinal "$d")" != "$want" ]; then
  echo "FAIL: the resumed grpo run differs from the uninterrupted one"; fail=1
else
  echo "ok: GRPO (KL, old log-probs, sampling) in bf16 on the emulated GPU resumes bit-identical"
fi
# 4. pretrain, reward_model (pairwise, pointwise), rejection_sft, align
afinal() {
  local c=$1/checkpoints/align/00000002
  sha256sum "$c"/model.safetensors "$c"/optimizer.safetensors "$c"/trainer_state.json \
            2>/dev/null | awk '{print $1}'
  grep '"stage":"align"' "$1"/metrics.jsonl |
    grep -o '"\(loss\|grad_norm\|reward\|rewards/[a-z]*\|kl\|entropy\)":[0-9.e+-]*'
}
"$r1" run "$tmp/stages.yaml" --run-dir "$tmp/scpu" >"$tmp/scpu.log" 2>&1 ||
  { echo "FAIL: the stages recipe on the cpu: $(tail -3 "$tmp/scpu.log")"; exit 1; }
if ! "$emu" run "$tmp/stages.yaml" --run-dir "$tmp/s" --set backend=cuda >"$tmp/s.log" 2>&1; then
  echo "FAIL: the stages recipe on the emulated gpu: $(tail -3 "$tmp/s.log")"; fail=1
else
  for st in base rm safety; do
    if [ "$(losses "$tmp/s" $st | wc -l)" -lt 1 ] || ! same_losses "$tmp/s" "$tmp/scpu" $st; then
      echo "FAIL: $st losses on the emulated gpu $(losses "$tmp/s" $st | tr '\n' ' ')" \
           "vs cpu $(losses "$tmp/scpu" $st | tr '\n' ' ')"; fail=1
    fi
  done
  want=$(afinal "$tmp/s")
  d=$tmp/scrash
  (R1_TEST_CRASH=align:1:before-commit exec "$emu" run "$tmp/stages.yaml" --run-dir "$d" \
    --set backend=cuda >/dev/null 2>&1)
  rc=$?
  if [ "$(echo "$want" | head -3 | grep -c .)" -ne 3 ]; then
    echo "FAIL: the align stage lacks its files"; fail=1
  elif [ $rc -ne 137 ]; then
    echo "FAIL: expected a kill (137) at align step 1, got $rc"; fail=1
  elif ! "$emu" resume "$d" >/dev/null 2>"$tmp/err"; then
    echo "FAIL: align resume on the emulated gpu: $(cat "$tmp/err")"; fail=1
  elif [ "$(afinal "$d")" != "$want" ]; then
    echo "FAIL: the resumed align run differs from the uninterrupted one"; fail=1
  else
    echo "ok: pretrain, reward models, rejection sampling and align on the emulated GPU" \
         "(losses as the cpu's; align resumes bit-identical)"
  fi
fi
[ $fail -eq 0 ] && echo "all emulated-GPU run checks passed"
exit $fail
