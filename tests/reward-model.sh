#!/usr/bin/env bash
# reward-model.sh R1 - the reward_model stage end to end on the tiny model:
#  1. learning: a short arith pretrain, then a reward model on prefs pairs; held-out
#     eval/pairwise_accuracy (pairs of the disjoint eval split) ends at 0.7 or more and
#     the held-out loss falls to under 3/4 of its first value
#     (tests/recipes/rm/prefs.yaml; 0.83-0.94 and a 2.5x-8x lower loss observed over
#     seeds 1-5);
#  2. resume: killed with -9 inside the step-20 checkpoint write, `r1 resume` ends with
#     the same weights, optimizer, trainer state and evaluations as the uninterrupted run;
#  3. export: `r1 export` writes a LlamaForSequenceClassification dir (num_labels 1);
#  4. bad data: a pairs file without the rejected field exits 2 with one line naming
#     the file, line and field.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
recipe=$here/recipes/rm/prefs.yaml

# 1. learning
"$r1" run "$recipe" --run-dir "$tmp/ref" >"$tmp/ref.log" 2>&1 ||
  { echo "FAIL: prefs run: $(tail -3 "$tmp/ref.log")"; exit 1; }
acc=$(grep '"stage":"rm"' "$tmp/ref/metrics.jsonl" | grep -o '"eval/pairwise_accuracy":[0-9.e-]*' | cut -d: -f2)
loss=$(grep '"stage":"rm"' "$tmp/ref/metrics.jsonl" | grep -o '"eval/loss":[0-9.e-]*' | cut -d: -f2)
last=$(echo "$acc" | tail -1) l0=$(echo "$loss" | head -1) l1=$(echo "$loss" | tail -1)
if [ "$(echo "$acc" | wc -l)" -ne 5 ]; then
  echo "FAIL: expected 5 evaluations (steps 0, 10, 20, 30, 40), got: $acc"; fail=1
elif awk -v a="$last" -v l0="$l0" -v l1="$l1" 'BEGIN { exit !(a >= 0.7 && l1 < 0.75 * l0) }'; then
  echo "ok: held-out pairwise accuracy $last, loss $l0 -> $l1"
else
  echo "FAIL: held-out pairwise accuracy $last (want >= 0.7), loss $l0 -> $l1 (want < 3/4)"; fail=1
fi
grep '"stage":"rm","step":40,' "$tmp/ref/metrics.jsonl" | grep -q '"accuracy":.*"margin":.*"grad_norm":.*"lr":' ||
  { echo "FAIL: rm step metrics lack accuracy/margin/grad_norm/lr"; fail=1; }

# 2. resume after kill -9 inside a checkpoint write
final() {
  local c=$1/checkpoints/rm/00000040
  sha256sum "$c"/model.safetensors "$c"/optimizer.safetensors "$c"/trainer_state.json \
            "$c"/config.json 2>/dev/null | awk '{print $1}'
  grep -o '"eval/[a-z_]*":[0-9.e-]*' "$1"/metrics.jsonl
}
want=$(final "$tmp/ref")
[ "$(echo "$want" | head -4 | grep -c .)" -eq 4 ] || { echo "FAIL: the run lacks its final files"; exit 1; }
d=$tmp/crash
R1_TEST_CRASH=rm:20:before-commit "$r1" run "$recipe" --run-dir "$d" >/dev/null 2>&1
rc=$?
if [ $rc -ne 137 ]; then
  echo "FAIL: expected a kill (137), got $rc"; fail=1
elif ! "$r1" resume "$d" >/dev/null 2>"$tmp/err"; then
  echo "FAIL: resume: $(cat "$tmp/err")"; fail=1
elif [ "$(final "$d")" != "$want" ]; then
  echo "FAIL: kill -9 at rm:20 + resume differs from the uninterrupted run"; fail=1
else
  echo "ok: kill -9 at rm:20:before-commit, resume: same final model.safetensors"
fi

# 3. export: a sequence-classification dir
if "$r1" export "$tmp/ref" rm "$tmp/hf" >/dev/null 2>"$tmp/err" &&
   grep -q '"num_labels": 1' "$tmp/hf/config.json" &&
   grep -q 'LlamaForSequenceClassification' "$tmp/hf/config.json" &&
   grep -q '"pad_token_id": 263' "$tmp/hf/config.json"; then
  echo "ok: export writes a score-head model dir"
else
  echo "FAIL: export: $(cat "$tmp/err") $(cat "$tmp/hf/config.json" 2>/dev/null)"; fail=1
fi

# 4. bad data: one line, exit 2
printf '{"prompt": "What is 1+1?", "chosen": "2", "rejected": "3"}\n{"prompt": "What is 2+2?", "chosen": "4"}\n' >"$tmp/bad.jsonl"
cat >"$tmp/bad.yaml" <<YAML
name: rm-bad
model: {init: scratch:tiny, tokenizer: bytes}
stages:
  - {name: rm, kind: reward_model, steps: 2, batch_size: 1, seq_len: 64, data: {path: bad.jsonl}}
YAML
err=$("$r1" run "$tmp/bad.yaml" --run-dir "$tmp/bad" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 2 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] &&
   echo "$err" | grep -q "bad.jsonl:2: string field 'rejected' is missing"; then
  echo "ok: bad pairs file: exit 2, one line"
else
  echo "FAIL: bad pairs file: exit $rc: $err"; fail=1
fi
[ $fail -eq 0 ] && echo "all reward-model checks passed"
exit $fail
