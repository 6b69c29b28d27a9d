#!/usr/bin/env bash
# cli.sh R1 - every command answers --help with 0 and a bad flag with 2; init, sample
# (with chat templates) and tokenize work end to end and leave nothing behind on bad input.
set -u
r1=$1
fail=0
check() { # expected-status description command...
  local want=$1 what=$2; shift 2
  "$@" >/tmp/r1-cli-out.$$ 2>&1; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' /tmp/r1-cli-out.$$; fail=1
  else
    echo "ok: $what"
  fi
}
check 0 "r1 --help" "$r1" --help
check 0 "r1 with no args" "$r1"
check 0 "r1 --version" "$r1" --version
"$r1" --version | grep -q "OpenBLAS" || { echo "FAIL: --version lacks build info"; fail=1; }
check 2 "unknown command" "$r1" frobnicate
check 2 "unknown global flag" "$r1" --frob
check 2 "help for unknown command" "$r1" help frobnicate
cmds=$("$r1" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1}')
[ -n "$cmds" ] || { echo "FAIL: no commands listed"; fail=1; }
for c in $cmds; do
  check 0 "r1 $c --help" "$r1" "$c" --help
  check 0 "r1 help $c" "$r1" help "$c"
  check 2 "r1 $c --no-such-flag" "$r1" "$c" --no-such-flag
done

# docs/recipe-keys.md is generated from the schema table and must not drift from it
docs=$(dirname "$0")/../docs/recipe-keys.md
if ! diff <(tail -n +5 "$docs") <("$r1" recipe keys) >/dev/null; then
  echo "FAIL: docs/recipe-keys.md is stale: regenerate it from 'r1 recipe keys'"; fail=1
