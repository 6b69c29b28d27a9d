#!/usr/bin/env bash
# verify-cli.sh R1 MAKE_RUN - `r1 verify` passes an intact run (exit 0) and names the
# first file that differs after one flipped byte in a weight object or in a manifest
# (exit 1); a directory that is not a run gives exit 2.
set -u
r1=$1
make_run=$2
fail=0
tmp=$(mktemp -d)
out=$tmp/out
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
check() { # expected-status description command...
  local want=$1 what=$2; shift 2
  "$@" >"$out" 2>&1; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' "$out"; fail=1
  else
    echo "ok: $what"
  fi
}
# flip FILE OFFSET: xor one byte in place (keeps the inode, so hard links see it too)
flip() {
  chmod u+w "$1"
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}
run=$tmp/run
R1_COMMIT_TIME=1700000000 "$make_run" "$run" || { echo "FAIL: make-run"; exit 1; }
check 0 "verify an intact run" "$r1" verify "$run"
grep -q "2 checkpoints, 5 objects verified" "$out" || { echo "FAIL: counts"; cat "$out"; fail=1; }
git -C "$run" log --format=%s | grep -q "sft: test checkpoint" || { echo "FAIL: git log"; fail=1; }

weights=$(readlink -f "$run/checkpoints/sft/00000002/model.safetensors")
sha=$(sha256sum "$weights" | cut -c1-64)
obj="$run/objects/sha256/${sha:0:2}/${sha:2}"
[ -f "$obj" ] || { echo "FAIL: no object $obj"; fail=1; }
flip "$obj" 100
check 1 "verify a flipped weight byte" "$r1" verify "$run"
grep -q "objects/sha256/${sha:0:2}/${sha:2}" "$out" || { echo "FAIL: weight object not named"; cat "$out"; fail=1; }
grep -q "expected $sha" "$out" || { echo "FAIL: expected sha256 not shown"; cat "$out"; fail=1; }
flip "$obj" 100
check 0 "verify after restoring the byte" "$r1" verify "$run"

man="$run/checkpoints/sft/00000001/manifest.json"
flip "$man" 10
check 1 "verify a flipped manifest byte" "$r1" verify "$run"
grep -q "checkpoints/sft/00000001/manifest.json" "$out" || { echo "FAIL: manifest not named"; cat "$out"; fail=1; }
flip "$man" 10
check 0 "verify after restoring the manifest" "$r1" verify "$run"

rm "$run/checkpoints/sft/00000002/trainer_state.json"
check 1 "verify a missing checkpoint file" "$r1" verify "$run"
grep -q "trainer_state.json" "$out" || { echo "FAIL: missing file not named"; cat "$out"; fail=1; }

mkdir "$tmp/plain"
check 2 "verify a plain directory" "$r1" verify "$tmp/plain"
[ "$(wc -l <"$out")" -eq 1 ] || { echo "FAIL: not a one-line message"; cat "$out"; fail=1; }
git init -q "$tmp/repo"
check 2 "verify a git repository that is not a run" "$r1" verify "$tmp/repo"
check 2 "verify a missing directory" "$r1" verify "$tmp/none"
check 2 "verify without DIR" "$r1" verify
exit $fail
