#!/usr/bin/env bash
# convert-cli.sh R1 SRC - `r1 convert`: a GGUF file and an HF dir convert to HF dirs
# (config, weights, shards, generation config); malformed input is exit 2 with one line
# on stderr and leaves neither OUT nor a temporary OUT.tmp-* behind.
set -u
r1=$1
fx=$2/tests/fixtures/gguf
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # expected-status description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' "$tmp/out" "$tmp/err"; fail=1
  else
    echo "ok: $what"
  fi
}
# a failed convert: exit 2, exactly one line naming IN, nothing left behind
bad() { # description IN pattern
  check 2 "$1" "$r1" convert "$2" "$tmp/o-bad"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL: $1: stderr is not one line"; cat "$tmp/err"; fail=1; }
  grep -q "$3" "$tmp/err" || { echo "FAIL: $1: stderr lacks '$3'"; cat "$tmp/err"; fail=1; }
  ls -d "$tmp"/o-bad* >/dev/null 2>&1 && { echo "FAIL: $1 left $(ls -d "$tmp"/o-bad*)"; fail=1; }
}

check 0 "gguf to hf dir" "$r1" convert "$fx/tiny-llama.gguf" "$tmp/llama"
for f in config.json model.safetensors generation_config.json; do
  [ -f "$tmp/llama/$f" ] || { echo "FAIL: convert wrote no $f"; fail=1; }
done
grep -q '"LlamaForCausalLM"' "$tmp/llama/config.json" || { echo "FAIL: architectures"; fail=1; }
grep -q '"tie_word_embeddings": false' "$tmp/llama/config.json" || { echo "FAIL: tie"; fail=1; }
check 0 "qwen2 gguf, f16" "$r1" convert "$fx/tiny-qwen2.gguf" "$tmp/qwen" --dtype f16
grep -q '"Qwen2ForCausalLM"' "$tmp/qwen/config.json" || { echo "FAIL: qwen2 architectures"; fail=1; }
grep -q '"torch_dtype": "float16"' "$tmp/qwen/config.json" || { echo "FAIL: f16 dtype"; fail=1; }
echo '{"chat_template": "x"}' >"$tmp/llama/tokenizer_config.json"
check 0 "hf dir to sharded bf16 hf dir" "$r1" convert "$tmp/llama" "$tmp/shard" --dtype bf16 \
  --max-shard-size 40KB
# ~82 kB of bf16 weights in 40 kB shards: 3 or more files, no model.safetensors
n=$(ls "$tmp/shard" | grep -c '^model-0000[0-9]-of-0000[0-9].safetensors$')
[ -f "$tmp/shard/model.safetensors.index.json" ] && [ "$n" -ge 3 ] && [ ! -e "$tmp/shard/model.safetensors" ] \
  || { echo "FAIL: no shards"; ls "$tmp/shard"; fail=1; }
cmp -s "$tmp/llama/tokenizer_config.json" "$tmp/shard/tokenizer_config.json" \
  || { echo "FAIL: tokenizer_config.json not copied"; fail=1; }
check 0 "sharded dir back to one file" "$r1" convert "$tmp/shard" "$tmp/joined"
[ -f "$tmp/joined/model.safetensors" ] || { echo "FAIL: sharded dir did not load"; fail=1; }

check 2 "OUT exists" "$r1" convert "$fx/tiny-llama.gguf" "$tmp/llama"
check 2 "bad --dtype" "$r1" convert "$fx/tiny-llama.gguf" "$tmp/x" --dtype f8
check 2 "bad --max-shard-size" "$r1" convert "$fx/tiny-llama.gguf" "$tmp/x" --max-shard-size 5XB
check 2 "one argument" "$r1" convert "$fx/tiny-llama.gguf"
bad "missing IN" "$tmp/nope.gguf" "nope.gguf"
cp "$fx/tiny-llama.gguf" "$tmp/magic.gguf"
printf 'GGUX' | dd of="$tmp/magic.gguf" conv=notrunc status=none
bad "bad magic" "$tmp/magic.gguf" "magic"
head -c 600 "$fx/tiny-llama.gguf" >"$tmp/trunc.gguf"
bad "truncated" "$tmp/trunc.gguf" "truncated"
size=$(wc -c <"$fx/tiny-llama.gguf")
head -c $((size - 200)) "$fx/tiny-llama.gguf" >"$tmp/short.gguf"
bad "tensor past end" "$tmp/short.gguf" "past the end"
bad "not an r1 architecture" "$fx/quant.gguf" "r1test"
mkdir "$tmp/empty"
bad "dir without config" "$tmp/empty" "config.json"
exit $fail
