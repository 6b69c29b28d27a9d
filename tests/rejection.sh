#!/usr/bin/env bash
# rejection.sh R1 MODE - the rejection_sft stage end to end on the tiny model.
# MODE pipeline (tests/recipes/rejection/pipeline.yaml: pretrain, grpo, rejection_sft):
#  1. the dataset exists (DIR/data/rs.jsonl, the same bytes as the final checkpoint's
#     dataset.jsonl and as the ledger's R1-Data trailer), its rows are the kept
#     completions plus the mix rows, and on every generation step the samples equal
#     kept + the sum of rejected/<reason>; a healthy share of samples pass the filters;
#  2. resume (resume.yaml: the rs stage alone, from that run's base and sampler): killed
#     with -9 inside a checkpoint write during generation, at the generation/training
#     boundary and during training, `r1 resume` ends with the same dataset, weights,
#     optimizer and trainer state as an uninterrupted run;
#  3. bad recipes (a missing mix file, one lacking the response field, max_tokens <
#     min_tokens, data.stage on this kind) exit 2 with one line naming the file and the
#     problem, and leave no run directory.
# MODE distill (tests/recipes/rejection/distill.yaml): a student fine-tuned on a longer
#  trained teacher's filtered completions gains held-out accuracy (a split disjoint from
#  every training prompt) from its first evaluation (the student as pretrained) to its
#  last.
set -u
r1=$(realpath "$1")
mode=${2:-pipeline}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# value KEY LINE: a number from a metrics line
value() { echo "$2" | grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }

if [ "$mode" = distill ]; then
  "$r1" run "$here/recipes/rejection/distill.yaml" --run-dir "$tmp/d" >"$tmp/d.log" 2>&1 ||
    { echo "FAIL: distill run: $(tail -3 "$tmp/d.log")"; exit 1; }
  acc=$(grep '"stage":"distill"' "$tmp/d/metrics.jsonl" | grep -o '"eval/accuracy":[0-9.e-]*' | cut -d: -f2)
  first=$(echo "$acc" | head -1) last=$(echo "$acc" | tail -1)
  gen=$(grep '"stage":"distill"' "$tmp/d/metrics.jsonl" | grep '"dataset_rows"')
  echo "teacher: accuracy $(value accuracy "$gen") on its samples, kept $(value kept "$gen") of $(value samples "$gen")"
  if [ "$(echo "$acc" | wc -l)" -ne 2 ]; then
    echo "FAIL: expected 2 evaluations (before and after), got: $acc"; fail=1
  elif awk -v a="$first" -v b="$last" 'BEGIN { exit !(b - a >= 0.08) }'; then
    echo "ok: distillation raises the student's held-out accuracy from $first to $last"
  else
    echo "FAIL: student held-out accuracy $first -> $last (want +0.08)"; fail=1
  fi
  [ $fail -eq 0 ] && echo "all distill checks passed"
  exit $fail
fi

recipe=$here/recipes/rejection/pipeline.yaml
"$r1" run "$recipe" --run-dir "$tmp/ref" >"$tmp/ref.log" 2>&1 ||
  { echo "FAIL: pipeline run: $(tail -3 "$tmp/ref.log")"; exit 1; }

