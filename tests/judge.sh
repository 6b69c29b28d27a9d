#!/usr/bin/env bash
# judge.sh R1 JUDGE_CHECK SRC - the generative judge (stages/judge.h) on a toy judge: the tiny
# model fine-tuned on the judge generator (tests/recipes/judge/train.yaml) reads 200
# held-out (question, reference, prediction) examples (problems never seen in training);
# the verdict by log-probability, P(yes) > 0.5, must be right for at least 60% of them
# (chance is 50%; 0.64 observed, 4 standard errors above chance) with an AUC of 0.65 or
# more (0.70 observed), and scoring the same examples again must come from the cache.
# The tiny model is a weak judge (800 steps or the 4x larger preset reach 0.675): the test
# is that the verdict machinery reads a trained judge, not that a 2-layer model judges well.
# Then the judge reward with that judge (an HF dir): rejection_sft
# (tests/recipes/judge/rejection.yaml) keeps completions the judge says yes to and rejects
# others by reward, every dataset row with reward 1; `r1 eval --reward judge --judge DIR`
# reports a pass rate, and without --judge exits 2; a judge path that does not exist is a
# recipe error naming the file and line.  The verdict log: rejection_sft killed with -9
# after its third generation step and resumed from the second's checkpoint re-runs the
# third with every verdict from RUN/judge/rs.log (the verdicts the uninterrupted run
# computed in that step are cache hits in the resumed one) and ends with the same dataset
# bytes; the judge's weights hash is among the checkpoint's R1-Data trailers.
set -u
r1=$(realpath "$1")
check=$(realpath "$2")
src=$(realpath "$3")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$r1" run "$src/tests/recipes/judge/train.yaml" --run-dir "$tmp/run" -q >"$tmp/log" 2>&1 ||
  { echo "FAIL: judge training: $(tail -3 "$tmp/log")"; exit 1; }
out=$("$check" "$tmp/run/checkpoints/judge/00000300" "judge:digits=1" 200 2>&1) ||
  { echo "FAIL: judge-check: $out"; exit 1; }
echo "judge: $out"
if echo "$out" | awk '{ exit !($2 >= 0.60 && $4 >= 0.65 && $8 == 200 && $10 == 0) }'; then
  echo "ok: the toy judge separates right from wrong predictions, and repeats come from the cache"
else
  echo "FAIL: judge verdicts: $out (want accuracy >= 0.60, auc >= 0.65, a repeat all from the cache)"
  exit 1
fi
fail=0
jdir=$tmp/run/checkpoints/judge/00000300
sed "s|judge: judge-model-dir|judge: $jdir|g" "$src/tests/recipes/judge/rejection.yaml" >"$tmp/rs.yaml"
if "$r1" run "$tmp/rs.yaml" --run-dir "$tmp/rs" -q >"$tmp/rs.log" 2>&1; then
  last=$(grep '"stage":"rs"' "$tmp/rs/metrics.jsonl" | grep '"kept"' | tail -1)
  kept=$(echo "$last" | grep -o '"kept":[0-9]*' | cut -d: -f2)
  rej=$(echo "$last" | grep -o '"rejected/reward":[0-9]*' | cut -d: -f2)
  ds=$(ls "$tmp/rs/checkpoints/rs/"*/dataset.jsonl | tail -1)
  bad=$(grep -vc '"reward":1' "$ds")
  if [ "${kept:-0}" -gt 0 ] && [ "${rej:-0}" -gt 0 ] && [ "$bad" -eq 0 ]; then
    echo "ok: rejection_sft with the judge reward kept $kept, rejected $rej by the judge"
    rj=$(grep '"stage":"rl"' "$tmp/rs/metrics.jsonl" | grep -o '"rewards/judge":[0-9.e-]*' | cut -d: -f2 | tail -1)
    if [ -n "$rj" ] && awk -v r="$rj" 'BEGIN { exit !(r > 0 && r < 1) }'; then
      echo "ok: grpo with the judge reward: mean P(yes) $rj"
      [ -s "$tmp/rs/judge/rl.log" ] && [ -s "$tmp/rs/judge/rs.log" ] ||
        { echo "FAIL: no verdict logs in $tmp/rs/judge"; fail=1; }
    else
      echo "FAIL: grpo rewards/judge '$rj'"; fail=1
    fi
  else
    echo "FAIL: judge rejection: kept '$kept', rejected by reward '$rej', rows without reward 1: $bad"; fail=1
  fi
