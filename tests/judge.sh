#!/usr/bin/env bash
# judge.sh R1 JUDGE_CHECK SRC - the generative judge (stages/judge.h) on a toy judge: the tiny
# model fine-tuned on the judge generator (tests/recipes/judge/train.yaml) reads 200
# held-out (question, reference, prediction) examples (problems never seen in training);
# the verdict by log-probability, P(yes) > 0.5, must be right for at least 60% of them
# (chance is 50%; 0.64 observed, 4 standard errors above chance) with an AUC of 0.65 or
# more (0.70 observed), and scoring the same examples again must come from the cache.
# The tiny model is a weak judge (800 steps or the 4x larger preset reach 0.675): the test
# is that the verdict machinery reads a trained judge, not that a 2-layer model judges well.
set -u
r1=$(realpath "$1")
check=$(realpath "$2")
src=$(realpath "$3")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$r1" run "$src/tests/recipes/judge/train.yaml" --run-dir "$tmp/run" -q >"$tmp/log" 2>&1 ||
  { echo "FAIL: judge training: $(tail -3 "$tmp/log")"; exit 1; }
out=$("$check" "$tmp/run/checkpoints/judge/00000300" "judge:digits=1" 200) ||
  { echo "FAIL: judge-check: $out"; exit 1; }
echo "judge: $out"
if echo "$out" | awk '{ exit !($2 >= 0.60 && $4 >= 0.65 && $8 == 200 && $10 == 0) }'; then
  echo "ok: the toy judge separates right from wrong predictions, and repeats come from the cache"
else
  echo "FAIL: judge verdicts: $out (want accuracy >= 0.60, auc >= 0.65, a repeat all from the cache)"
  exit 1
fi
