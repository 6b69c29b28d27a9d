/* test-gguf.c - the GGUF reader against the reference `gguf` package: metadata of every
 * type, dequantization of every ggml type r1 reads, malformed files, tiny llama / qwen2
 * models whose logits match a float64 numpy forward, and GGUF → HF dir round trips
 * (one file, shards, f16, bf16).
 *
 * Fixtures: tests/fixtures/gguf, written by tools/make-gguf-fixtures.py (see there to
 * regenerate). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/file.h"
#include "core/gguf.h"
#include "core/hfdir.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "tests/logits-check.h"

static struct r1_backend *be;
static char fixdir[4096], tmpdir[4096];

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("R1_SRC");
    snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/gguf", src ? src : ".");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/r1-test-gguf-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return r1_backend_create(&be, R1_BACKEND_CPU, 0);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    r1_backend_free(be);
    return 0;
}

static void fixture(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", fixdir, name);
}

static void test_metadata(void **state)
{
    (void)state;
    char path[4200];
    fixture(path, sizeof(path), "quant.gguf");
    struct r1_gguf *g = NULL;
    assert_int_equal(r1_gguf_open(&g, path), 0);
    assert_int_equal(g->version, 3);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    bool b;
    const char *s;
    assert_int_equal(r1_gguf_get_u32(g, "test.u8", &u32), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(r1_gguf_get_i32(g, "test.i8", &i32), 0);
    assert_int_equal(i32, -100);
    assert_int_equal(r1_gguf_get_u32(g, "test.u16", &u32), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(r1_gguf_get_i32(g, "test.i16", &i32), 0);
    assert_int_equal(i32, -30000);
    assert_int_equal(r1_gguf_get_u32(g, "test.u32", &u32), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(r1_gguf_get_i32(g, "test.u32", &i32), R1_EFORMAT); /* does not fit */
    assert_int_equal(r1_gguf_get_i32(g, "test.i32", &i32), 0);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(r1_gguf_get_u32(g, "test.i32", &u32), R1_EFORMAT); /* negative */
    assert_int_equal(r1_gguf_get_u64(g, "test.u64", &u64), 0);
    assert_true(u64 == (1ull << 40));
    assert_int_equal(r1_gguf_get_u32(g, "test.u64", &u32), R1_EFORMAT);
    assert_int_equal(r1_gguf_find_kv(g, "test.i64")->v.i, -(1ll << 40));
    assert_int_equal(r1_gguf_get_f32(g, "test.f32", &f), 0);
    assert_true(f == 0.25f);
    assert_int_equal(r1_gguf_get_f32(g, "test.f64", &f), 0);
    assert_true(f == -1.5f);
    assert_int_equal(r1_gguf_get_bool(g, "test.bool", &b), 0);
    assert_true(b);
    assert_int_equal(r1_gguf_get_str(g, "test.str", &s), 0);
    assert_string_equal(s, "h\xc3\xa9llo");
    assert_int_equal(r1_gguf_get_str(g, "general.architecture", &s), 0);
    assert_string_equal(s, "r1test");
    /* wrong type and missing key: R1_EFORMAT naming the file and the key */
    assert_int_equal(r1_gguf_get_str(g, "test.u8", &s), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "test.u8"));
    assert_non_null(strstr(r1_err_last(), path));
    assert_int_equal(r1_gguf_get_u32(g, "no.such.key", &u32), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "no.such.key"));
    assert_false(r1_gguf_has(g, "no.such.key"));
    /* arrays */
    int32_t *ints = NULL;
    uint64_t n = 0;
    assert_int_equal(r1_gguf_get_i32s(g, "test.ints", &ints, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ints[0], 3);
    assert_int_equal(ints[1], -1);
    assert_int_equal(ints[2], 7);
    free(ints);
    const char *const *strs;
    assert_int_equal(r1_gguf_get_strs(g, "test.strs", &strs, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(strs[0], "a");
    assert_string_equal(strs[1], "");
    assert_string_equal(strs[2], "\xc4\xa0world");
    struct r1_gguf_array a;
    assert_int_equal(r1_gguf_get_array(g, "test.floats", R1_GGUF_F32, &a), 0);
    assert_int_equal(a.n, 2);
    assert_true(((const float *)a.data)[1] == 2.0f);
    assert_int_equal(r1_gguf_get_array(g, "test.floats", R1_GGUF_STRING, &a), R1_EFORMAT);
    assert_int_equal(r1_gguf_get_strs(g, "test.ints", &strs, &n), R1_EFORMAT);
    assert_int_equal(r1_gguf_get_i32s(g, "test.strs", &ints, &n), R1_EFORMAT);
    r1_gguf_close(g);
}

/* Every tensor of quant.gguf dequantizes to the values gguf.quants.dequantize gave. */
static void test_dequant(void **state)
{
    (void)state;
    char path[4200], epath[4200];
    fixture(path, sizeof(path), "quant.gguf");
    fixture(epath, sizeof(epath), "quant-expected.safetensors");
    struct r1_gguf *g = NULL;
    struct r1_st_file *st = NULL;
    assert_int_equal(r1_gguf_open(&g, path), 0);
    assert_int_equal(r1_st_open(&st, epath), 0);
    static const char *const types[] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0", "Q4_1",
                                        "Q5_0", "Q5_1", "Q4_K", "Q6_K", "vec"};
    assert_int_equal(g->n_tensors, 11);
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        const struct r1_gguf_tensor *t = r1_gguf_find_tensor(g, types[k]);
        assert_non_null(t);
        if (k < 10)
            assert_string_equal(r1_ggml_type_name(t->type), types[k]);
        const struct r1_st_entry *e = r1_st_find(st, types[k]);
        assert_non_null(e);
        int64_t n = r1_gguf_tensor_numel(t);
        /* GGUF ne is the safetensors shape reversed */
        assert_int_equal(e->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(e->shape[d], t->ne[t->ndim - 1 - d]);
        float *got = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(r1_gguf_read_f32(g, t, got), 0);
        assert_int_equal(r1_st_read_f32(st, e, want, n), 0);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) /* same float operations as the package: exact */
            if (got[i] != want[i] && bad++ < 3)
                printf("%s[%lld]: got %.9g want %.9g\n", types[k], (long long)i, got[i], want[i]);
        assert_int_equal(bad, 0);
        free(got);
        free(want);
    }
    assert_string_equal(r1_ggml_type_name(10), "Q2_K");
    assert_int_equal(r1_ggml_block_size(10), 0);
    r1_st_close(st);
    r1_gguf_close(g);
}

