#!/usr/bin/env python3
"""make-gguf-fixtures.py - small GGUF files for tests/test-gguf.c, written with the
reference `gguf` package (GGUFWriter, gguf.quants), so r1's reader and dequantizer are
checked against an independent implementation.

Writes into DIR (tests/fixtures/gguf):
  quant.gguf                one tensor per ggml type r1 reads (F32, F16, BF16, Q8_0, Q4_0,
                            Q4_1, Q5_0, Q5_1 quantized from random values by
                            gguf.quants.quantize; Q4_K, Q6_K as random blocks with sane f16
                            scales, since the package only dequantizes K-quants), plus
                            metadata of every value type for the accessor tests.
  quant-expected.safetensors  gguf.quants.dequantize of each tensor, f32, same names.
  tiny-llama.gguf           a random 2-layer llama (untied head, GQA, mixed types) with
                            attn_q / attn_k rows permuted exactly as llama.cpp's
                            convert_hf_to_gguf LlamaModel.permute does.
  tiny-qwen2.gguf           a random 1-layer qwen2 (tied, q/k/v biases, Q4_K and Q6_K
                            matrices), not permuted.
  tiny-*-logits.json        tools/gguf-ref.py's float64 numpy forward of those files.

Regenerate (numpy, gguf 0.19, safetensors; seeded, so the output is reproducible):
    python3 tools/make-gguf-fixtures.py tests/fixtures/gguf
Fixture version 1; tests/test-gguf.c spells out the metadata values it checks.
"""
import importlib.util
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFWriter, GGUFReader
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

