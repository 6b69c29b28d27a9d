#!/usr/bin/env bash
# smollm2-recipes.sh R1 SRC - the shipped SmolLM2 recipes (SRC/recipes/smollm2-*.yaml) run
# end to end on the real model, every stage shrunk with --set to a step or two (the recipes
# themselves take about an hour each on two cores; docs/results.md has what they reach).
# Needs the SmolLM2-135M-Instruct GGUF (tools/fetch-model smollm2); exits 77 without it.
# For each recipe: `r1 run` with its model path as written ($R1_CACHE/...) finishes, `r1
# status` shows every stage done with its whole (shrunk) length, every stage that answers
# questions logged eval/accuracy, and `r1 verify` passes.  Rejection sampling keeps any
# completion here (min_reward 0, require_format false): a one-step cold start is not meant
# to be right, only to hand the next stage a checkpoint.
set -u
r1=$(realpath "$1")
src=$(realpath "$2")
export R1_CACHE=${R1_CACHE:-$HOME/.cache/r1}
gguf=$R1_CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ]; then
  echo "skipped: $gguf is missing (tools/fetch-model smollm2 downloads it)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0

for f in "$src"/recipes/smollm2-*.yaml; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  base=$(basename "$f" .yaml)
  # the stages: "  - name: X" followed (within the entry) by "    kind: K"
  stages=$(awk '/^  - name: / { name = $3 } /^    kind: / && name != "" { print name, $2; name = "" }' "$f")
  [ -n "$stages" ] || { echo "FAIL: $base: no stages found"; fail=1; continue; }
  sets=()
  while read -r name kind; do
    s=stages.$name
    sets+=(--set "$s.steps=1" --set "$s.save_every=1" --set "$s.log_every=1"
           --set "$s.optimizer.warmup_steps=0")
    case $kind in
      sft|pretrain)
        sets+=(--set "$s.batch_size=2" --set "$s.micro_batch_size=0" --set "$s.data.size=8"
               --set "$s.data.eval_size=1" --set "$s.eval_samples=1") ;;
      grpo|align)
        sets+=(--set "$s.eval_every=1" --set "$s.data.size=8" --set "$s.data.eval_size=1"
               --set "$s.batch_size=2" --set "$s.micro_batch_size=0"
               --set "$s.grpo.prompts_per_step=1" --set "$s.grpo.group_size=2"
               --set "$s.grpo.minibatches=1" --set "$s.grpo.max_completion_len=8"
               --set "$s.grpo.eval_samples=1")
        [ "$kind" = align ] && sets+=(--set "$s.align.general_size=2" --set "$s.align.rm_start_step=0") ;;
      rejection_sft)
        sets+=(--set "$s.batch_size=2" --set "$s.micro_batch_size=0" --set "$s.data.size=8"
               --set "$s.data.eval_size=1" --set "$s.eval_samples=1"
               --set "$s.rejection.max_prompts=2" --set "$s.rejection.prompts_per_step=2"
               --set "$s.rejection.samples_per_prompt=1" --set "$s.rejection.keep_per_prompt=1"
               --set "$s.rejection.temperature=0"
               --set "$s.rejection.max_completion_len=160" --set "$s.rejection.min_reward=0"
               --set "$s.rejection.require_format=false") ;;
      reward_model)
        sets+=(--set "$s.batch_size=2" --set "$s.micro_batch_size=0" --set "$s.data.size=4"
               --set "$s.data.eval_size=1") ;;
    esac
  done <<<"$stages"
  run=$tmp/$base
  if ! "$r1" run "$f" --run-dir "$run" --quiet "${sets[@]}" >"$tmp/$base.log" 2>&1; then
    echo "FAIL: $base: r1 run: $(tail -3 "$tmp/$base.log")"; fail=1; continue
  fi
  "$r1" status "$run" >"$tmp/$base.status" 2>&1 || { echo "FAIL: $base: r1 status"; fail=1; }
  want=$(echo "$stages" | wc -l)
  awk -v want="$want" 'NR > 2 && NF >= 4 { split($4, a, "/"); if ($3 != "done" || a[1] != a[2]) bad = 1; k++ }
       END { exit bad || k != want }' "$tmp/$base.status" ||
    { echo "FAIL: $base: not every stage is done:"; cat "$tmp/$base.status"; fail=1; }
  while read -r name kind; do
    case $kind in sft|grpo|rejection_sft|align)
      grep "\"stage\":\"$name\"" "$run/metrics.jsonl" | grep -q '"eval/accuracy"' ||
        { echo "FAIL: $base: stage $name logged no eval/accuracy"; fail=1; } ;;
    esac
  done <<<"$stages"
  "$r1" verify "$run" >"$tmp/$base.verify" 2>&1 ||
    { echo "FAIL: $base: r1 verify: $(tail -2 "$tmp/$base.verify")"; fail=1; }
  [ $fail -eq 0 ] && echo "ok: $base: $(echo "$stages" | awk '{ print $1 }' | tr '\n' ' ')done and verified"
  rm -rf "$run"
done
[ $n -ge 2 ] || { echo "FAIL: expected recipes/smollm2-r1.yaml and smollm2-r1-zero.yaml, found $n"; fail=1; }
exit $fail