/* ---- malformed files ---------------------------------------------------------- */

static char *good;
static size_t good_len;

static size_t find(const char *needle, size_t n)
{
    for (size_t i = 0; i + n <= good_len; i++)
        if (memcmp(good + i, needle, n) == 0)
            return i;
    fail_msg("fixture lacks the bytes looked for");
    return 0;
}

/* Position just after the length-prefixed name s in the file. */
static size_t after_name(const char *s)
{
    char buf[64];
    uint64_t n = strlen(s);
    memcpy(buf, &n, 8);
    memcpy(buf + 8, s, n);
    return find(buf, 8 + n) + 8 + n;
}

/* Writes the first len bytes of good, with patch (plen bytes) at off, and checks that
 * opening it fails with R1_EFORMAT naming the file and containing word. */
static void expect_bad(const char *name, size_t len, size_t off, const void *patch, size_t plen,
                       const char *word)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.gguf", tmpdir, name);
    char *buf = malloc(good_len);
    memcpy(buf, good, good_len);
    if (patch)
        memcpy(buf + off, patch, plen);
    assert_int_equal(r1_file_write_atomic(path, buf, len), 0);
    free(buf);
    struct r1_gguf *g = NULL;
    int rc = r1_gguf_open(&g, path);
    if (rc != R1_EFORMAT || !strstr(r1_err_last(), path) || !strstr(r1_err_last(), word))
        fail_msg("%s: rc %d, message '%s' (want R1_EFORMAT naming the file and '%s')", name, rc,
                 r1_err_last(), word);
    assert_null(g);
    assert_null(strchr(r1_err_last(), '\n'));
}

