#!/usr/bin/env python3
"""gguf-ref.py - reference logits of a llama / qwen2 GGUF model, for r1's parity tests.

Independent of r1's C code: the file is read with the `gguf` package (GGUFReader,
gguf.quants.dequantize) and run through a float64 numpy forward.  RoPE is applied
in each file's own convention, directly on the stored weights: llama files use
GGML's interleaved pairs (x[2i], x[2i+1]), because llama.cpp's converter permuted
attn_q / attn_k rows for it; qwen2 files use NEOX halves (x[i], x[i + D/2]).  r1
un-permutes llama rows and always rotates halves, so agreement checks that too.

Regenerate the SmolLM2 fixture (needs numpy and gguf; written with gguf 0.19, numpy 2):
    tools/fetch-model smollm2
    python3 tools/gguf-ref.py ~/.cache/r1/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        tests/fixtures/gguf/smollm2-logits.json

tools/make-gguf-fixtures.py imports forward() and logits_fixture() for its tiny models.
"""
import hashlib
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

MAGIC = "r1-gguf-logits"
VERSION = 1


def field(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    v = f.parts[f.data[0]]
    if f.types[0].name == "STRING":
        return bytes(v).decode()
    return v[0].item()


def tokens(r):
    f = r.fields["tokenizer.ggml.tokens"]
    return [bytes(f.parts[i]).decode() for i in f.data]


def load(path):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    cfg = {
        "arch": arch,
        "layers": field(r, arch + ".block_count"),
        "hidden": field(r, arch + ".embedding_length"),
        "heads": field(r, arch + ".attention.head_count"),
        "kv_heads": field(r, arch + ".attention.head_count_kv"),
        "eps": field(r, arch + ".attention.layer_norm_rms_epsilon"),
        "theta": field(r, arch + ".rope.freq_base", 10000.0),
    }
    w = {}
    for t in r.tensors:
        # numpy shape is GGUF's ne reversed: (out, in) for a matrix
        w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
            [int(x) for x in reversed(t.shape)])
    return r, cfg, w


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rope(x, theta, interleaved):
    """x (T, H, D) rotated by position t: pairs (2i, 2i+1) or (i, i + D/2), angle t·θ^(-2i/D)."""
    T, H, D = x.shape
    inv = theta ** (-np.arange(0, D, 2, dtype=np.float64) / D)  # (D/2)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # (T, D/2)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., : D // 2], x[..., D // 2:]
    ra, rb = a * c - b * s, b * c + a * s
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., : D // 2], out[..., D // 2:] = ra, rb
    return out


def forward(cfg, w, ids):
    """Logits (T, V) of one sequence of token ids, causal attention, float64."""
    H, KVH, C = cfg["heads"], cfg["kv_heads"], cfg["hidden"]
    D = C // H
    inter = cfg["arch"] == "llama"
    T = len(ids)
    x = w["token_embd.weight"][ids]  # (T, C)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["layers"]):
        p = "blk.%d." % l
        n = rmsnorm(x, w[p + "attn_norm.weight"], cfg["eps"])
        q, k, v = (n @ w[p + "attn_%s.weight" % s].T + w.get(p + "attn_%s.bias" % s, 0.0)
                   for s in "qkv")
        q = rope(q.reshape(T, H, D), cfg["theta"], inter)
        k = rope(k.reshape(T, KVH, D), cfg["theta"], inter)
        v = v.reshape(T, KVH, D)
        att = np.empty((T, H, D))
        for h in range(H):
            kh = h // (H // KVH)
            s = q[:, h, :] @ k[:, kh, :].T / np.sqrt(D) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            att[:, h, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kh, :]
        x = x + att.reshape(T, H * D) @ w[p + "attn_output.weight"].T
        n = rmsnorm(x, w[p + "ffn_norm.weight"], cfg["eps"])
        g = n @ w[p + "ffn_gate.weight"].T
        u = n @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"], cfg["eps"])
    head = w.get("output.weight", w["token_embd.weight"])
    return x @ head.T


def logits_fixture(path, prompts, regenerate, sample_ids):
    """The fixture dict: per prompt the last position's top 10 (id, logit) and the logits of
    sample_ids at every position."""
    _, cfg, w = load(path)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    out = {"magic": MAGIC, "version": VERSION, "regenerate": regenerate, "model_sha256": sha,
           "sample_ids": sample_ids, "prompts": []}
    for name, ids in prompts:
        lg = forward(cfg, w, ids)
        top = np.argsort(-lg[-1], kind="stable")[:10]
        out["prompts"].append({
            "name": name, "ids": ids,
            "top10": [[int(i), float(lg[-1, i])] for i in top],
            "samples": [[float(lg[t, i]) for i in sample_ids] for t in range(len(ids))],
        })
    return out


def smollm2_prompts(r):
    vocab = {s: i for i, s in enumerate(tokens(r))}

    def ids(*toks):
        return [vocab[t] for t in toks]
    return [
        ("capital", ids("The", "Ġcapital", "Ġof", "ĠFrance", "Ġis")),
        ("hello", ids("Hello", ",", "Ġworld")),
        ("arith", ids("1", "+", "1", "=", "2", ",", "2", "+", "2", "=")),
        ("chatml", ids("<|im_start|>", "user", "Ċ", "What", "Ġis", "Ġthe", "Ġcapital", "Ġof",
                       "ĠFrance", "?", "<|im_end|>", "Ċ", "<|im_start|>", "ass", "istant", "Ċ")),
    ]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gguf-ref.py MODEL.gguf OUT.json")
    path, out = sys.argv[1], sys.argv[2]
    prompts = smollm2_prompts(GGUFReader(path))
    regen = ("tools/fetch-model smollm2 && python3 tools/gguf-ref.py "
             "~/.cache/r1/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf " + out)
    fx = logits_fixture(path, prompts, regen, [0, 1, 2, 28, 198, 504, 4649])
    with open(out, "w") as f:
        json.dump(fx, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
