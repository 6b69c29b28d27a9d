#!/usr/bin/env bash
# run-resume.sh R1 - kill -9 a two-stage run at several points (inside a checkpoint write,
# between stages, mid-step at a random time), `r1 resume` it, and require the final
# checkpoints and metrics to be byte-identical to an uninterrupted run's.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here"/recipes/run/two-stage.yaml "$here"/recipes/run/corpus.txt "$here"/recipes/run/pairs.jsonl "$tmp"/
recipe=$tmp/two-stage.yaml
fail=0
final() { # DIR -> the identity of a finished run: final manifests + metrics
  sha256sum "$1"/checkpoints/pretrain/00000016/manifest.json "$1"/checkpoints/sft/00000012/manifest.json \
            "$1"/checkpoints/sft/00000012/model.safetensors "$1"/metrics.jsonl 2>/dev/null | awk '{print $1}'
}
"$r1" run "$recipe" --run-dir "$tmp/ref" >/dev/null || { echo "FAIL: reference run"; exit 1; }
want=$(final "$tmp/ref")
[ "$(echo "$want" | wc -l)" -eq 4 ] || { echo "FAIL: reference run lacks its checkpoints"; exit 1; }

check_same() { # name dir
  if [ "$(final "$2")" != "$want" ]; then echo "FAIL: $1: result differs from the uninterrupted run"; fail=1
  elif ! "$r1" verify "$2" >/dev/null; then echo "FAIL: $1: r1 verify"; fail=1
  else echo "ok: $1"; fi
}