spec = importlib.util.spec_from_file_location(
    "gguf_ref", os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf-ref.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

rng = np.random.default_rng(20240607)


def kquant_blocks(qtype, rows, cols, scale=1.0):
    """Random K-quant rows (rows, cols/256 blocks) as bytes with finite small f16 scales."""
    nb = cols // 256
    if qtype == Q.Q4_K:
        b = rng.integers(0, 256, size=(rows, nb, 144), dtype=np.uint8)
        d = (rng.standard_normal((rows, nb, 2)) * 0.01 * scale).astype(np.float16)
        b[:, :, 0:4] = d.view(np.uint8).reshape(rows, nb, 4)
    else:  # Q6_K: ql[128] qh[64] scales[16] (int8) d
        b = rng.integers(0, 256, size=(rows, nb, 210), dtype=np.uint8)
        d = (rng.standard_normal((rows, nb, 1)) * 0.001 * scale).astype(np.float16)
        b[:, :, 208:210] = d.view(np.uint8).reshape(rows, nb, 2)
    return b.reshape(rows, -1)


def quant(arr, qtype):
    """(bytes or array to write, raw_dtype) for a float32 array in qtype."""
    if qtype == Q.F32:
        return arr.astype(np.float32), None
    if qtype == Q.F16:
        return arr.astype(np.float16), None
    if qtype in (Q.Q4_K, Q.Q6_K):  # the package cannot quantize these: random blocks
        return kquant_blocks(qtype, arr.shape[0], arr.shape[1], 0.05), qtype
    return quantize(arr.astype(np.float32), qtype), qtype


def add(w, name, arr, qtype):
    data, raw = quant(arr, qtype)
    w.add_tensor(name, data, raw_dtype=raw)


def write_quant(d):
    w = GGUFWriter(os.path.join(d, "quant.gguf"), "r1test")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.25)
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", -1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    w.add_array("test.ints", [3, -1, 7])
    w.add_array("test.strs", ["a", "", "Ġworld"])
    w.add_array("test.floats", [0.5, 2.0])
    tensors = {}
    for qt in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        x = (rng.standard_normal((3, 256)) * 2.0).astype(np.float32)
        tensors[qt.name] = quant(x, qt)
    for qt in (Q.Q4_K, Q.Q6_K):
        tensors[qt.name] = (kquant_blocks(qt, 3, 512), qt)
    tensors["vec"] = (np.arange(5, dtype=np.float32) - 2.5, None)
    for name, (data, raw) in tensors.items():
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = GGUFReader(os.path.join(d, "quant.gguf"))
    expected = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32).reshape(
        [int(x) for x in reversed(t.shape)]) for t in r.tensors}
    save_file(expected, os.path.join(d, "quant-expected.safetensors"))


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute, verbatim in numpy."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_model(d, arch, cfg, types, tied, bias):
    V, C, L, H, KVH, F = (cfg[k] for k in ("vocab", "hidden", "layers", "heads", "kv", "ffn"))
    D = C // H
    path = os.path.join(d, "tiny-%s.gguf" % arch)
    w = GGUFWriter(path, arch)
    w.add_block_count(L)
    w.add_context_length(cfg["ctx"])
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KVH)
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(D)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<t%d>" % i for i in range(V)])
    w.add_token_types([1] * V)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def mat(rows, cols, scale=0.3):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    add(w, "token_embd.weight", mat(V, C, 1.0), types["embd"])
    for l in range(L):
        p = "blk.%d." % l
        wq, wk = mat(H * D, C), mat(KVH * D, C)
        bq, bk = (rng.standard_normal(H * D) * 0.2).astype(np.float32), (
            rng.standard_normal(KVH * D) * 0.2).astype(np.float32)
        if arch == "llama":  # what convert_hf_to_gguf does to q_proj / k_proj (and biases)
            wq, wk = permute(wq, H, H), permute(wk, H, KVH)
            bq, bk = permute(bq, H, H), permute(bk, H, KVH)
        add(w, p + "attn_norm.weight", 1 + 0.1 * mat(1, C, 1.0)[0], Q.F32)
        add(w, p + "attn_q.weight", wq, types["q"])
        add(w, p + "attn_k.weight", wk, types["k"])
        add(w, p + "attn_v.weight", mat(KVH * D, C), types["v"])
        if bias:
            add(w, p + "attn_q.bias", bq, Q.F32)
            add(w, p + "attn_k.bias", bk, Q.F32)
            add(w, p + "attn_v.bias", (rng.standard_normal(KVH * D) * 0.2).astype(np.float32),
                Q.F32)
        add(w, p + "attn_output.weight", mat(C, H * D), types["o"])
        add(w, p + "ffn_norm.weight", 1 + 0.1 * mat(1, C, 1.0)[0], Q.F32)
        add(w, p + "ffn_gate.weight", mat(F, C), types["gate"])
        add(w, p + "ffn_up.weight", mat(F, C), types["up"])
        add(w, p + "ffn_down.weight", mat(C, F), types["down"])
    add(w, "output_norm.weight", 1 + 0.1 * mat(1, C, 1.0)[0], Q.F32)
    if not tied:
        add(w, "output.weight", mat(V, C), types["out"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    prompts = [("a", [1, 5, 9, 12, 3, 7, 40, 41]), ("b", [1, 63, 0, 2]), ("c", [17])]
    fx = ref.logits_fixture(path, prompts, "python3 tools/make-gguf-fixtures.py " + d,
                            list(range(V)))
    with open(os.path.join(d, "tiny-%s-logits.json" % arch), "w") as f:
        json.dump(fx, f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-gguf-fixtures.py DIR")
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    write_quant(d)
    write_model(d, "llama", dict(vocab=64, hidden=64, layers=2, heads=4, kv=2, ffn=96, ctx=128,
                                 theta=10000.0),
                dict(embd=Q.Q8_0, q=Q.Q4_0, k=Q.Q4_1, v=Q.Q5_0, o=Q.Q5_1, gate=Q.F16,
                     up=Q.BF16, down=Q.Q8_0, out=Q.Q8_0), tied=False, bias=False)
    write_model(d, "qwen2", dict(vocab=64, hidden=256, layers=1, heads=4, kv=1, ffn=256,
                                 ctx=96, theta=1e6),
                dict(embd=Q.Q8_0, q=Q.Q4_K, k=Q.Q6_K, v=Q.Q8_0, o=Q.Q4_K, gate=Q.Q6_K,
                     up=Q.Q5_1, down=Q.Q4_K), tied=True, bias=True)


if __name__ == "__main__":
    main()
