#!/usr/bin/env python3
"""PyTorch CPU peer for bench/train-cpu and bench/generate-cpu.

Builds the same decoder shape as r1's presets in plain PyTorch (fp32, same
layer math: RMSNorm, GQA attention with RoPE, SwiGLU, tied head) and times
  train:    forward + backward + AdamW on random tokens (tokens/s)
  generate: KV-cache decode at a given batch (tokens/s)
Prints one line in the same form as the r1 benchmark binaries.
usage: torch-peer.py train PRESET B T STEPS THREADS [DEVICE [DTYPE]]
       torch-peer.py generate PRESET BATCH PROMPT NEW THREADS [DEVICE [DTYPE]]
DEVICE: cpu (default) or cuda; DTYPE: fp32 (default; TF32 off, r1's precision) or bf16
(autocast, the precision the GPU targets are set in).
"""
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(V=264, C=64, L=2, H=4, KV=2, D=16, FF=192, theta=1e4),
    "small": dict(V=264, C=256, L=4, H=8, KV=4, D=32, FF=704, theta=1e4),
    "smollm2-135m": dict(V=49152, C=576, L=30, H=9, KV=3, D=64, FF=1536, theta=1e5),
    "qwen2.5-0.5b": dict(V=151936, C=896, L=24, H=14, KV=2, D=64, FF=4864, theta=1e6),
}


class Block(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        C, H, KV, D, FF = p["C"], p["H"], p["KV"], p["D"], p["FF"]
        self.H, self.KV, self.D = H, KV, D
        self.n1 = torch.nn.RMSNorm(C, eps=1e-5)
        self.q = torch.nn.Linear(C, H * D, bias=False)
        self.k = torch.nn.Linear(C, KV * D, bias=False)
        self.v = torch.nn.Linear(C, KV * D, bias=False)
        self.o = torch.nn.Linear(H * D, C, bias=False)
        self.n2 = torch.nn.RMSNorm(C, eps=1e-5)
        self.g = torch.nn.Linear(C, FF, bias=False)
        self.u = torch.nn.Linear(C, FF, bias=False)
        self.d = torch.nn.Linear(FF, C, bias=False)

    def forward(self, x, cos, sin, cache=None, start=0):
        B, T, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.H, self.D).transpose(1, 2)
        k = self.k(h).view(B, T, self.KV, self.D).transpose(1, 2)
        v = self.v(h).view(B, T, self.KV, self.D).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:
            cache[0][:, :, start:start + T] = k
            cache[1][:, :, start:start + T] = v
            k, v = cache[0][:, :, :start + T], cache[1][:, :, :start + T]
        rep = self.H // self.KV
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=(cache is None or T > 1))
        x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        h = self.n2(x)
        return x + self.d(F.silu(self.g(h)) * self.u(h))


def rope(x, cos, sin):
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Model(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.emb = torch.nn.Embedding(p["V"], p["C"])
        self.blocks = torch.nn.ModuleList(Block(p) for _ in range(p["L"]))
        self.nf = torch.nn.RMSNorm(p["C"], eps=1e-5)

    def tables(self, start, T):
        D = self.p["D"]
        inv = 1.0 / (self.p["theta"] ** (torch.arange(0, D, 2).float() / D))
        ang = torch.arange(start, start + T).float()[:, None] * inv[None]
        return ang.cos(), ang.sin()

    def forward(self, idx, caches=None, start=0):
        cos, sin = self.tables(start, idx.shape[1])
        x = self.emb(idx)
        for i, b in enumerate(self.blocks):
            x = b(x, cos, sin, None if caches is None else caches[i], start)
        return self.nf(x) @ self.emb.weight.T


DEV = "cpu"
DTYPE = "fp32"


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def autocast():
    return torch.autocast(DEV, dtype=torch.bfloat16, enabled=DTYPE == "bf16")


def train(preset, B, T, steps):
    p = PRESETS[preset]
    m = Model(p).to(DEV)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, p["V"], (B, T), device=DEV)
    y = torch.randint(0, p["V"], (B, T), device=DEV)
    for s in range(steps + 1):
        if s == 1:
            sync()
            t0 = time.perf_counter()
        with autocast():
            loss = F.cross_entropy(m(x).view(-1, p["V"]).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
    sync()
    dt = (time.perf_counter() - t0) / steps
    print(f"torch train {preset} {DEV} {DTYPE} B={B} T={T} tok/s={B * T / dt:.1f} "
          f"ms/step={dt * 1e3:.1f}")


@torch.no_grad()
def generate(preset, B, P, G):
    p = PRESETS[preset]
    m = Model(p).to(DEV)
    caches = [(torch.zeros(B, p["KV"], P + G, p["D"], device=DEV),
               torch.zeros(B, p["KV"], P + G, p["D"], device=DEV)) for _ in range(p["L"])]
    idx = torch.randint(0, p["V"], (B, P), device=DEV)
    sync()
    t0 = time.perf_counter()
    with autocast():
        logits = m(idx, caches, 0)
    sync()
    t1 = time.perf_counter()
    tok = torch.multinomial(F.softmax(logits[:, -1].float(), -1), 1)
    for i in range(G - 1):
        with autocast():
            logits = m(tok, caches, P + i)
        tok = torch.multinomial(F.softmax(logits[:, -1].float(), -1), 1)
    sync()
    t2 = time.perf_counter()
    print(f"torch generate {preset} {DEV} {DTYPE} batch={B} prompt={P} new={G} "
          f"prefill tok/s={B * P / (t1 - t0):.1f} decode tok/s={B * (G - 1) / (t2 - t1):.1f}")


if __name__ == "__main__":
    mode, preset = sys.argv[1], sys.argv[2]
    a, b, c, threads = map(int, sys.argv[3:7])
    DEV = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    DTYPE = sys.argv[8] if len(sys.argv) > 8 else "fp32"
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    train(preset, a, b, c) if mode == "train" else generate(preset, a, b, c)
