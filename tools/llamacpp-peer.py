#!/usr/bin/env python3
"""llama.cpp CPU peer for bench/generate-cpu (through the PyPI package llama-cpp-python,
which builds llama.cpp from source: pip install llama-cpp-python).

Times the same work r1-bench-generate does on the same GGUF file: BATCH sequences of
PROMPT tokens prefilled in one llama_decode call, then NEW-1 decode steps of one token
per sequence (greedy, logits of every sequence read back and argmax'ed each step).
llama.cpp computes with the file's quantized weights (Q4_1/Q8_0 here); r1 dequantizes
them to f32 training weights.  Prints one line in the form of r1-bench-generate.
usage: llamacpp-peer.py GGUF BATCH PROMPT NEW THREADS
"""
import ctypes
import sys
import time

import llama_cpp as L
import numpy as np


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    path = sys.argv[1]
    B, P, G, T = (int(a) for a in sys.argv[2:6])
    L.llama_backend_init()
    quiet = L.llama_log_callback(lambda level, text, user: None)  # kept alive: C holds it
    L.llama_log_set(quiet, ctypes.c_void_p(0))
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        sys.exit("llamacpp-peer: cannot load %s" % path)
    V = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    cp = L.llama_context_default_params()
    cp.n_ctx = B * (P + G) + 16
    cp.n_batch = cp.n_ubatch = max(B * P, B, 32)
    cp.n_seq_max = B
    cp.n_threads = cp.n_threads_batch = T
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llamacpp-peer: cannot create a context")
    batch = L.llama_batch_init(max(B * P, B), 0, B)
    prompt = [(i * 131 + 7) % V for i in range(P)]

    def put(k, tok, pos, seq, logits):
        batch.token[k] = tok
        batch.pos[k] = pos
        batch.n_seq_id[k] = 1
        batch.seq_id[k][0] = seq
        batch.logits[k] = logits

    def run(new):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        k = 0
        for s in range(B):
            for p in range(P):
                put(k, prompt[p], p, s, p == P - 1)
                k += 1
        batch.n_tokens = k
        t0 = time.perf_counter()
        if L.llama_decode(ctx, batch) != 0:
            sys.exit("llamacpp-peer: llama_decode failed in the prefill")
        rows = [s * P + P - 1 for s in range(B)]
        nxt = [int(np.argmax(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, r), (V,))))
               for r in rows]
        t1 = time.perf_counter()
        for step in range(new - 1):
            for s in range(B):
                put(s, nxt[s], P + step, s, True)
            batch.n_tokens = B
            if L.llama_decode(ctx, batch) != 0:
                sys.exit("llamacpp-peer: llama_decode failed at decode step %d" % step)
            nxt = [int(np.argmax(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, s), (V,))))
                   for s in range(B)]
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    run(2)  # warm-up
    prefill, decode = run(G)
    print("llama.cpp generate %s batch=%d prompt=%d new=%d prefill tok/s=%.1f decode tok/s=%.1f"
          % (path.rsplit("/", 1)[-1], B, P, G, B * P / prefill, B * (G - 1) / decode))
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