static void test_malformed(void **state)
{
    (void)state;
    char path[4200];
    fixture(path, sizeof(path), "quant.gguf");
    assert_int_equal(r1_file_read(path, &good, &good_len), 0);
    uint32_t u32;
    uint64_t u64;
    expect_bad("magic", good_len, 0, "GGUX", 4, "magic");
    u32 = 1;
    expect_bad("v1", good_len, 4, &u32, 4, "version 1");
    u32 = 4;
    expect_bad("v4", good_len, 4, &u32, 4, "version 4");
    u32 = 0x03000000; /* a big-endian file */
    expect_bad("bigendian", good_len, 4, &u32, 4, "big-endian");
    expect_bad("empty", 0, 0, NULL, 0, "empty");
    expect_bad("trunc-magic", 3, 0, NULL, 0, "truncated");
    expect_bad("trunc-header", 20, 0, NULL, 0, "truncated");
    size_t strs = after_name("test.strs");
    expect_bad("trunc-meta", strs + 10, 0, NULL, 0, "test.strs");
    size_t vec = after_name("vec");
    expect_bad("trunc-tensors", vec + 6, 0, NULL, 0, "vec");
    struct r1_gguf *g = NULL;
    assert_int_equal(r1_gguf_open(&g, path), 0);
    size_t vec_data = (size_t)((const uint8_t *)r1_gguf_find_tensor(g, "vec")->data - g->map);
    r1_gguf_close(g);
    expect_bad("trunc-data", vec_data + 10, 0, NULL, 0, "past the end");
    u64 = 1ull << 40; /* the first key's length */
    expect_bad("keylen", good_len, 24, &u64, 8, "past the end");
    size_t sval = after_name("test.str") + 4; /* type, then the string's length */
    expect_bad("strlen", good_len, sval, &u64, 8, "test.str");
    size_t ints = after_name("test.ints") + 8; /* type ARRAY, element type, then the count */
    u64 = 1ull << 50;
    expect_bad("arraylen", good_len, ints, &u64, 8, "test.ints");
    u32 = 99;
    expect_bad("valtype", good_len, after_name("test.u8"), &u32, 4, "test.u8");
    /* vec's info: n_dims u32, dims u64[1], type u32, offset u64 */
    u32 = 5;
    expect_bad("dims", good_len, vec, &u32, 4, "dimensions");
    u32 = 10;
    expect_bad("qtype", good_len, vec + 12, &u32, 4, "Q2_K");
    u32 = 77;
    expect_bad("qtype-unknown", good_len, vec + 12, &u32, 4, "type 77");
    uint64_t vec_off;
    memcpy(&vec_off, good + vec + 16, 8);
    u64 = vec_off + 32 * 1000;
    expect_bad("past-end", good_len, vec + 16, &u64, 8, "past the end");
    u64 = vec_off + 4;
    expect_bad("misaligned", good_len, vec + 16, &u64, 8, "alignment");
    u64 = 0; /* on top of the first tensor */
    expect_bad("overlap", good_len, vec + 16, &u64, 8, "overlap");
    u64 = 100000; /* 100000 × 5 floats: past the end */
    expect_bad("bigdim", good_len, vec + 4, &u64, 8, "vec");
    free(good);
    good = NULL;
}

/* ---- tiny models ---------------------------------------------------------------- */

static void test_tiny_llama(void **state)
{
    (void)state;
    char path[4200], fx[4200];
    fixture(path, sizeof(path), "tiny-llama.gguf");
    fixture(fx, sizeof(fx), "tiny-llama-logits.json");
    struct r1_model *m = NULL;
    assert_int_equal(r1_gguf_load_model(&m, be, path), 0);
    const struct r1_model_config *c = &m->cfg;
    assert_int_equal(c->arch, R1_ARCH_LLAMA);
    assert_int_equal(c->vocab_size, 64);
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->n_layers, 2);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->ffn_size, 96);
    assert_int_equal(c->max_seq_len, 128);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_int_equal(c->pad_id, -1);
    assert_false(c->tie_embeddings);
    assert_false(c->qkv_bias);
    assert_true(c->rope_theta == 10000.0f);
    assert_true(c->rms_eps == 1e-5f);
    double diff;
    /* f32 forward vs float64 numpy: measured max diff 7.0e-6 on logits of size ~6 */
    check_logits(m, fx, 1e-4, &diff);
    r1_model_free(m);
}

