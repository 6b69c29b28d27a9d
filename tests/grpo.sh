#!/usr/bin/env bash
# grpo.sh R1 - the grpo stage end to end on the tiny model:
#  1. learning: GRPO on two-digit sums raises held-out eval/accuracy (a split disjoint
#     from every training prompt) by at least 10 points from its first evaluation to
#     its last (tests/recipes/grpo/arith.yaml; +26 points observed: 0.40 -> 0.665);
#  2. resume: a run using every GRPO option, killed with -9 inside a checkpoint write and
#     at a random moment mid-GRPO, ends after `r1 resume` with the same weights,
#     optimizer, reference model, samples and evaluations as an uninterrupted run;
#     The same stage in precision bf16 resumes to the same bytes too;
#  3. bad recipes (unknown reward, minibatches that do not divide the batch) exit 2.
# Also: the memory plan line of the grpo stage counts its KV caches and reference model.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# 1. learning
"$r1" run "$here/recipes/grpo/arith.yaml" --run-dir "$tmp/arith" >"$tmp/arith.log" 2>&1 ||
  { echo "FAIL: arith run: $(tail -3 "$tmp/arith.log")"; exit 1; }
acc=$(grep '"stage":"grpo"' "$tmp/arith/metrics.jsonl" | grep -o '"eval/accuracy":[0-9.e-]*' | cut -d: -f2)
first=$(echo "$acc" | head -1) last=$(echo "$acc" | tail -1)
if [ "$(echo "$acc" | wc -l)" -ne 4 ]; then
  echo "FAIL: expected 4 evaluations (steps 0, 8, 16, 24), got: $acc"; fail=1
elif awk -v a="$first" -v b="$last" 'BEGIN { exit !(b - a >= 0.10) }'; then
  echo "ok: GRPO raises held-out accuracy from $first to $last"
else
  echo "FAIL: held-out accuracy $first -> $last (want +0.10)"; fail=1
fi
# the memory plan counts what GRPO holds beyond the policy: its generators' KV caches and
# the frozen reference
grep -Eq '^grpo starts at step 0 of 24: .* activations \+ [0-9.]+ [KMG]iB workspace \+ [0-9.]+ [KMG]iB KV caches and other models = ' \
  "$tmp/arith.log" || { echo "FAIL: the grpo memory plan has no KV-cache term: $(grep 'grpo starts' "$tmp/arith.log")"; fail=1; }
n=$(wc -l <"$tmp/arith/samples/grpo.jsonl")
[ "$n" -eq 24 ] && grep -q '"advantage"' "$tmp/arith/samples/grpo.jsonl" ||
  { echo "FAIL: samples/grpo.jsonl has $n lines, want 24 (6 logs x 4)"; fail=1; }

