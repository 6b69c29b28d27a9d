/* bench-generate.c - decode tokens/s with the KV cache on a backend.
 * usage: r1-bench-generate PRESET|MODEL BATCH PROMPT_LEN NEW_TOKENS
 *                          [THREADS [DTYPE [BACKEND [eager]]]]
 * BACKEND: cpu (default) or cuda; eager: decode steps op by op, not through the graphs a
 * backend that records them (cuda) replays by default (the line then says "eager").
 * MODEL is a .gguf file or an HF directory (its weights as r1 trains them, f32); a
 * preset name gets fresh random weights of that shape.  DTYPE (f32 by default, or bf16)
 * is the precision of the weight matrices generation reads (struct r1_gen_config.weights);
 * the timed run includes the bf16 conversion r1_generate does at its start.  Prints one
 * line with prefill and decode tokens/s (with "weights=bf16" before them for bf16). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/modelfile.h"

struct firsts {
    int seen, want;
    double t;
};

static double now(void);

/* Records the time at which every sequence has its first token (end of prefill). */
static void on_token(void *user, int req, int32_t tok)
{
    struct firsts *f = user;
    (void)req;
    if (tok >= 0 && f->seen < f->want && ++f->seen == f->want)
        f->t = now();
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PRESET BATCH PROMPT_LEN NEW_TOKENS [THREADS [f32|bf16 "
                "[cpu|cuda [eager]]]]\n", argv[0]);
        return 2;
    }
    const char *preset = argv[1];
    int B = atoi(argv[2]), P = atoi(argv[3]), G = atoi(argv[4]);
    int threads = argc > 5 ? atoi(argv[5]) : 0;
    const char *dtype = argc > 6 ? argv[6] : "f32";
    if (strcmp(dtype, "f32") != 0 && strcmp(dtype, "bf16") != 0) {
        fprintf(stderr, "r1-bench-generate: DTYPE is f32 or bf16, not '%s'\n", dtype);
        return 2;
    }
    enum r1_dtype wdt = strcmp(dtype, "bf16") == 0 ? R1_BF16 : R1_F32;
    const char *bname = argc > 7 ? argv[7] : "cpu";
    if (strcmp(bname, "cpu") != 0 && strcmp(bname, "cuda") != 0) {
        fprintf(stderr, "r1-bench-generate: BACKEND is cpu or cuda, not '%s'\n", bname);
        return 2;
    }
    enum r1_backend_kind bk = strcmp(bname, "cuda") == 0 ? R1_BACKEND_CUDA : R1_BACKEND_CPU;
    const char *mode = argc > 8 ? argv[8] : "";
    if (*mode && strcmp(mode, "eager") != 0) {
        fprintf(stderr, "r1-bench-generate: the 8th argument is 'eager' or nothing, not '%s'\n",
                mode);
        return 2;
    }
    int eager = *mode != 0;
    struct r1_model_config cfg;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    struct r1_generator *g = NULL;
    struct stat st;
    int rc = r1_backend_create(&be, bk, threads);
    if (!rc && stat(preset, &st) == 0) {
        rc = r1_model_open(&m, &tok, be, preset);
        const char *slash = strrchr(preset, '/');
        preset = slash && slash[1] ? slash + 1 : preset;
    } else if (!rc && !(rc = r1_model_config_preset(&cfg, preset)) &&
               !(rc = r1_model_create(&m, &cfg, be))) {
        rc = r1_model_init_weights(m, 1);
    }
    if (rc || (rc = r1_generator_create(&g, m, NULL, B, P + G, B * P)) ||
        (eager && be->ops->graph_begin && (rc = r1_generator_set_graphs(g, 0)))) {
        fprintf(stderr, "r1-bench-generate: %s\n", r1_err_last());
        return 1;
    }
    cfg = m->cfg;
    int32_t *prompt = malloc(sizeof(int32_t) * P), *out = malloc(sizeof(int32_t) * B * G);
    float *lp = malloc(sizeof(float) * B * G);
    for (int i = 0; i < P; i++)
        prompt[i] = (i * 131 + 7) % cfg.vocab_size;
    struct r1_gen_request *rq = calloc(B, sizeof(*rq));
    struct r1_gen_result *rs = calloc(B, sizeof(*rs));
    for (int i = 0; i < B; i++) {
        rq[i] = (struct r1_gen_request){prompt, P, (uint64_t)i};
        rs[i] = (struct r1_gen_result){out + (size_t)i * G, lp + (size_t)i * G, 0, 0};
    }
    /* no stop tokens: every sequence decodes exactly G tokens */
    struct r1_gen_config gc = {{1.0f, 0, 1.0f, 0.0f}, G, 1, NULL, 0, NULL, 0, wdt};
    /* a warm-up call touches every page, then the timed run: prefill ends when every
     * sequence has its first token (the callback counts the first tokens of all B) */
    struct r1_gen_config one = gc;
    one.max_new_tokens = 2;
    if (r1_generate(g, &one, rq, B, rs, NULL, NULL))
        goto fail;
    struct firsts f = {0, B, 0};
    double t0 = now();
    if (r1_generate(g, &gc, rq, B, rs, on_token, &f))
        goto fail;
    double t2 = now();
    double prefill = f.t - t0, decode = t2 - f.t;
    printf("r1 generate %s %s batch=%d prompt=%d new=%d%s%s prefill tok/s=%.1f "
           "decode tok/s=%.1f\n",
           preset, be->ops->name, B, P, G, wdt == R1_BF16 ? " weights=bf16" : "",
           eager ? " eager" : "",
           (double)B * P / prefill,
           (double)B * (G - 1) / decode);
    r1_generator_free(g);
    r1_model_free(m);
    r1_tokenizer_free(tok);
    r1_backend_free(be);
    free(prompt), free(out), free(lp), free(rq), free(rs);
    return 0;
fail:
    fprintf(stderr, "r1-bench-generate: %s\n", r1_err_last());
    return 1;
}