fi
# docs/recipes.md explains recipes and leaves the key table to docs/recipe-keys.md (one
# source): it must link there, and every dotted key it names in backquotes must exist
recipes_md=$(dirname "$0")/../docs/recipes.md
grep -q 'docs/recipe-keys.md' "$recipes_md" || { echo "FAIL: docs/recipes.md does not link docs/recipe-keys.md"; fail=1; }
keys=$("$r1" recipe keys | awk -F' [|] ' '/^[|] [a-z]/ {sub(/^[|] /, "", $1); print $1}')
for k in $(grep -o '`\(model\|stages\[\]\)\(\.[a-z_]*\(\[\]\)\?\)*`' "$recipes_md" | tr -d '`' | sort -u); do
  grep -qxF "$k" <<<"$keys" || { echo "FAIL: docs/recipes.md names '$k', which 'r1 recipe keys' does not list"; fail=1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /tmp/r1-cli-out.$$' EXIT
check 2 "report on a missing run dir" "$r1" report "$tmp/no-run"
check 2 "report on a dir that is not a run" "$r1" report "$tmp"
check 0 "init tiny" "$r1" init --preset tiny --out "$tmp/m" --seed 3
[ -f "$tmp/m/config.json" ] && [ -f "$tmp/m/model.safetensors" ] || { echo "FAIL: init wrote no model"; fail=1; }
check 2 "init into an existing dir" "$r1" init --out "$tmp/m"
check 2 "init unknown preset" "$r1" init --preset nope --out "$tmp/x"
[ ! -e "$tmp/x" ] || { echo "FAIL: failed init left $tmp/x behind"; fail=1; }
check 2 "init bad seed" "$r1" init --out "$tmp/y" --seed -4
check 0 "sample greedy" "$r1" sample --model "$tmp/m" --prompt "2+2=" --temperature 0 --max-tokens 8
a=$("$r1" sample --model "$tmp/m" --prompt "ab" -n 3 --max-tokens 12 --seed 5 --json)
b=$("$r1" sample --model "$tmp/m" --prompt "ab" -n 3 --max-tokens 12 --seed 5 --json --slots 1)
# tokens must match exactly; logprobs only to rounding (logits summed in other batch shapes)
strip() { sed 's/"logprob":[-0-9.e]*//'; }
[ "$(echo "$a" | strip)" = "$(echo "$b" | strip)" ] || { echo "FAIL: samples depend on --slots"; fail=1; }
[ "$(echo "$a" | wc -l)" -eq 3 ] || { echo "FAIL: -n 3 gave $(echo "$a" | wc -l) lines"; fail=1; }
# --dtype bf16: bf16 generation weights; samples (and, being bitwise, log-probs) still
# independent of --slots; a bad dtype is a usage error
c=$("$r1" sample --model "$tmp/m" --prompt "ab" -n 3 --max-tokens 12 --seed 5 --json --dtype bf16)
d=$("$r1" sample --model "$tmp/m" --prompt "ab" -n 3 --max-tokens 12 --seed 5 --json --dtype bf16 --slots 1)
[ -n "$c" ] && [ "$c" = "$d" ] || { echo "FAIL: --dtype bf16 samples depend on --slots"; fail=1; }
check 0 "sample --dtype f32" "$r1" sample --model "$tmp/m" --prompt "2+2=" --temperature 0 --max-tokens 4 --dtype f32
check 2 "sample bad --dtype" "$r1" sample --model "$tmp/m" --prompt hi --dtype f16
check 2 "eval bad --dtype" "$r1" eval --model "$tmp/m" --data /dev/null --dtype int8
echo "$a" | head -1 | grep -q '"finish_reason"' || { echo "FAIL: JSON lacks finish_reason"; fail=1; }
check 2 "sample missing model dir" "$r1" sample --model "$tmp/none" --prompt hi
check 2 "sample bad top-p" "$r1" sample --model "$tmp/m" --prompt hi --top-p 1.5
check 2 "sample bad number" "$r1" sample --model "$tmp/m" --prompt hi --temperature hot
printf '{"prompt": "a"}\nnot json\n' >"$tmp/p.jsonl"
check 2 "sample bad prompts file" "$r1" sample --model "$tmp/m" --prompts "$tmp/p.jsonl"
grep -q "p.jsonl:2" /tmp/r1-cli-out.$$ || { echo "FAIL: prompts error does not name file:line"; fail=1; }
# sample --chat / --template / chat lines (the byte tokenizer has no template of its own)
check 2 "sample --chat without a template" "$r1" sample --model "$tmp/m" --prompt hi --chat
grep -q "give --template NAME" /tmp/r1-cli-out.$$ || { echo "FAIL: --chat error does not ask for --template"; fail=1; }
check 2 "sample unknown template" "$r1" sample --model "$tmp/m" --prompt hi --template vicuna
got=$("$r1" sample --model "$tmp/m" --prompt hi --template chatml --max-tokens 2 --json | head -1)
echo "$got" | grep -qF '"prompt":"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"' ||
  { echo "FAIL: --template chatml prompt: $got"; fail=1; }
"$r1" sample --model "$tmp/m" --prompt hi --template r1-zero --max-tokens 3 --temperature 0 >"$tmp/s.txt"
"$r1" sample --model "$tmp/m" --prompt hi --template r1-zero --max-tokens 3 --temperature 0 --json |
  grep -qF ' User: hi. Assistant:\n",' || { echo "FAIL: r1-zero chat prompt lacks its user turn"; fail=1; }
printf 'A conversation between User and Assistant. The user' >"$tmp/s.want"
[ "$(head -c 51 "$tmp/s.txt")" = "$(cat "$tmp/s.want")" ] || { echo "FAIL: streamed r1-zero sample does not start with its prompt"; fail=1; }
printf '{"prompt": "a"}\n{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}]}\n' >"$tmp/chat.jsonl"
got=$("$r1" sample --model "$tmp/m" --prompts "$tmp/chat.jsonl" --template llama3 --max-tokens 2 --json)
want1='"prompt":"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\na<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"'
want2='"prompt":"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"'
{ echo "$got" | sed -n 1p | grep -qF "$want1" && echo "$got" | sed -n 2p | grep -qF "$want2"; } ||
  { echo "FAIL: --prompts with a chat line and --template llama3: $got"; fail=1; }
check 2 "sample chat line without a template" "$r1" sample --model "$tmp/m" --prompts "$tmp/chat.jsonl"
grep -qF 'chat.jsonl:2: a "messages" line needs a chat template' /tmp/r1-cli-out.$$ || { echo "FAIL: chat line error does not name file:line"; fail=1; }

# tokenize: byte ids by hand (a 97, b 98, <think> 257, x 120, \n 10, <|im_start|> 261)
got=$(printf 'ab<think>x\n' | "$r1" tokenize --model "$tmp/m")
[ "$got" = "[97,98,257,120,10]" ] || { echo "FAIL: tokenize gave $got"; fail=1; }
got=$(printf '' | "$r1" tokenize --model "$tmp/m")
[ "$got" = "[]" ] || { echo "FAIL: tokenize of nothing gave $got"; fail=1; }
got=$(printf '[261, 104,105,262]' | "$r1" tokenize --model "$tmp/m" --decode)
[ "$got" = "<|im_start|>hi<|im_end|>" ] || { echo "FAIL: tokenize --decode gave $got"; fail=1; }
printf 'x\001\377<answer>y</answer>\n\n' >"$tmp/bytes"
"$r1" tokenize --model "$tmp/m" <"$tmp/bytes" | "$r1" tokenize --model "$tmp/m" --decode >"$tmp/bytes2"
cmp -s "$tmp/bytes" "$tmp/bytes2" || { echo "FAIL: tokenize | tokenize --decode does not round-trip"; fail=1; }
check 2 "tokenize --decode id out of range" sh -c "printf '[97,264]' | '$r1' tokenize --model '$tmp/m' --decode"
grep -q "element 1: id 264 is out of range 0..263" /tmp/r1-cli-out.$$ || { echo "FAIL: out-of-range error does not name the element"; fail=1; }
check 2 "tokenize --decode bad JSON" sh -c "printf '[97,\n 9' | '$r1' tokenize --model '$tmp/m' --decode"
grep -q "stdin:2:" /tmp/r1-cli-out.$$ || { echo "FAIL: bad JSON error does not name line:column"; fail=1; }
check 2 "tokenize --decode non-integer" sh -c "printf '[97, 1.5]' | '$r1' tokenize --model '$tmp/m' --decode"
check 2 "tokenize without --model" "$r1" tokenize
check 2 "tokenize missing model" sh -c "echo hi | '$r1' tokenize --model '$tmp/none'"

printf 'garbage' >"$tmp/m/model.safetensors"
check 2 "sample corrupt weights" "$r1" sample --model "$tmp/m" --prompt hi

# r1 data gen: N lines, same seed -> same bytes, bad input -> 2 and no file, disjoint splits
spec="arith:digits=2,ops=+-*,demo=1,noise=0.2"
check 0 "data gen arith" "$r1" data gen "$spec" --n 50 --seed 7 --out "$tmp/a1.jsonl"
[ "$(wc -l <"$tmp/a1.jsonl")" -eq 50 ] || { echo "FAIL: data gen --n 50 wrote $(wc -l <"$tmp/a1.jsonl") lines"; fail=1; }
grep -q '"text":"What is [0-9+*-]*?<think>\\n' "$tmp/a1.jsonl" || { echo "FAIL: data gen demo text has the wrong shape"; fail=1; }
"$r1" data gen "$spec" --n 50 --seed 7 --out "$tmp/a2.jsonl" >/dev/null
cmp -s "$tmp/a1.jsonl" "$tmp/a2.jsonl" || { echo "FAIL: data gen: same seed gave different bytes"; fail=1; }
"$r1" data gen "$spec" --n 50 --seed 8 --out "$tmp/a3.jsonl" >/dev/null
cmp -s "$tmp/a1.jsonl" "$tmp/a3.jsonl" && { echo "FAIL: data gen ignores --seed"; fail=1; }
[ "$("$r1" data gen "$spec" --n 50 --seed 7 --out - | cmp - "$tmp/a1.jsonl" && echo same)" = same ] || { echo "FAIL: data gen --out - differs from the file"; fail=1; }
check 2 "data gen bad spec" "$r1" data gen "arith:digits=9" --n 5 --out "$tmp/bad.jsonl"
grep -q "digits" /tmp/r1-cli-out.$$ || { echo "FAIL: data gen bad spec error does not name the knob"; fail=1; }
[ ! -e "$tmp/bad.jsonl" ] && [ ! -e "$tmp/bad.jsonl.tmp" ] || { echo "FAIL: failed data gen left a file"; fail=1; }
check 2 "data gen unknown generator" "$r1" data gen sudoku --out "$tmp/bad.jsonl"
check 2 "data gen without --out" "$r1" data gen arith --n 5
check 2 "data gen without spec" "$r1" data gen --out "$tmp/bad.jsonl"
check 2 "data gen bad split" "$r1" data gen arith --split test --out "$tmp/bad.jsonl"
check 2 "data unknown subcommand" "$r1" data frob
[ ! -e "$tmp/bad.jsonl" ] || { echo "FAIL: failed data gen left a file"; fail=1; }
check 0 "data gen countdown" "$r1" data gen countdown:numbers=4 --n 20 --split eval --out "$tmp/c.jsonl"
[ "$(grep -c '"numbers":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*\],"target":[0-9]*' "$tmp/c.jsonl")" -eq 20 ] || { echo "FAIL: countdown lines lack numbers/target"; fail=1; }
"$r1" data gen arith --n 1000 --out "$tmp/tr.jsonl" >/dev/null
"$r1" data gen arith --n 100 --split eval --seed 2 --out "$tmp/ev.jsonl" >/dev/null
[ -z "$(comm -12 <(sort -u "$tmp/tr.jsonl") <(sort -u "$tmp/ev.jsonl"))" ] || { echo "FAIL: data gen train and eval share problems"; fail=1; }
exit $fail