else
  echo "FAIL: judge rejection run: $(tail -3 "$tmp/rs.log")"; fail=1
fi
# the verdict log across kill -9 and resume
jm() { grep '"stage":"rs"' "$1/metrics.jsonl" | grep '"judge_misses"' | tail -1 | grep -o "\"$2\":[0-9]*" | cut -d: -f2; }
"$r1" run "$tmp/rs.yaml" --run-dir "$tmp/u" -q --set stages.rs.save_every=2 >"$tmp/u.log" 2>&1
R1_TEST_CRASH=rs:3:step "$r1" run "$tmp/rs.yaml" --run-dir "$tmp/k" -q --set stages.rs.save_every=2 \
  >/dev/null 2>&1
"$r1" resume "$tmp/k" -q >"$tmp/k.log" 2>&1 || { echo "FAIL: resume: $(tail -3 "$tmp/k.log")"; fail=1; }
um=$(jm "$tmp/u" judge_misses) km=$(jm "$tmp/k" judge_misses)
uh=$(jm "$tmp/u" judge_hits) kh=$(jm "$tmp/k" judge_hits)
ud=$(ls "$tmp/u/checkpoints/rs/"*/dataset.jsonl | tail -1) kd=$(ls "$tmp/k/checkpoints/rs/"*/dataset.jsonl | tail -1)
# the resumed run re-ran step 3, whose verdicts the killed process had computed and logged:
# they are cache hits now, so the counters (from the state, which lost the killed process's
# step 3) show exactly those as moved from computed to cached
if [ -n "$um" ] && [ "$kh" -gt "$uh" ] && [ $((km + kh)) -eq $((um + uh)) ] &&
   [ $((kh - uh)) -eq $((um - km)) ] && cmp -s "$ud" "$kd"; then
  echo "ok: after kill -9 and resume the re-run step's $((kh - uh)) verdicts came from the log, none computed twice, same dataset"
else
  echo "FAIL: verdict log: misses $um vs $km, hits $uh vs $kh, datasets $(cmp "$ud" "$kd" 2>&1)"; fail=1
fi
# a generation-phase checkpoint names the judge and its verdict log, both hashed
gen_commit=$(git -C "$tmp/k" log --format=%H --grep='rs: step 2 ' | head -1)
trailers=$(git -C "$tmp/k" log -1 --format=%B "$gen_commit" | grep '^R1-Data:')
echo "$trailers" | grep -q "^R1-Data: judge:00000300 [0-9a-f]\{64\}" &&
  echo "$trailers" | grep -q "^R1-Data: judge-verdicts:rs.log [0-9a-f]\{64\}" ||
  { echo "FAIL: the judge and its verdicts are not among the R1-Data trailers: $trailers"; fail=1; }
# the uninterrupted and the resumed run record the same verdict log
[ "$(git -C "$tmp/u" log --format=%B | grep 'judge-verdicts')" = "$(git -C "$tmp/k" log --format=%B | grep 'judge-verdicts')" ] ||
  { echo "FAIL: the verdict-log hashes differ between the uninterrupted and the resumed run"; fail=1; }
"$r1" data gen arith:digits=1 --split eval --n 8 --out "$tmp/eval.jsonl" >/dev/null
base=$tmp/rs/checkpoints/base/00000300
if out=$("$r1" eval --model "$base" --data "$tmp/eval.jsonl" --reward judge --judge "$jdir" \
           --threshold 0.5 -n 2 --max-tokens 32 2>&1) && echo "$out" | grep -q "pass@1"; then
  echo "ok: r1 eval --reward judge: $(echo "$out" | grep -o 'pass@1[^,]*' | head -1)"
else
  echo "FAIL: r1 eval --reward judge: $out"; fail=1
fi
"$r1" eval --model "$base" --data "$tmp/eval.jsonl" --reward judge >"$tmp/nj.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "needs --judge" "$tmp/nj.log" ||
  { echo "FAIL: --reward judge without --judge: exit $rc: $(cat "$tmp/nj.log")"; fail=1; }
sed "s|judge: judge-model-dir|judge: /nonexistent/judge|g" "$src/tests/recipes/judge/rejection.yaml" >"$tmp/bad.yaml"
err=$("$r1" recipe check "$tmp/bad.yaml" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$err" | grep -q "bad.yaml:[0-9]*:[0-9]*: .*judge"; then
  echo "ok: a judge that cannot be loaded is a recipe error at file:line"
else
  echo "FAIL: missing judge: exit $rc: $err"; fail=1
fi
exit $fail
