#!/usr/bin/env bash
# readme.sh SRC - the README's main command, exactly as written: the first ```sh block
# of the Quick start section, run in the source tree (it sets up, builds into build/ —
# a no-op when tools/test has just built it —, trains the default recipe into runs/ and
# samples from it).  Then `build/r1 status` must show every stage done, the summary must
# print every stage's held-out accuracy (GRPO's above cold start's) and the answer be right.
set -u
src=$(realpath "$1")
cd "$src" || exit 1
cmd=$(awk '/^## Quick start/ { q = 1 } q && /^```sh$/ { f = 1; next } f && /^```$/ { exit } f { print }' README.md)
[ -n "$cmd" ] || { echo "FAIL: no sh block in README.md's Quick start"; exit 1; }
echo "README command: $cmd"
run=$(echo "$cmd" | grep -o 'runs/[A-Za-z0-9_.-]*' | head -1)
[ -n "$run" ] || { echo "FAIL: the command names no run directory under runs/"; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"; rm -rf "$src/$run"' EXIT
fail=0
bash -c "$cmd" >"$out" 2>&1 || { echo "FAIL: the README command failed:"; tail -5 "$out"; exit 1; }
echo "last lines: $(tail -2 "$out" | tr '\n' ' ')"
status=$(build/r1 status "$run") || { echo "FAIL: r1 status $run"; exit 1; }
echo "$status"
# rows after the "run" and header lines: STAGE KIND STATE ...
n=$(echo "$status" | awk 'NR > 2 && NF >= 3 { n++ } END { print n + 0 }')
bad=$(echo "$status" | awk 'NR > 2 && NF >= 3 && $3 != "done" { print $1 }')
[ "$n" -ge 1 ] || { echo "FAIL: r1 status lists no stage"; fail=1; }
[ -z "$bad" ] || { echo "FAIL: stages not done: $bad"; fail=1; }
# the default recipe's sample answers 47+38 in its <answer> block
tr -d '\n' <"$out" | grep -q "<answer>85</answer>" || { echo "FAIL: the sample does not answer <answer>85</answer>"; tail -8 "$out"; fail=1; }
# every stage's held-out accuracy is printed, and GRPO's last beats cold start's last
acc() { awk -v s="$1" '$1 == s && /eval\/accuracy/ { print $NF }' "$out"; }
for s in cold_start reasoning rejection align; do
  [ -n "$(acc $s)" ] || { echo "FAIL: no eval/accuracy for $s in the summary"; fail=1; }
done
awk -v c="$(acc cold_start)" -v r="$(acc reasoning)" 'BEGIN { exit !(r > c) }' ||
  { echo "FAIL: reasoning's accuracy $(acc reasoning) is not above cold_start's $(acc cold_start)"; fail=1; }
[ $fail -eq 0 ] && echo "ok: the README command runs as written and every stage is done"
exit $fail