static void test_tiny_qwen2(void **state)
{
    (void)state;
    char path[4200], fx[4200];
    fixture(path, sizeof(path), "tiny-qwen2.gguf");
    fixture(fx, sizeof(fx), "tiny-qwen2-logits.json");
    struct r1_model *m = NULL;
    assert_int_equal(r1_gguf_load_model(&m, be, path), 0);
    assert_int_equal(m->cfg.arch, R1_ARCH_QWEN2);
    assert_true(m->cfg.tie_embeddings);
    assert_true(m->cfg.qkv_bias);
    assert_int_equal(m->cfg.n_kv_heads, 1);
    assert_int_equal(m->cfg.head_dim, 64);
    assert_true(m->cfg.rope_theta == 1e6f);
    double diff;
    /* logits of size ~40: measured max diff 4.1e-5 */
    check_logits(m, fx, 1e-3, &diff);
    r1_model_free(m);
}

static void test_name_map(void **state)
{
    (void)state;
    char buf[128];
    static const char *const pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
        {"model.layers.12.self_attn.k_proj.bias", "blk.12.attn_k.bias"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight"},
        {"model.layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight"},
        {"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"},
        {"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight"},
        {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        assert_int_equal(r1_gguf_name_from_hf(buf, sizeof(buf), pairs[i][0]), 0);
        assert_string_equal(buf, pairs[i][1]);
    }
    assert_int_equal(r1_gguf_name_from_hf(buf, sizeof(buf), "score.weight"), R1_EINVAL);
}

/* A model that is not what the metadata promises: a shape mismatch names the tensor. */
static void test_shape_mismatch(void **state)
{
    (void)state;
    char path[4200], bad[4200];
    fixture(path, sizeof(path), "tiny-llama.gguf");
    assert_int_equal(r1_file_read(path, &good, &good_len), 0);
    /* feed_forward_length 96 → 64: the ffn tensors no longer fit */
    size_t at = after_name("llama.feed_forward_length");
    uint32_t t, v;
    memcpy(&t, good + at, 4);
    assert_int_equal(t, R1_GGUF_U32);
    memcpy(&v, good + at + 4, 4);
    assert_int_equal(v, 96);
    v = 64;
    memcpy(good + at + 4, &v, 4);
    snprintf(bad, sizeof(bad), "%s/ffn.gguf", tmpdir);
    assert_int_equal(r1_file_write_atomic(bad, good, good_len), 0);
    struct r1_model *m = NULL;
    assert_int_equal(r1_gguf_load_model(&m, be, bad), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), bad));
    assert_non_null(strstr(r1_err_last(), "blk.0.ffn_"));
    assert_null(m);
    free(good);
    good = NULL;
}

/* ---- GGUF → HF dir ---------------------------------------------------------------- */

static float *weights(const struct r1_model *m)
{
    float *h = malloc(m->params.cap);
    m->be->ops->download(m->be->ctx, h, m->param_mem, m->params.cap);
    return h;
}

/* The shards model.safetensors.index.json of dir names: each exists, is named
 * model-0000k-of-0000n, and total_size adds up.  Returns n. */
static int check_index(const char *dir, const struct r1_model *m, enum r1_dtype dt)
{
    char path[4400], want[64];
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    json_error_t jerr;
    json_t *idx = json_load_file(path, 0, &jerr);
    assert_non_null(idx);
    json_t *map = json_object_get(idx, "weight_map");
    assert_int_equal(json_object_size(map), m->n_tensors);
    const char *names[64];
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const char *f = json_string_value(json_object_get(map, m->tensors[i].name));
        assert_non_null(f);
        if (n == 0 || strcmp(names[n - 1], f) != 0) {
            assert_true(n < 64);
            names[n++] = f;
        }
    }
    uint64_t total = 0;
    for (int i = 0; i < m->n_tensors; i++)
        total += (uint64_t)r1_tensor_numel(&m->tensors[i].w) * r1_dtype_size(dt);
    json_t *meta = json_object_get(idx, "metadata");
    assert_int_equal(json_integer_value(json_object_get(meta, "total_size")), total);
    for (int k = 0; k < n; k++) {
        snprintf(want, sizeof(want), "model-%05d-of-%05d.safetensors", k + 1, n);
        assert_string_equal(names[k], want);
        snprintf(path, sizeof(path), "%s/%s", dir, want);
        assert_int_equal(access(path, F_OK), 0);
    }
    json_decref(idx);
    return n;
}

