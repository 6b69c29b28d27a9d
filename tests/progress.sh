#!/usr/bin/env bash
# progress.sh R1 - what `r1 run` / `r1 resume` print: the header before any step (every
# stage, its parameter count), plain step lines off a terminal (--progress-every 0: every
# step; default: a short stage's first and last step only), eval and checkpoint lines, the
# summary table, --quiet, and \r-rewritten lines on a pseudo-terminal.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here"/recipes/run/two-stage.yaml "$here"/recipes/run/corpus.txt "$here"/recipes/run/pairs.jsonl "$tmp"/
recipe=$tmp/two-stage.yaml
sets=(--set stages.sft.eval_every=6 --set "stages.sft.data.eval_path=$tmp/pairs.jsonl")
fail=0
no() { echo "FAIL: $1"; fail=1; }

# every step, to a file
out=$tmp/every.out
"$r1" run "$recipe" --run-dir "$tmp/every" --progress-every 0 "${sets[@]}" >"$out" 2>&1 ||
  { echo "FAIL: run: $(tail -3 "$out")"; exit 1; }
first_step=$(grep -En '^[a-z]+ step [0-9]+ of ' "$out" | head -1 | cut -d: -f1)
header=$(grep -n '^recipe two-stage ' "$out" | head -1 | cut -d: -f1)
[ -n "$header" ] && [ -n "$first_step" ] && [ "$header" -lt "$first_step" ] ||
  no "the header does not come before the first step line"
for st in pretrain sft; do
  head -n "$first_step" "$out" | grep -Eq "^  $st +$st +[0-9]+ steps +[0-9.]+k " ||
    no "the header has no row for $st with its parameter count"
  grep -Eq "^$st starts at step 0 of [0-9]+: [0-9.]+k params; memory .* = " "$out" ||
    no "no memory plan line for $st"
done
[ "$(grep -c '^pretrain step [0-9]* of 16 ' "$out")" -eq 16 ] || no "--progress-every 0 lacks pretrain steps"
[ "$(grep -c '^sft step [0-9]* of 12 ' "$out")" -eq 12 ] || no "--progress-every 0 lacks sft steps"
grep -q '^sft eval 6 eval/accuracy ' "$out" || no "no eval line"
grep -q '^pretrain checkpoint at step 4$' "$out" || no "no checkpoint line"
grep -Eq '^sft step 1 of 12 +loss [0-9.]+ +[0-9.]+k? tok/s +ETA ' "$out" || no "step line lacks loss, tok/s or ETA"
grep -Eq '^  pretrain +done +16/16 +[0-9.]+s +loss ' "$out" || no "summary: pretrain not done 16/16"
grep -Eq '^  sft +done +12/12 +[0-9.]+s +loss [0-9.]+ +eval/accuracy ' "$out" || no "summary: sft not done 12/12 with evals"
tail -1 "$out" | grep -q '^  sft ' || no "the summary is not last"

# default (10 s): a short stage shows only its first and last step, plus eval/checkpoint lines
out=$tmp/default.out
"$r1" run "$recipe" --run-dir "$tmp/default" "${sets[@]}" >"$out" 2>&1 || no "default run"
[ "$(grep -Ec '^[a-z]+ step [0-9]+ of ' "$out")" -eq 4 ] || no "default: not just the first and last step of each stage"
grep -q '^pretrain step 1 of 16 ' "$out" && grep -q '^pretrain step 16 of 16 ' "$out" &&
  grep -q '^sft step 12 of 12 ' "$out" || no "default: first or last step missing"
grep -q '^sft eval 12 ' "$out" && grep -q '^sft checkpoint at step 8$' "$out" ||
  no "default: eval or checkpoint lines missing"

# resume of a finished run: the header and a table of stages already finished
out=$tmp/resume.out
"$r1" resume "$tmp/default" >"$out" 2>&1 || no "resume of a finished run"
grep -q '^run dir .*(resuming)' "$out" || no "resume header"
grep -Eq '^  pretrain +already finished +16/16 ' "$out" && grep -Eq '^  sft +already finished +12/12 ' "$out" ||
  no "resume summary"

# --quiet: the summary table only
out=$tmp/quiet.out
"$r1" run "$recipe" --run-dir "$tmp/quiet" --quiet >"$out" 2>&1 || no "quiet run"
grep -Eq '^[a-z]+ step [0-9]|checkpoint|^recipe' "$out" && no "--quiet printed more than the summary"
grep -Eq '^  sft +done +12/12 ' "$out" || no "--quiet lacks the summary"

# a pseudo-terminal: lines rewritten in place with \r
out=$tmp/tty.out
if command -v script >/dev/null; then
  script -qc "'$r1' run '$recipe' --run-dir '$tmp/tty'" /dev/null >"$out" 2>&1 </dev/null
else
  python3 -c 'import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)' \
    "$r1" run "$recipe" --run-dir "$tmp/tty" >"$out" 2>&1 </dev/null
fi
grep -aq $'\rpretrain   \\[ 3/16\\]  loss ' "$out" || no "no \\r-updated progress line on a terminal"
grep -aq $'pretrain step 3 of' "$out" && no "a terminal got plain step lines"
grep -aEq '^  sft +done +12/12 ' <(tr -d '\r' <"$out") || no "terminal: no summary"
exit $fail
