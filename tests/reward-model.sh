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
#     the file, line and field;
#  5. pointwise (safety) mode: tests/recipes/safety/rm.yaml trains on the safety generator
#     (harmful or harmless sentences of the same form hidden in the thinking or the
#     answer) and ends with held-out accuracy and AUC of 0.75 or more (0.91 and 0.87
#     observed; 0.45 and 0.40 before training); a labelled file with a bad label exits 2
#     naming file and line; align.reward_model naming a pointwise stage, and
#     align.safety_model naming a pairwise one, are recipe errors.
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
# 5. pointwise
"$r1" run "$here/recipes/safety/rm.yaml" --run-dir "$tmp/safety" >"$tmp/safety.log" 2>&1 ||
  { echo "FAIL: safety run: $(tail -3 "$tmp/safety.log")"; fail=1; }
sl() { grep '"stage":"safety"' "$tmp/safety/metrics.jsonl" | grep -o "\"$1\":[0-9.e-]*" | cut -d: -f2 | tail -1; }
sa=$(sl eval/accuracy) su=$(sl eval/auc)
if [ -n "$sa" ] && awk -v a="$sa" -v u="$su" 'BEGIN { exit !(a >= 0.75 && u >= 0.75) }'; then
  echo "ok: pointwise safety model: held-out accuracy $sa, AUC $su"
else
  echo "FAIL: pointwise safety model: accuracy '$sa', AUC '$su' (want >= 0.75)"; fail=1
fi
printf '%s\n' '{"prompt": "p", "response": "r", "label": "safe"}' \
  '{"prompt": "p", "response": "r", "label": "maybe"}' >"$tmp/labels.jsonl"
cat >"$tmp/badlabel.yaml" <<YAML
name: rm-badlabel
model: {init: scratch:tiny, tokenizer: bytes}
stages:
  - {name: s, kind: reward_model, steps: 2, batch_size: 1, seq_len: 64,
     reward_model: {mode: pointwise}, data: {path: labels.jsonl}}
YAML
err=$("$r1" run "$tmp/badlabel.yaml" --run-dir "$tmp/badlabel" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 2 ] && echo "$err" | grep -q "labels.jsonl:2: 'label' must be \"safe\" or \"unsafe\""; then
  echo "ok: a bad label: exit 2 naming file and line"
else
  echo "FAIL: bad label: exit $rc: $err"; fail=1
fi
cat >"$tmp/mixup.yaml" <<YAML
name: rm-mixup
model: {init: scratch:tiny, tokenizer: bytes}
stages:
  - {name: s, kind: reward_model, steps: 2, batch_size: 1, seq_len: 64,
     reward_model: {mode: pointwise}, data: {generator: "safety:digits=1"}}
  - {name: p, kind: reward_model, steps: 2, batch_size: 1, seq_len: 64,
     data: {generator: "prefs:digits=1"}}
  - {name: a, kind: align, steps: 2, data: {generator: "arith:digits=1"},
     align: {reward_model: s, safety_model: p}}
YAML
err=$("$r1" recipe check "$tmp/mixup.yaml" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$err" | grep -q "align.reward_model 's' is a pointwise (safety) reward model" &&
   echo "$err" | grep -q "align.safety_model 'p' must be a reward_model stage with reward_model.mode pointwise"; then
  echo "ok: reward models in the wrong align keys are recipe errors"
else
  echo "FAIL: align model kinds: exit $rc: $err"; fail=1
fi
[ $fail -eq 0 ] && echo "all reward-model checks passed"
exit $fail
