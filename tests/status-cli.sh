#!/usr/bin/env bash
# status-cli.sh R1 - r1 status, r1 log and r1 export on a two-stage run: refused outside
# a run directory (2), after a kill -9 inside sft's first and second checkpoint writes,
# while a run is alive, and after r1 resume finishes it; export gives exactly the
# checkpoint's model files and refuses an existing OUT or an unknown stage.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here"/recipes/run/two-stage.yaml "$here"/recipes/run/corpus.txt "$here"/recipes/run/pairs.jsonl "$tmp"/
recipe=$tmp/two-stage.yaml
run=$tmp/run
out=$tmp/out.txt
fail=0
check() { # expected-status description command...
  local want=$1 what=$2; shift 2
  "$@" >"$out" 2>"$out.err"; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' "$out" "$out.err"; fail=1
  else
    echo "ok: $what"
  fi
}
expect() { # description grep-pattern (in $out)
  grep -Eq "$2" "$out" || { echo "FAIL: $1: no line matches '$2' in:"; sed 's/^/    /' "$out"; fail=1; }
}
newest_manifest() { # stage -> sha256 of its newest checkpoint's manifest.json
  local d; d=$(ls -d "$run"/checkpoints/"$1"/* | sort | tail -1)
  sha256sum "$d/manifest.json" | awk '{print $1}'
}
# json_check DESCRIPTION PYTHON-ASSERTIONS: d is the parsed `r1 status --json` output
json_check() {
  "$r1" status "$run" --json >"$out" 2>&1 || { echo "FAIL: $1: status --json failed"; fail=1; return; }
  [ "$(wc -l <"$out")" -eq 1 ] || { echo "FAIL: $1: --json is not one line"; fail=1; }
  if PRE=$(newest_manifest pretrain 2>/dev/null) SFT=$(newest_manifest sft 2>/dev/null) \
     python3 -c 'import json, os, sys
d = json.load(sys.stdin)
assert d["run"] == "two-stage", d["run"]
assert [s["name"] for s in d["stages"]] == ["pretrain", "sft"]
for s in d["stages"]:
    assert set(s) == {"name", "kind", "state", "step", "steps", "checkpoint", "metrics"}, s
    assert s["kind"] == s["name"]
    assert all(isinstance(v, (int, float)) for v in s["metrics"].values()), s
p, f = d["stages"]
pre, sft = os.environ["PRE"], os.environ["SFT"] or None
'"$2" <"$out"; then echo "ok: $1"; else echo "FAIL: $1"; sed 's/^/    /' "$out"; fail=1; fi
}

# not a run directory
check 2 "status of a plain directory" "$r1" status "$tmp"
[ "$(wc -l <"$out.err")" -eq 1 ] && grep -q "^r1 status: $tmp: not an r1 run directory" "$out.err" ||
  { echo "FAIL: status of a plain directory does not say so in one line"; fail=1; }
check 2 "status of a missing directory" "$r1" status "$tmp/none"
check 2 "log of a plain directory" "$r1" log "$tmp"
check 2 "export from a plain directory" "$r1" export "$tmp" sft "$tmp/x"
[ ! -e "$tmp/x" ] || { echo "FAIL: a refused export left $tmp/x"; fail=1; }

# killed inside sft's first checkpoint write: pretrain done, sft interrupted at step 0
(R1_TEST_CRASH=sft:4:before-commit "$r1" run "$recipe" --run-dir "$run" >/dev/null) 2>/dev/null
rc=$?
[ $rc -eq 137 ] || { echo "FAIL: expected a kill (137), got $rc"; exit 1; }
check 0 "status after a kill in sft" "$r1" status "$run"
expect "pretrain done" '^pretrain +pretrain +done +16/16 '
expect "sft interrupted at step 0" '^sft +sft +interrupted +0/12 +- '
json_check "status --json after a kill in sft" '
assert (p["state"], p["step"], p["steps"], p["checkpoint"]) == ("done", 16, 16, pre), p
assert (f["state"], f["step"], f["steps"], f["checkpoint"]) == ("interrupted", 0, 12, None), f
assert p["metrics"]["step"] == 16 and "loss" in p["metrics"], p
assert f["metrics"]["step"] == 4 and "loss" in f["metrics"], f'
check 2 "export of a stage without a checkpoint" "$r1" export "$run" sft "$tmp/x"
[ ! -e "$tmp/x" ] || { echo "FAIL: a refused export left $tmp/x"; fail=1; }

# a live process named in status.json (this shell) makes the first open stage running
cp "$run/status.json" "$tmp/status.saved"
printf '{"state": "running", "pid": %d}\n' $$ >"$run/status.json"
check 0 "status while running" "$r1" status "$run"
expect "sft running" '^sft +sft +running +4/12 '
cp "$tmp/status.saved" "$run/status.json"

# killed inside sft's second checkpoint write: sft interrupted at step 4
(R1_TEST_CRASH=sft:8:before-commit "$r1" resume "$run" >/dev/null) 2>/dev/null
rc=$?
[ $rc -eq 137 ] || { echo "FAIL: expected a kill (137) in the resume, got $rc"; exit 1; }
check 0 "status after a second kill" "$r1" status "$run"
expect "sft interrupted at step 4" '^sft +sft +interrupted +4/12 '
json_check "status --json after a second kill" '
assert (f["state"], f["step"], f["checkpoint"]) == ("interrupted", 4, sft), f'
check 0 "export of an unfinished stage" "$r1" export "$run" sft "$tmp/early"
grep -q "not finished" "$out.err" || { echo "FAIL: no warning for an unfinished stage"; fail=1; }
[ -f "$tmp/early/model.safetensors" ] || { echo "FAIL: unfinished export wrote no model"; fail=1; }

# finished
check 0 "resume to the end" "$r1" resume "$run"
check 0 "status of a finished run" "$r1" status "$run"
expect "pretrain done" '^pretrain +pretrain +done +16/16 '
expect "sft done" '^sft +sft +done +12/12 '
json_check "status --json of a finished run" '
for s in d["stages"]:
    assert s["state"] == "done" and s["step"] == s["steps"], s
assert p["checkpoint"] == pre and f["checkpoint"] == sft, d'

# log: every checkpoint commit, newest first, the root commit left out
check 0 "log" "$r1" log "$run"
if command -v git >/dev/null; then
  want=$(git -C "$run" log --format=%H main | head -n -1 | cut -c1-12)
  [ "$(awk '{print $1}' "$out")" = "$want" ] || { echo "FAIL: log is not the ledger newest first"; fail=1; }
fi
[ "$(wc -l <"$out")" -eq 7 ] || { echo "FAIL: log has $(wc -l <"$out") lines, want 7"; fail=1; }
head -1 "$out" | grep -Eq ' sft +step 12 ' || { echo "FAIL: log does not start with sft step 12"; fail=1; }
tail -1 "$out" | grep -Eq ' pretrain +step 4 +parent none ' || { echo "FAIL: log does not end with pretrain step 4"; fail=1; }

# export
ck=$run/checkpoints/sft/00000012
check 0 "export sft" "$r1" export "$run" sft "$tmp/hf"
for f in config.json model.safetensors; do
  [ "$(sha256sum <"$tmp/hf/$f")" = "$(sha256sum <"$ck/$f")" ] || { echo "FAIL: exported $f differs from the checkpoint's"; fail=1; }
done
for f in optimizer.safetensors trainer_state.json manifest.json; do
  [ ! -e "$tmp/hf/$f" ] || { echo "FAIL: export carried $f"; fail=1; }
done
ls -d "$tmp"/hf.tmp-* >/dev/null 2>&1 && { echo "FAIL: export left a temp dir"; fail=1; }
check 2 "export to an existing OUT" "$r1" export "$run" sft "$tmp/hf"
check 2 "export of an unknown stage" "$r1" export "$run" nope "$tmp/hf2"
[ ! -e "$tmp/hf2" ] || { echo "FAIL: a refused export left $tmp/hf2"; fail=1; }
exit $fail
