/* bench-train.c - training tokens/s (forward + backward + AdamW) on a backend.
 * usage: r1-bench-train PRESET B T STEPS [THREADS [BACKEND [PRECISION [LOSS]]]]
 *   BACKEND: cpu (default), cuda; PRECISION: f32 (default), bf16 (r1_model_set_precision)
 *   LOSS: ce (default: cross-entropy, r1_model_ce_step); pg (GRPO's clipped policy-gradient
 *   loss with old and reference log-probs and an entropy bonus, r1_model_pg_step, the loss
 *   made with the head's forward); pg-unfused (the same loss the way r1 made it before:
 *   r1_model_forward, the loss on the host (the CPU op), r1_model_backward recomputing the
 *   head's logits) - the peer of pg, same model, batch and numbers
 * Prints one line: "r1 train PRESET BACKEND PRECISION B=.. T=.. tok/s=.. ms/step=.." and, on CUDA,
 * the model FLOP utilisation the way llm.c counts it: (6·params + 12·layers·heads·head_dim·T)
 * FLOPs per token over the GPU's dense bf16 peak (known for A100, H100, H200; else from
 * R1_PEAK_TFLOPS). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PRESET B T STEPS [THREADS [cpu|cuda [f32|bf16 "
                "[ce|pg|pg-unfused]]]]\n", argv[0]);
        return 2;
    }
    const char *preset = argv[1];
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[4]);
    int threads = argc > 5 ? atoi(argv[5]) : 0;
    const char *bname = argc > 6 ? argv[6] : "cpu";
    enum r1_backend_kind bk = strcmp(bname, "cuda") == 0 ? R1_BACKEND_CUDA : R1_BACKEND_CPU;
    if (bk == R1_BACKEND_CPU && strcmp(bname, "cpu") != 0) {
        fprintf(stderr, "r1-bench-train: backend '%s' is not cpu or cuda\n", bname);
        return 2;
    }
    const char *pname = argc > 7 ? argv[7] : "f32";
    if (strcmp(pname, "f32") != 0 && strcmp(pname, "bf16") != 0) {
        fprintf(stderr, "r1-bench-train: precision '%s' is not f32 or bf16\n", pname);
        return 2;
    }
    enum r1_dtype prec = strcmp(pname, "bf16") == 0 ? R1_BF16 : R1_F32;
    const char *lname = argc > 8 ? argv[8] : "ce";
    int pg = strcmp(lname, "pg") == 0 ? 1 : strcmp(lname, "pg-unfused") == 0 ? 2 : 0;
    if (!pg && strcmp(lname, "ce") != 0) {
        fprintf(stderr, "r1-bench-train: loss '%s' is not ce, pg or pg-unfused\n", lname);
        return 2;
    }
    struct r1_model_config cfg;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_optim *o = NULL;
    struct r1_optim_config oc;
    r1_optim_config_default(&oc);
    if (r1_model_config_preset(&cfg, preset) || r1_backend_create(&be, bk, threads) ||
        r1_model_create(&m, &cfg, be) || r1_model_init_weights(m, 1) ||
        r1_model_set_precision(m, prec) || r1_model_reserve(m, B, T) || r1_optim_create(&o, m, &oc)) {
        fprintf(stderr, "r1-bench-train: %s\n", r1_err_last());
        return 1;
    }
    int N = B * T;
    int32_t *tok = malloc(sizeof(int32_t) * N), *pos = malloc(sizeof(int32_t) * N);
    int32_t *seg = malloc(sizeof(int32_t) * N), *tgt = malloc(sizeof(int32_t) * N);
    float *w = malloc(sizeof(float) * N);
    /* the policy-gradient loss's per-token inputs, and the unfused path's host buffers */
    float *adv = malloc(sizeof(float) * N), *old = malloc(sizeof(float) * N);
    float *ref = malloc(sizeof(float) * N), *lp = malloc(sizeof(float) * N);
    float *ent = malloc(sizeof(float) * N), *dlp = malloc(sizeof(float) * N);
    float *dent = malloc(sizeof(float) * N);
    struct r1_rng r = r1_rng_make(1, R1_STREAM_DATA);
    for (int i = 0; i < N; i++) {
        tok[i] = (int32_t)r1_rng_below(&r, (uint64_t)cfg.vocab_size);
        tgt[i] = (int32_t)r1_rng_below(&r, (uint64_t)cfg.vocab_size);
        pos[i] = i % T;
        seg[i] = 0;
        w[i] = pg ? 1.0f / N : 1.0f;
        adv[i] = r1_rng_uniform(&r) * 2.0f - 1.0f;
    }
    struct r1_batch b = {B, T, tok, pos, seg, tgt};
    struct r1_pg_cfg pc = {0.2f, 0.28f, 0.04f, 0.001f};
    struct r1_backend *host = NULL; /* pg-unfused's loss: the CPU op on host memory */
    if (pg) {
        if (r1_backend_create(&host, R1_BACKEND_CPU, 1) || r1_model_forward(m, &b, lp, NULL)) {
            fprintf(stderr, "r1-bench-train: %s\n", r1_err_last());
            return 1;
        }
        for (int i = 0; i < N; i++) { /* old and reference log-probs near the policy's */
            old[i] = lp[i] + 0.2f * (r1_rng_uniform(&r) - 0.5f);
            ref[i] = lp[i] + 0.1f * (r1_rng_uniform(&r) - 0.5f);
        }
    }
    struct r1_pg_tokens pt = {old, ref, adv, w};
    double loss = 0, t0 = 0;
    for (int s = 0; s < steps + 1; s++) {
        if (s == 1)
            t0 = now(); /* step 0 is warm-up */
        struct r1_pg_stats st = {0};
        int rc = 0;
        if (pg == 1) {
            rc = r1_model_pg_step(m, &b, &pc, &pt, &st);
        } else if (pg == 2) {
            rc = r1_model_forward(m, &b, lp, ent);
            if (!rc) {
                host->ops->pg_loss(host->ctx, dlp, dent, &st, lp, old, ref, ent, adv, w, &pc, N);
                rc = r1_model_backward(m, dlp, dent);
            }
        } else {
            rc = r1_model_ce_step(m, &b, w, N, &loss);
        }
        if (pg)
            loss = st.loss;
        if (rc || r1_optim_step(o)) {
            fprintf(stderr, "r1-bench-train: %s\n", r1_err_last());
            return 1;
        }
    }
    double dt = (now() - t0) / steps;
    printf("r1 train %s %s %s %s params=%lld B=%d T=%d tok/s=%.1f ms/step=%.1f loss=%.4f",
           preset, be->ops->name, pname, lname, (long long)m->n_params, B, T, N / dt, dt * 1e3,
           loss);
    if (bk == R1_BACKEND_CUDA) {
        const char *dev = r1_backend_device(be);
        double peak = getenv("R1_PEAK_TFLOPS") ? atof(getenv("R1_PEAK_TFLOPS")) * 1e12
                      : strstr(dev, "H100") || strstr(dev, "H200") ? 989.4e12
                      : strstr(dev, "A100")                        ? 312e12
                                                                   : 0;
        double fpt = 6.0 * (double)m->n_params +
                     12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * (double)T;
        if (peak > 0)
            printf(" mfu=%.1f%% (%s, bf16 peak %.0f TFLOPS)", 100.0 * fpt * N / dt / peak, dev,
                   peak / 1e12);
        else
            printf(" (%s: set R1_PEAK_TFLOPS for the MFU)", dev);
    }
    printf("\n");
    r1_optim_free(o);
    r1_model_free(m);
    r1_backend_free(be);
    if (host)
        r1_backend_free(host);
    free(tok), free(pos), free(seg), free(tgt), free(w);
    free(adv), free(old), free(ref), free(lp), free(ent), free(dlp), free(dent);
    return 0;
}
