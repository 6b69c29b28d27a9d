#!/usr/bin/env bash
# eval.sh R1 - `r1 eval` end to end on a tiny byte-level model fine-tuned for a few
# seconds on one-digit sums (tests/recipes/eval/sft.yaml; it answers "<answer>N</answer>",
# often wrongly):
#  1. the per-item JSONL has one line per item with n samples each, and pass@1 and maj@n
#     recomputed from it by Python (its own majority vote: numbers compared as numbers,
#     ties to the answer seen first) equal the summary line;
#  2. the same --seed gives identical bytes, another seed other samples;
#  3. --run DIR --stage NAME evaluates the stage's newest checkpoint (same output as
#     --model on that checkpoint's directory); --json puts the items on stdout;
#  4. a bad --reward, a missing data file and a bad JSONL line exit 2 (the last naming
#     FILE:LINE).
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$r1" run "$here/recipes/eval/sft.yaml" --run-dir "$tmp/run" >"$tmp/run.log" 2>&1 ||
  { echo "FAIL: training run: $(tail -3 "$tmp/run.log")"; exit 1; }
ck=$tmp/run/checkpoints/sft/00000060
[ -f "$ck/model.safetensors" ] || { echo "FAIL: no checkpoint at $ck"; exit 1; }
# the eval set: the training sums, two with a wrong reference answer
python3 - "$tmp/data.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for a in range(5):
        for b in range(5):
            ans = a + b if (a, b) not in ((1, 1), (3, 4)) else 99
            f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": str(ans)}) + "\n")
PY
ev() { "$r1" eval --data "$tmp/data.jsonl" -n 4 --temperature 1 --top-p 1 --max-tokens 12 "$@"; }

# 1. counts and the recomputed summary
ev --model "$ck" --seed 7 --out "$tmp/a.jsonl" >"$tmp/a.sum" 2>"$tmp/err" ||
  { echo "FAIL: eval: $(cat "$tmp/err")"; exit 1; }
echo "summary: $(cat "$tmp/a.sum")"
want=$(python3 - "$tmp/a.jsonl" "$tmp/data.jsonl" <<'PY'
import json, sys
items = [json.loads(l) for l in open(sys.argv[1])]
data = [json.loads(l) for l in open(sys.argv[2])]
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
def same(a, b):
    na, nb = num(a), num(b)
    return na == nb if na is not None and nb is not None else a.strip() == b.strip()
assert len(items) == len(data), f"{len(items)} items for {len(data)} prompts"
pass_sum = maj_sum = 0
answered = 0
for i, (it, d) in enumerate(zip(items, data)):
    assert it["index"] == i and it["prompt"] == d["prompt"] and it["answer"] == d["answer"], it
    s = it["samples"]
    assert len(s) == 4, f"item {i}: {len(s)} samples"
    for x in s:  # accuracy: 1 exactly when the extracted answer equals the reference
        right = x["answer"] is not None and same(x["answer"], d["answer"])
        assert x["reward"] == (1.0 if right else 0.0) and x["pass"] == right, (i, x)
        answered += x["answer"] is not None
    rate = sum(x["pass"] for x in s) / len(s)
    assert abs(rate - it["pass_rate"]) < 1e-12, (i, rate, it["pass_rate"])
    groups = []  # [answer, votes] in order of first appearance
    for x in s:
        a = x["answer"]
        if not a:
            continue
        for g in groups:
            if same(g[0], a):
                g[1] += 1
                break
        else:
            groups.append([a, 1])
    maj = max(groups, key=lambda g: g[1])[0] if groups else None  # max keeps the first
    assert it["majority"] == maj, (i, it["majority"], maj)
    correct = maj is not None and same(maj, d["answer"])
    assert it["correct"] == correct, (i, it)
    pass_sum += rate
    maj_sum += correct
assert answered > 0, "no sample has an extractable answer: the fixture model is broken"
n = len(items)
print(f"eval: {n} items, n=4: pass@1 {pass_sum / n:.3f}, maj@4 {maj_sum / n:.3f}")
PY
) || { echo "FAIL: the items JSONL: $want"; fail=1; }
if [ "$want" = "$(cat "$tmp/a.sum")" ]; then
  echo "ok: 25 items x 4 samples; pass@1 and maj@4 recomputed from the JSONL match the summary"
else
  echo "FAIL: recomputed '$want', summary '$(cat "$tmp/a.sum")'"; fail=1
fi

# 2. determinism
ev --model "$ck" --seed 7 --out "$tmp/b.jsonl" >"$tmp/b.sum" 2>&1
ev --model "$ck" --seed 8 --out "$tmp/c.jsonl" >/dev/null 2>&1
if cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl" && cmp -s "$tmp/a.sum" "$tmp/b.sum"; then
  echo "ok: the same seed gives identical items and summary"
else
  echo "FAIL: two runs with --seed 7 differ"; fail=1
fi
cmp -s "$tmp/a.jsonl" "$tmp/c.jsonl" && { echo "FAIL: --seed 8 gave the samples of --seed 7"; fail=1; }

# 3. --run/--stage, --json
ev --run "$tmp/run" --stage sft --seed 7 --json >"$tmp/d.jsonl" 2>"$tmp/d.sum"
if cmp -s "$tmp/a.jsonl" "$tmp/d.jsonl" && cmp -s "$tmp/a.sum" "$tmp/d.sum"; then
  echo "ok: --run/--stage evaluates the stage's newest checkpoint; --json items on stdout"
else
  echo "FAIL: --run --stage --json differs from --model $ck --out"; fail=1
fi
check() { # expected-status description pattern command...
  local want=$1 what=$2 pat=$3; shift 3
  "$@" >"$tmp/out" 2>&1; local got=$?
  if [ "$got" -ne "$want" ] || ! grep -q -- "$pat" "$tmp/out"; then
    echo "FAIL: $what: exit $got (want $want), output:"; sed 's/^/    /' "$tmp/out"; fail=1
  else
    echo "ok: $what: $(head -1 "$tmp/out")"
  fi
}
check 2 "--run with an unknown stage" "no checkpoint" ev --run "$tmp/run" --stage rl

# 4. errors
check 2 "unknown reward" "unknown reward 'acuracy'" ev --model "$ck" --reward accuracy,acuracy
check 2 "missing data file" "nope.jsonl" \
  "$r1" eval --model "$ck" --data "$tmp/nope.jsonl"
printf '{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": \n' >"$tmp/bad.jsonl"
check 2 "bad JSONL line" "bad.jsonl:2" "$r1" eval --model "$ck" --data "$tmp/bad.jsonl"
check 2 "neither --model nor --run" "needs --data" "$r1" eval --data "$tmp/data.jsonl"
check 2 "chat without a template" "give --template" ev --model "$ck" --chat
[ $fail -eq 0 ] && echo "all eval checks passed"
exit $fail
