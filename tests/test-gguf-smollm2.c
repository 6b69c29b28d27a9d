/* test-gguf-smollm2.c - the real SmolLM2-135M-Instruct Q4_1 GGUF (tools/fetch-model
 * smollm2): loads it, checks the config, and compares r1's logits on four short prompts
 * with tests/fixtures/gguf/smollm2-logits.json (tools/gguf-ref.py's float64 numpy
 * forward, which applies llama.cpp's interleaved RoPE to the stored, permuted q/k rows).
 * Exits 77 (skipped) when the model has not been downloaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/gguf.h"
#include "core/sha256.h"
#include "tests/logits-check.h"

static char model_path[4096], fx_path[4096];

/* The tokenizer metadata a tokenizer builder reads, through the accessors. */
static void test_tokenizer_keys(void **state)
{
    (void)state;
    struct r1_gguf *g = NULL;
    assert_int_equal(r1_gguf_open(&g, model_path), 0);
    const char *const *toks, *const *merges;
    uint64_t n, nm, nt;
    assert_int_equal(r1_gguf_get_strs(g, "tokenizer.ggml.tokens", &toks, &n), 0);
    assert_int_equal(n, 49152);
    assert_string_equal(toks[1], "<|im_start|>");
    assert_string_equal(toks[198], "\xc4\x8a"); /* "Ċ", GPT-2 bytes for "\n" */
    assert_int_equal(r1_gguf_get_strs(g, "tokenizer.ggml.merges", &merges, &nm), 0);
    assert_int_equal(nm, 48900);
    assert_string_equal(merges[0], "\xc4\xa0 t"); /* "Ġ t" */
    int32_t *types = NULL;
    assert_int_equal(r1_gguf_get_i32s(g, "tokenizer.ggml.token_type", &types, &nt), 0);
    assert_int_equal(nt, 49152);
    assert_int_equal(types[1], 3);   /* control */
    assert_int_equal(types[100], 1); /* normal */
    free(types);
    const char *s;
    assert_int_equal(r1_gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
    assert_string_equal(s, "gpt2");
    assert_int_equal(r1_gguf_get_str(g, "tokenizer.ggml.pre", &s), 0);
    assert_string_equal(s, "smollm");
    assert_int_equal(r1_gguf_get_str(g, "tokenizer.chat_template", &s), 0);
    assert_non_null(strstr(s, "<|im_start|>"));
    uint32_t id;
    assert_int_equal(r1_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id), 0);
    assert_int_equal(id, 2);
    r1_gguf_close(g);
}

static void test_smollm2(void **state)
{
    (void)state;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    char hex[R1_SHA256_HEX];
    assert_int_equal(r1_sha256_file(hex, NULL, model_path), 0);
    json_error_t jerr;
    json_t *fx = json_load_file(fx_path, 0, &jerr);
    assert_non_null(fx);
    const char *want = json_string_value(json_object_get(fx, "model_sha256"));
    if (strcmp(hex, want) != 0)
        fail_msg("%s: sha256 %s, the fixture was made from %s; run tools/fetch-model smollm2",
                 model_path, hex, want);
    json_decref(fx);
    assert_int_equal(r1_backend_create(&be, R1_BACKEND_CPU, 0), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = r1_gguf_load_model(&m, be, model_path);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc)
        fail_msg("%s", r1_err_last());
    printf("loaded %s in %.2f s\n", model_path,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    const struct r1_model_config *c = &m->cfg;
    assert_int_equal(c->arch, R1_ARCH_LLAMA);
    assert_int_equal(c->n_layers, 30);
    assert_int_equal(c->hidden_size, 576);
    assert_int_equal(c->n_heads, 9);
    assert_int_equal(c->n_kv_heads, 3);
    assert_int_equal(c->head_dim, 64);
    assert_int_equal(c->ffn_size, 1536);
    assert_int_equal(c->vocab_size, 49152);
    assert_int_equal(c->max_seq_len, 8192);
    assert_true(c->rope_theta == 1e5f);
    assert_true(c->rms_eps == 1e-5f);
    assert_true(c->tie_embeddings);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_int_equal(c->pad_id, 2);
    assert_int_equal(m->n_params, 134515008);
    double diff;
    /* f32 (r1) vs float64 (numpy) over 30 layers, logits up to ~35: measured max abs
     * difference 4.1e-5 (OpenBLAS, 2 threads); 1e-3 leaves room for other BLAS builds */
    check_logits(m, fx_path, 1e-3, &diff);
    r1_model_free(m);
    r1_backend_free(be);
}

int main(void)
{
    const char *cache = getenv("R1_CACHE"), *home = getenv("HOME"), *src = getenv("R1_SRC");
    if (cache && *cache)
        snprintf(model_path, sizeof(model_path), "%s/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                 cache);
    else
        snprintf(model_path, sizeof(model_path),
                 "%s/.cache/r1/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
    snprintf(fx_path, sizeof(fx_path), "%s/tests/fixtures/gguf/smollm2-logits.json",
             src ? src : ".");
    if (access(model_path, R_OK) != 0) {
        printf("skipped: %s is missing; run tools/fetch-model smollm2 to download it\n",
               model_path);
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tokenizer_keys),
                                       cmocka_unit_test(test_smollm2)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
