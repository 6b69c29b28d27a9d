#!/usr/bin/env bash
# r1.sh R1 - DeepSeek-R1's four stages on the tiny model (tests/recipes/r1/four-stage.yaml):
# cold-start SFT -> GRPO -> rejection-sampling SFT of the base -> reward model + a pointwise
# safety reward model + align with both (the safety model scores whole completions).
# Every stage that answers questions must end with held-out accuracy above chance (the
# eval split is disjoint from training; guessing a two-digit sum scores ~0.01), the reward
# model must separate held-out preference pairs, and the run must verify.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

"$r1" run "$here/recipes/r1/four-stage.yaml" --run-dir "$tmp/run" >"$tmp/log" 2>&1 ||
  { echo "FAIL: four-stage run: $(tail -3 "$tmp/log")"; exit 1; }
m=$tmp/run/metrics.jsonl
last() { grep "\"stage\":\"$1\"" "$m" | grep -o "\"$2\":[-0-9.e]*" | cut -d: -f2 | tail -1; }
for st in cold_start reasoning rejection align; do
  a=$(last "$st" eval/accuracy)
  if [ -n "$a" ] && awk -v a="$a" 'BEGIN { exit !(a >= 0.2) }'; then
    echo "ok: $st held-out accuracy $a"
  else echo "FAIL: $st held-out accuracy '$a' (want >= 0.2)"; fail=1; fi
done
pa=$(last rm eval/pairwise_accuracy)
if [ -n "$pa" ] && awk -v a="$pa" 'BEGIN { exit !(a >= 0.6) }'; then
  echo "ok: reward model held-out pairwise accuracy $pa"
else echo "FAIL: reward model pairwise accuracy '$pa' (want >= 0.6)"; fail=1; fi
sa=$(last safety eval/accuracy) auc=$(last safety eval/auc) rs=$(last align rewards/safety)
if [ -n "$sa" ] && [ -n "$rs" ] && awk -v a="$sa" -v u="$auc" 'BEGIN { exit !(a >= 0.6 && u >= 0.6) }'; then
  echo "ok: safety model held-out accuracy $sa, AUC $auc; align's mean P(safe) $rs"
else echo "FAIL: safety model accuracy '$sa' AUC '$auc' (want >= 0.6), align rewards/safety '$rs'"; fail=1; fi
kept=$(last rejection kept)
[ -n "$kept" ] && [ "$kept" -gt 0 ] && [ -s "$tmp/run/data/rejection.jsonl" ] ||
  { echo "FAIL: rejection sampling kept '$kept' completions"; fail=1; }
"$r1" verify "$tmp/run" >/dev/null || { echo "FAIL: r1 verify"; fail=1; }
# every stage done with its whole length (rejection_sft: generation + SFT steps) and a loss
"$r1" status "$tmp/run" >"$tmp/status" || { echo "FAIL: r1 status"; fail=1; }
awk 'NR > 2 { split($4, a, "/"); if ($3 != "done" || a[1] != a[2] || $6 == "-") bad = 1; n++ }
     END { exit bad || n != 7 }' "$tmp/status" ||
  { echo "FAIL: r1 status:"; cat "$tmp/status"; fail=1; }
[ $fail -eq 0 ] && echo "all four-stage checks passed"
exit $fail