# 2. resume
recipe=$here/recipes/grpo/features.yaml
final() { # the identity of a finished run: final weights, optimizer, reference, samples, evals
  local c=$1/checkpoints/rl/00000012
  sha256sum "$c"/model.safetensors "$c"/optimizer.safetensors "$c"/ref_model.safetensors \
            "$c"/trainer_state.json "$1"/samples/rl.jsonl 2>/dev/null | awk '{print $1}'
  grep -o '"eval/[a-z_]*":[0-9.e-]*' "$1"/metrics.jsonl
  grep '"stage":"rl"' "$1"/metrics.jsonl | grep -o '"reward":[0-9.e-]*'
}
"$r1" run "$recipe" --run-dir "$tmp/ref" >/dev/null 2>&1 || { echo "FAIL: features run"; exit 1; }
want=$(final "$tmp/ref")
[ "$(echo "$want" | head -5 | grep -c .)" -eq 5 ] || { echo "FAIL: features run lacks its files"; exit 1; }
check_same() { # name dir
  if [ "$(final "$2")" != "$want" ]; then echo "FAIL: $1: result differs from the uninterrupted run"; fail=1
  elif ! "$r1" verify "$2" >/dev/null; then echo "FAIL: $1: r1 verify"; fail=1
  else echo "ok: $1"; fi
}
for point in rl:4:before-commit rl:8:before-commit; do
  d=$tmp/crash-${point//:/-}
  R1_TEST_CRASH=$point "$r1" run "$recipe" --run-dir "$d" >/dev/null 2>&1
  rc=$?
  [ $rc -eq 137 ] || { echo "FAIL: $point: expected a kill (137), got $rc"; fail=1; continue; }
  "$r1" resume "$d" >/dev/null 2>"$tmp/err" || { echo "FAIL: $point: resume: $(cat "$tmp/err")"; fail=1; continue; }
  check_same "kill -9 at $point" "$d"
done
# the same stage in precision bf16 (policy, reference and sampling): its own results, and
# a kill -9 mid-stage resumes to the same bytes
d=$tmp/bf16
"$r1" run "$recipe" --run-dir "$d" --set stages.rl.precision=bf16 >/dev/null 2>&1 ||
  { echo "FAIL: bf16 features run"; fail=1; }
want16=$(final "$d")
if [ "$(echo "$want16" | head -1)" = "$(echo "$want" | head -1)" ]; then
  echo "FAIL: the bf16 run ended with the f32 run's weights (was bf16 used?)"; fail=1
fi
# rollouts and evaluation over 3 KV-cache slots instead of 64: the same bytes (bf16
# generation weights sum every logit in one order whatever the step's size)
d=$tmp/slots16
"$r1" run "$recipe" --run-dir "$d" --set stages.rl.precision=bf16 --set stages.rl.gen_slots=3 \
  >/dev/null 2>&1 || { echo "FAIL: gen_slots 3 run"; fail=1; }
if [ "$(final "$d")" != "$want16" ]; then
  echo "FAIL: gen_slots 3: result differs from the run with 64 slots"; fail=1
else
  echo "ok: gen_slots 3 gives the run of 64 slots"
fi
d=$tmp/crash16
R1_TEST_CRASH=rl:8:before-commit "$r1" run "$recipe" --run-dir "$d" --set stages.rl.precision=bf16 \
  >/dev/null 2>&1
rc=$?
if [ $rc -ne 137 ]; then
  echo "FAIL: bf16 rl:8: expected a kill (137), got $rc"; fail=1
elif ! "$r1" resume "$d" >/dev/null 2>"$tmp/err"; then
  echo "FAIL: bf16 rl:8: resume: $(cat "$tmp/err")"; fail=1
elif [ "$(final "$d")" != "$want16" ]; then
  echo "FAIL: bf16 rl:8: result differs from the uninterrupted bf16 run"; fail=1
else
  echo "ok: kill -9 at rl:8 in precision bf16 and resume give the same bytes"
fi
d=$tmp/timed
"$r1" run "$recipe" --run-dir "$d" --progress-every 0 >"$tmp/timed.out" 2>&1 &
pid=$!
for _ in $(seq 1 500); do grep -q "rl step 6 " "$tmp/timed.out" && break; sleep 0.01; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if grep -q "rl finished" "$tmp/timed.out"; then
  echo "FAIL: timed kill came too late"; fail=1
else
  "$r1" resume "$d" >/dev/null 2>"$tmp/err" || { echo "FAIL: resume after a mid-GRPO kill: $(cat "$tmp/err")"; fail=1; }
  check_same "kill -9 mid-GRPO (after step 6)" "$d"
fi

# 3. bad recipes: one line naming the file and the problem, exit 2, no run dir
sed 's/name: tag_count,/name: tag_counts,/' "$recipe" >"$tmp/bad-reward.yaml"
err=$("$r1" run "$tmp/bad-reward.yaml" --run-dir "$tmp/bad1" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && [ ! -e "$tmp/bad1" ] && echo "$err" | grep -q "bad-reward.yaml.*unknown reward 'tag_counts'" ||
  { echo "FAIL: unknown reward: exit $rc: $err"; fail=1; }
sed 's/minibatches: 2/minibatches: 3/' "$recipe" >"$tmp/bad-mb.yaml"
err=$("$r1" run "$tmp/bad-mb.yaml" --run-dir "$tmp/bad2" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && [ ! -e "$tmp/bad2" ] && echo "$err" | grep -q "minibatches" ||
  { echo "FAIL: minibatches: exit $rc: $err"; fail=1; }
[ $fail -eq 0 ] && echo "all grpo checks passed"
exit $fail