# 1. the dataset and its counts
final() { # the identity of a finished run: dataset, weights, optimizer, state
  local c
  c=$(ls -d "$1"/checkpoints/rs/* | tail -1)
  sha256sum "$1"/data/rs.jsonl "$c"/dataset.jsonl "$c"/model.safetensors \
            "$c"/optimizer.safetensors "$c"/trainer_state.json 2>/dev/null | awk '{print $1}'
}
want=$(final "$tmp/ref")
[ "$(echo "$want" | grep -c .)" -eq 5 ] || { echo "FAIL: the run lacks its files"; exit 1; }
ds=$(echo "$want" | head -1)
[ "$ds" = "$(echo "$want" | sed -n 2p)" ] ||
  { echo "FAIL: data/rs.jsonl differs from the checkpoint's dataset.jsonl"; fail=1; }
if command -v git >/dev/null; then
  git -C "$tmp/ref" log -1 --format=%B | grep -q "^R1-Data: rs.jsonl $ds$" ||
    { echo "FAIL: the ledger's R1-Data trailer lacks the dataset sha256"; fail=1; }
fi
bad=0 steps=0
while read -r line; do
  steps=$((steps + 1))
  rejected=$(echo "$line" | grep -o '"rejected/[a-z_]*":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
  [ "$(value samples "$line")" -eq $(($(value kept "$line") + rejected)) ] || bad=1
done < <(grep '"stage":"rs"' "$tmp/ref/metrics.jsonl" | grep '"prompts_done"')
last=$(grep '"stage":"rs"' "$tmp/ref/metrics.jsonl" | grep '"dataset_rows"')
kept=$(value kept "$last") mix=$(value mix_rows "$last") samples=$(value samples "$last")
passed=$(value passed "$last") rows=$(wc -l <"$tmp/ref/data/rs.jsonl")
mixed=$(grep -c '"source":"mix"' "$tmp/ref/data/rs.jsonl")
if [ $steps -ne 8 ] || [ $bad -ne 0 ]; then
  echo "FAIL: $steps generation steps (want 8); samples = kept + rejected: $([ $bad -eq 0 ] && echo yes || echo no)"; fail=1
elif [ "$rows" -ne $((kept + mix)) ] || [ "$mixed" -ne "$mix" ] || [ "$mix" -ne 8 ]; then
  echo "FAIL: dataset has $rows rows ($mixed mix), want kept $kept + mix $mix (8, the whole file)"; fail=1
elif ! awk -v p="$passed" -v n="$samples" 'BEGIN { exit !(p / n >= 0.3) }'; then
  echo "FAIL: only $passed of $samples samples pass the filters"; fail=1
else
  echo "ok: samples = kept + rejected on all 8 generation steps; $passed of $samples pass, $kept kept (+$mix mix rows)"
fi

# 2. resume: the rs stage alone (resume.yaml) from the base and the sampler of that run,
#    so that each killed run redoes only this stage
sets=(--set "model.init=$(ls -d "$tmp"/ref/checkpoints/pretrain/* | tail -1)"
      --set "stages.rs.rejection.source=$(ls -d "$tmp"/ref/checkpoints/grpo/* | tail -1)")
recipe=$here/recipes/rejection/resume.yaml
"$r1" run "$recipe" --run-dir "$tmp/ref2" "${sets[@]}" >"$tmp/ref2.log" 2>&1 ||
  { echo "FAIL: resume.yaml run: $(tail -3 "$tmp/ref2.log")"; exit 1; }
want=$(final "$tmp/ref2")
ds=$(echo "$want" | head -1)
for point in rs:4:before-commit rs:8:before-commit rs:12:before-commit; do
  d=$tmp/crash-${point//:/-}
  R1_TEST_CRASH=$point "$r1" run "$recipe" --run-dir "$d" "${sets[@]}" >/dev/null 2>&1
  rc=$?
  [ $rc -eq 137 ] || { echo "FAIL: $point: expected a kill (137), got $rc"; fail=1; continue; }
  "$r1" resume "$d" >/dev/null 2>"$tmp/err" || { echo "FAIL: $point: resume: $(cat "$tmp/err")"; fail=1; continue; }
  if [ "$(final "$d")" != "$want" ]; then echo "FAIL: kill -9 at $point: result differs from the uninterrupted run"; fail=1
  elif ! "$r1" verify "$d" >/dev/null; then echo "FAIL: kill -9 at $point: r1 verify"; fail=1
  else echo "ok: kill -9 at $point, resume: same dataset ($(echo "$ds" | cut -c1-12)) and final model"; fi
done

# 3. bad recipes: exit 2, no run dir, one line naming the file and the problem (a
#    problem the recipe loader finds is followed by its count line)
recipe=$here/recipes/rejection/pipeline.yaml
bad_recipe() { # name pattern sed-expression
  sed "$3" "$recipe" >"$tmp/$1.yaml"
  cp "$here/recipes/rejection/mix.jsonl" "$tmp/mix.jsonl"
  err=$("$r1" run "$tmp/$1.yaml" --run-dir "$tmp/bad-$1" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 2 ] && [ ! -e "$tmp/bad-$1" ] && [ "$(echo "$err" | grep -c .)" -le 2 ] &&
     [ "$(echo "$err" | grep -c "$1.yaml.*$2")" -eq 1 ]; then echo "ok: $1: $(echo "$err" | head -1)"
  else echo "FAIL: $1: exit $rc: $err"; fail=1; fi
}
bad_recipe no-mix "mix_path" 's/mix_path: mix.jsonl/mix_path: missing.jsonl/'
bad_recipe tokens "max_tokens (5) is below min_tokens (10)" 's/max_tokens: 30/max_tokens: 5/'
bad_recipe data-stage "data.stage" 's/data: {generator: "arith:digits=1", size: 500, eval_size: 40}/data: {stage: grpo}/'
printf '{"prompt": "hi", "answer": "no response"}\n' >"$tmp/badmix.jsonl"
bad_recipe mix-fields "badmix.jsonl:1.*\"response\"" "s|mix_path: mix.jsonl|mix_path: $tmp/badmix.jsonl|"
[ $fail -eq 0 ] && echo "all rejection checks passed"
exit $fail
