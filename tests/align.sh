#!/usr/bin/env bash
# align.sh R1 - the align stage end to end on the tiny model (tests/recipes/align/align.yaml):
#  1. mixed rewards: the reward model's part (rewards/rm) is exactly 0 before
#     align.rm_start_step and present after it, general prompts make up part of every
#     step, held-out accuracy stays well above chance (arith answers: ~0 by guessing) and
#     the reward model separates held-out pairs;
#  2. resume: killed with -9 inside the align stage's checkpoint write, `r1 resume` ends
#     with the weights, optimizer and metrics of the uninterrupted align stage (both
#     start from one base, killed and copied in the reward model's stage);
#  3. bad recipes (general prompts without a reward model, an rm_start_step the stage never
#     reaches, a reward model that is not one) exit 2 before any work.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
recipe=$here/recipes/align/align.yaml

# The base (1000 pretraining steps) is made once: the first run is killed in the reward
# model's stage, a copy of it is the crash test's start (2), and its resume is the
# uninterrupted align run every check compares with.
R1_TEST_CRASH=rm:20:step "$r1" run "$recipe" --run-dir "$tmp/ref" >"$tmp/ref.log" 2>&1
rc=$?
[ $rc -eq 137 ] || { echo "FAIL: expected a kill in the rm stage (137), got $rc: $(tail -3 "$tmp/ref.log")"; exit 1; }
cp -a "$tmp/ref" "$tmp/crash"
"$r1" resume "$tmp/ref" >"$tmp/ref.log" 2>&1 ||
  { echo "FAIL: align run: $(tail -3 "$tmp/ref.log")"; exit 1; }
m=$tmp/ref/metrics.jsonl
rm_of() { grep '"stage":"align"' "$m" | grep "\"step\":$1," | grep -o '"rewards/rm":[-0-9.e]*' | cut -d: -f2; }
before=$(for s in 1 2 3 4; do rm_of $s; done | sort -u)
after=$(for s in 5 6 7 8; do rm_of $s; done)
if [ "$before" != "0" ]; then echo "FAIL: rewards/rm before rm_start_step: $before"; fail=1
elif [ "$(echo "$after" | grep -cv '^0$')" -ne 4 ]; then echo "FAIL: rewards/rm after rm_start_step: $after"; fail=1
else echo "ok: the reward model scores from step 5 on ($(echo $after))"; fi
gf=$(grep '"stage":"align"' "$m" | grep -o '"general_frac":[0-9.e-]*' | cut -d: -f2 | sort -u)
awk -v g="$(echo "$gf" | head -1)" 'BEGIN { exit !(g > 0 && g < 1) }' ||
  { echo "FAIL: general_frac $gf"; fail=1; }
acc=$(grep '"stage":"align"' "$m" | grep -o '"eval/accuracy":[0-9.e-]*' | cut -d: -f2 | tail -1)
pa=$(grep '"stage":"rm"' "$m" | grep -o '"eval/pairwise_accuracy":[0-9.e-]*' | cut -d: -f2 | tail -1)
if awk -v a="$acc" -v p="$pa" 'BEGIN { exit !(a >= 0.2 && p >= 0.6) }'; then
  echo "ok: held-out accuracy after align $acc, reward model pairwise accuracy $pa"
else echo "FAIL: held-out accuracy $acc (want >= 0.2), pairwise $pa (want >= 0.6)"; fail=1; fi

final() {
  local c=$1/checkpoints/align/00000008
  sha256sum "$c"/model.safetensors "$c"/optimizer.safetensors "$c"/trainer_state.json | awk '{print $1}'
  grep '"stage":"align"' "$1"/metrics.jsonl | grep -o '"reward":[-0-9.e]*\|"eval/accuracy":[0-9.e-]*'
}
want=$(final "$tmp/ref")
d=$tmp/crash
R1_TEST_CRASH=align:4:before-commit "$r1" resume "$d" >/dev/null 2>&1
rc=$?
if [ $rc -ne 137 ]; then echo "FAIL: expected a kill (137), got $rc"; fail=1
elif ! "$r1" resume "$d" >/dev/null 2>"$tmp/err"; then echo "FAIL: resume: $(cat "$tmp/err")"; fail=1
elif [ "$(final "$d")" != "$want" ]; then echo "FAIL: resumed align differs from the uninterrupted run"; fail=1
else echo "ok: kill -9 in align's checkpoint write, resume ends bit-identical"; fi

bad() { # name sed-expression message-pattern
  sed "$2" "$recipe" >"$tmp/bad.yaml"
  err=$("$r1" run "$tmp/bad.yaml" --run-dir "$tmp/bad-run" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 2 ] && [ ! -e "$tmp/bad-run" ] && echo "$err" | head -1 | grep -q "bad.yaml:.*$3"
  then echo "ok: $1 exits 2"
  else echo "FAIL: $1: exit $rc: $err"; fail=1; fi
  rm -rf "$tmp/bad-run"
}
bad "general prompts without a reward model" 's/kind: reward_model/kind: sft/; s/prefs:digits=2", size: 1000/arith:digits=2,ops=+,demo=1", size: 1000/' "no reward model"
bad "rm_start_step beyond the stage" 's/rm_start_step: 4/rm_start_step: 8/' "rm_start_step"
bad "a reward model that is not one" 's/rm_scope: summary/reward_model: base/' "not a reward_model stage"
[ $fail -eq 0 ] && echo "all align checks passed"
exit $fail