for point in pretrain:8:before-commit pretrain:16:finished sft:4:before-commit sft:12:before-commit; do
  d=$tmp/crash-${point//:/-}
  R1_TEST_CRASH=$point "$r1" run "$recipe" --run-dir "$d" >/dev/null 2>&1
  rc=$?
  [ $rc -eq 137 ] || { echo "FAIL: $point: expected a kill (137), got $rc"; fail=1; continue; }
  "$r1" resume "$d" >/dev/null || { echo "FAIL: $point: resume failed"; fail=1; continue; }
  check_same "kill -9 at $point" "$d"
done

# kill -9 at arbitrary moments (mid-step, mid-write): resume until finished
for delay in 0.05 0.15 0.3; do
  d=$tmp/timed-$delay
  "$r1" run "$recipe" --run-dir "$d" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  if [ ! -f "$d/run.json" ]; then # killed before the run existed: start it again
    rm -rf "$d"
    "$r1" run "$recipe" --run-dir "$d" >/dev/null || { echo "FAIL: rerun after early kill"; fail=1; continue; }
  else
    "$r1" resume "$d" >/dev/null 2>"$tmp/err" || { echo "FAIL: resume after kill at ${delay}s: $(cat "$tmp/err")"; ls -a "$d"; fail=1; continue; }
  fi
  check_same "kill -9 after ${delay}s" "$d"
done

# SIGINT finishes the update, writes a checkpoint and exits 130; resume completes it
d=$tmp/sigint
"$r1" run "$recipe" --run-dir "$d" --progress-every 0 >"$tmp/sigint.out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "pretrain step 3 " "$tmp/sigint.out" && break; sleep 0.01; done
kill -INT $pid
wait $pid; rc=$?
weights() { sha256sum "$1"/checkpoints/sft/00000012/model.safetensors "$1"/metrics.jsonl 2>/dev/null | awk '{print $1}'; }
if [ $rc -eq 130 ]; then
  # the interrupt adds a checkpoint at its step, so the manifest chain differs; the
  # weights and metrics must not
  if ! "$r1" resume "$d" >/dev/null; then echo "FAIL: resume after SIGINT"; fail=1
  elif [ "$(weights "$d")" != "$(weights "$tmp/ref")" ]; then echo "FAIL: SIGINT: weights differ"; fail=1
  else echo "ok: SIGINT (exit 130) then resume"; fi
elif [ $rc -eq 0 ]; then
  check_same "SIGINT after the run ended" "$d"
else
  echo "FAIL: SIGINT: exit $rc, want 130"; fail=1
fi

# a finished run says so and exits 0
out=$("$r1" resume "$tmp/ref") || { echo "FAIL: resume of a finished run exits non-zero"; fail=1; }
echo "$out" | grep -q "sft already finished" || { echo "FAIL: resume of a finished run does not say so"; fail=1; }
# a run dir that holds a run is refused by r1 run
"$r1" run "$recipe" --run-dir "$tmp/ref" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL: r1 run into an existing run: exit $rc, want 2"; fail=1; }
# a changed recipe is refused (2) unless --force, which the ledger records
d=$tmp/changed
R1_TEST_CRASH=pretrain:8:before-commit "$r1" run "$recipe" --run-dir "$d" >/dev/null 2>&1
sed -i 's/lr: 1e-3/lr: 2e-3/' "$recipe"
err=$("$r1" resume "$d" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "recipe changed" && echo "$err" | grep -q "stages.sft.optimizer.lr: 0.001 -> 0.002" || { echo "FAIL: changed recipe: exit $rc: $err"; fail=1; }
"$r1" resume --force "$d" >/dev/null || { echo "FAIL: resume --force"; fail=1; }
git -C "$d" log -1 --format=%B | grep -q "R1-Forced: yes" || { echo "FAIL: --force not in the ledger"; fail=1; }
# bad recipe: every problem, exit 2, nothing created
printf 'name: x\nstages:\n  - name: a\n    kind: sft\n    stepz: 3\n' >"$tmp/bad.yaml"
"$r1" run "$tmp/bad.yaml" --run-dir "$tmp/bad-run" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && [ ! -e "$tmp/bad-run" ] || { echo "FAIL: bad recipe: exit $rc or run dir created"; fail=1; }
# a non-finite loss stops the stage with exit 1, says so, and keeps the earlier checkpoints:
# the sft stage starts from a model whose weights are all NaN
"$r1" init --preset tiny --out "$tmp/nanmodel" >/dev/null
python3 - "$tmp/nanmodel/model.safetensors" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
b[8 + n:] = b"\xff" * (len(b) - 8 - n)
open(sys.argv[1], "wb").write(b)
PY
sed "s|    kind: sft|    kind: sft\n    init: $tmp/nanmodel|" "$here"/recipes/run/two-stage.yaml >"$tmp/nan.yaml"
err=$("$r1" run "$tmp/nan.yaml" --run-dir "$tmp/nan-run" 2>&1 >/dev/null); rc=$?
if [ $rc -ne 1 ] || ! echo "$err" | grep -q "last good checkpoint"; then
  echo "FAIL: NaN loss: exit $rc: $err"; fail=1
elif ! "$r1" verify "$tmp/nan-run" >/dev/null || [ ! -d "$tmp/nan-run/checkpoints/pretrain/00000016" ]; then
  echo "FAIL: NaN loss: earlier checkpoints not intact"; fail=1
else echo "ok: NaN loss stops the stage (exit 1) and keeps the checkpoints"; fi

# a stage whose data do not fit its kind is refused before any work (exit 2), naming the
# file, the line and the missing field
sed 's/kind: sft/kind: reward_model/' "$here"/recipes/run/two-stage.yaml >"$tmp/rm.yaml"
cp "$here"/recipes/run/corpus.txt "$here"/recipes/run/pairs.jsonl "$tmp"/ 2>/dev/null
err=$("$r1" run "$tmp/rm.yaml" --run-dir "$tmp/rm-run" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && [ ! -e "$tmp/rm-run" ] && echo "$err" | grep -q "pairs.jsonl:1: .*'chosen'" ||
  { echo "FAIL: data of the wrong shape: exit $rc, $err"; fail=1; }
[ $fail -eq 0 ] && echo "all resume checks passed"
exit $fail