static void roundtrip(const char *gguf, enum r1_dtype dt, uint64_t shard, bool sharded)
{
    char path[4400], dir[4200];
    fixture(path, sizeof(path), gguf);
    snprintf(dir, sizeof(dir), "%s/hf-%s-%d-%llu", tmpdir, gguf, (int)dt,
             (unsigned long long)shard);
    struct r1_model *m = NULL, *m2 = NULL;
    assert_int_equal(r1_gguf_load_model(&m, be, path), 0);
    struct r1_hfdir_write_opts o = {dt, shard, NULL};
    assert_int_equal(r1_hfdir_write(m, dir, &o), 0);
    snprintf(path, sizeof(path), "%s/generation_config.json", dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    assert_int_equal(access(path, F_OK) == 0, !sharded);
    if (sharded)
        assert_true(check_index(dir, m, dt) >= 2);
    assert_int_equal(r1_hfdir_load(&m2, be, dir), 0);
    assert_memory_equal(&m->cfg, &m2->cfg, sizeof(m->cfg));
    assert_int_equal(m->params.cap, m2->params.cap);
    float *a = weights(m), *b = weights(m2);
    size_t n = m->params.cap / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        float want = a[i];
        if (dt == R1_F16)
            want = r1_f16_to_f32(r1_f32_to_f16(a[i]));
        else if (dt == R1_BF16)
            want = r1_bf16_to_f32(r1_f32_to_bf16(a[i]));
        if (memcmp(&want, &b[i], 4) != 0)
            fail_msg("%s %s: element %zu: %.9g after the round trip, want %.9g", gguf,
                     r1_dtype_name(dt), i, b[i], want);
    }
    free(a);
    free(b);
    r1_model_free(m);
    r1_model_free(m2);
}

static void test_to_hfdir(void **state)
{
    (void)state;
    roundtrip("tiny-llama.gguf", R1_F32, 0, false);
    roundtrip("tiny-qwen2.gguf", R1_F32, R1_HFDIR_SHARD_DEFAULT, false);
    /* tiny-llama holds ~41k f32 weights (~165 kB): 50 kB shards make several files */
    roundtrip("tiny-llama.gguf", R1_F32, 50000, true);
    roundtrip("tiny-qwen2.gguf", R1_F16, 0, false);
    roundtrip("tiny-llama.gguf", R1_BF16, 0, false);
    roundtrip("tiny-qwen2.gguf", R1_BF16, 200000, true);
}

/* MistralForCausalLM configs: a sliding window shorter than the context is refused (r1
 * attends to the whole context), null or a covering window is fine. */
static void test_mistral_config(void **state)
{
    (void)state;
    char path[4400];
    snprintf(path, sizeof(path), "%s/mistral-config.json", tmpdir);
    const char *base = "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": "
                       "\"mistral\", \"vocab_size\": 64, \"hidden_size\": 32, "
                       "\"intermediate_size\": 64, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                       "\"max_position_embeddings\": 4096, \"sliding_window\": ";
    static const char *const windows[] = {"null}", "4096}", "8192}", "1024}"};
    for (int i = 0; i < 4; i++) {
        char text[1024];
        snprintf(text, sizeof(text), "%s%s", base, windows[i]);
        assert_int_equal(r1_file_write_atomic(path, text, strlen(text)), 0);
        struct r1_model_config c;
        int rc = r1_model_config_load_json(&c, path);
        if (i < 3) {
            assert_int_equal(rc, 0);
            assert_int_equal(c.arch, R1_ARCH_MISTRAL);
            assert_int_equal(c.head_dim, 8);
        } else {
            assert_int_equal(rc, R1_EFORMAT);
            assert_non_null(strstr(r1_err_last(), "sliding_window"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),       cmocka_unit_test(test_dequant),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_name_map),
        cmocka_unit_test(test_tiny_llama),     cmocka_unit_test(test_tiny_qwen2),
        cmocka_unit_test(test_shape_mismatch), cmocka_unit_test(test_to_hfdir),
        cmocka_unit_test(test_mistral_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
