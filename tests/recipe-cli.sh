#!/usr/bin/env bash
# recipe-cli.sh R1 - `r1 recipe check|show|keys`: every bad recipe under recipes/bad/ fails
# with exit 2 and prints each "# expect: [FILE:]LINE:COL: message" line its first lines
# list (FILE defaults to the recipe itself); good recipes pass; show round-trips; --set works;
# check makes the stages' own checks too.
set -u
r1=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=${R1_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
dir=$src/tests/recipes
fail=0
out=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$out" "$tmp"' EXIT

expect_status() { # want description command...
  local want=$1 what=$2; shift 2
  "$@" >"$out" 2>&1; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' "$out"; fail=1; return 1
  fi
  echo "ok: $what"
}
expect_line() { # description prefix
  if ! grep -qF -- "$2" "$out"; then
    echo "FAIL: $1: no line with '$2'"; sed 's/^/    /' "$out"; fail=1
  fi
}

for f in "$dir"/bad/*.yaml; do
  n=0
  while IFS= read -r e; do
    [ -n "$e" ] || continue
    n=$((n + 1))
    [ "$n" -eq 1 ] && expect_status 2 "check $(basename "$f")" "$r1" recipe check "$f"
    case $e in
      [0-9]*) want="$f:$e" ;;
      *) want="$dir/bad/$e" ;;
    esac
    grep -q "^$(printf '%s' "$want" | sed 's/[][\.*^$/]/\\&/g')" "$out" ||
      { echo "FAIL: $(basename "$f"): no line starting '$want'"; sed 's/^/    /' "$out"; fail=1; }
  done < <(sed -n 's/^# expect: //p' "$f")
done
# three-problems.yaml lists three expectations: all three must be reported, nothing more
[ "$(grep -c "three-problems.yaml:[0-9]*:[0-9]*:" <(cd "$dir" && "$r1" recipe check bad/three-problems.yaml 2>&1))" -eq 3 ] ||
  { echo "FAIL: three-problems.yaml does not report exactly three problems"; fail=1; }

for f in base:3 reformatted:3 child:4; do
  expect_status 0 "check good/${f%:*}.yaml" "$r1" recipe check "$dir/good/${f%:*}.yaml" &&
    expect_line "check good/${f%:*}.yaml" "$dir/good/${f%:*}.yaml: ok (${f#*:} stages)"
done
# formatting does not change the resolved recipe; show output parses back to itself
"$r1" recipe show "$dir/good/base.yaml" >"$tmp/a.yaml"
"$r1" recipe show "$dir/good/reformatted.yaml" >"$tmp/b.yaml"
cmp -s "$tmp/a.yaml" "$tmp/b.yaml" || { echo "FAIL: reformatted recipe resolves differently"; diff "$tmp/a.yaml" "$tmp/b.yaml"; fail=1; }
"$r1" recipe show "$tmp/a.yaml" >"$tmp/c.yaml"
cmp -s "$tmp/a.yaml" "$tmp/c.yaml" || { echo "FAIL: show is not a fixed point"; diff "$tmp/a.yaml" "$tmp/c.yaml"; fail=1; }

# --set: values take effect, errors name the --set and exit 2
"$r1" recipe show "$dir/good/base.yaml" --set seed=7 --set stages.sft.optimizer.lr=1e-5 \
  --set=stages.reasoning_rl.grpo.loss_type=dr_grpo >"$out" 2>&1
grep -q '^seed: 7$' "$out" && grep -q 'lr: 1e-05' "$out" && grep -q 'loss_type: dr_grpo' "$out" ||
  { echo "FAIL: --set did not take effect"; sed 's/^/    /' "$out"; fail=1; }
expect_status 2 "--set wrong type" "$r1" recipe check "$dir/good/base.yaml" --set stages.sft.steps=lots &&
  expect_line "--set wrong type" "--set stages.sft.steps: 'steps' must be an integer"
expect_status 2 "--set unknown stage" "$r1" recipe check "$dir/good/base.yaml" --set stages.nope.steps=3 &&
  expect_line "--set unknown stage" "--set stages.nope.steps: no stage named 'nope'"
expect_status 2 "--set unknown key" "$r1" recipe check "$dir/good/base.yaml" --set stages.sft.stepz=3 &&
  expect_line "--set unknown key" "--set stages.sft.stepz: unknown key 'stepz' (did you mean 'steps'?)"
expect_status 2 "--set without =" "$r1" recipe check "$dir/good/base.yaml" --set seed
expect_status 2 "--set without value" "$r1" recipe check "$dir/good/base.yaml" --set
expect_status 2 "missing recipe file" "$r1" recipe check "$tmp/none.yaml"
expect_status 2 "check without FILE" "$r1" recipe check
expect_status 2 "unknown subcommand" "$r1" recipe frob
for s in check show keys; do
  expect_status 0 "recipe $s --help" "$r1" recipe "$s" --help
  expect_status 2 "recipe $s --no-such-flag" "$r1" recipe "$s" --no-such-flag
done
# the stages' own checks, as r1 run makes them: a grpo micro-batch that does not divide the
# update (P·G/minibatches = 8), while batch_size (not grpo's) does not matter
expect_status 2 "check runs the stage's checks" "$r1" recipe check \
  "$src/tests/recipes/grpo/features.yaml" --set stages.rl.micro_batch_size=6 &&
  expect_line "check runs the stage's checks" "micro_batch_size (6) must divide the 8 completions"
expect_status 0 "grpo micro_batch_size against its update, not batch_size" "$r1" recipe check \
  "$src/tests/recipes/grpo/features.yaml" --set stages.rl.micro_batch_size=8 --set stages.rl.batch_size=5
expect_status 0 "recipe keys" "$r1" recipe keys &&
  expect_line "recipe keys" "| stages[].grpo.group_size | int | 8 | [2, 4096] | grpo, align |"
# every shipped recipe is valid; one whose model is not in the cache (the GPU recipes' Qwen
# dirs, the SmolLM2 GGUF before tools/fetch-model) is checked with a scratch model of its shape
cache=${R1_CACHE:-$HOME/.cache/r1}
for f in "$src"/recipes/*.yaml "$src"/tests/recipes/grpo/*.yaml; do
  set_model=()
  init=$(sed -n 's/^  init: *//p' "$f" | head -n 1)
  case $init in
    '$R1_CACHE/'*)
      if [ ! -e "$cache/${init#\$R1_CACHE/}" ]; then
        case $(basename "$f") in
          qwen2.5-0.5b*) set_model=(--set model.init=scratch:qwen2.5-0.5b) ;;
          qwen2.5-1.5b*) set_model=(--set model.init=scratch:qwen2.5-1.5b) ;;
          smollm2*) set_model=(--set model.init=scratch:smollm2-135m --set model.chat_template=chatml) ;;
          *) echo "FAIL: $(basename "$f"): no scratch stand-in for $init"; fail=1; continue ;;
        esac
      fi ;;
  esac
  expect_status 0 "recipe check $(basename "$f") ${set_model[*]}" "$r1" recipe check "$f" "${set_model[@]}"
done
exit $fail
