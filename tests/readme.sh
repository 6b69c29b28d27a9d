#!/usr/bin/env bash
# readme.sh SRC - the README's main command, exactly as written: the first ```sh block
# of the Quick start section, run in the source tree (it sets up, builds into build/ —
# a no-op when tools/test has just built it —, trains the default recipe into runs/ and
# samples from it).  Then `build/r1 status` must show every stage done, and the sampled
# answer must be right.
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
# the default recipe's sample: 7+12=19
tail -1 "$out" | grep -q "19" || { echo "FAIL: the sample does not answer 19"; fail=1; }
[ $fail -eq 0 ] && echo "ok: the README command runs as written and every stage is done"
exit $fail
