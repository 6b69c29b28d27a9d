/* test-tokenizer-bpe.c - core/tokenizer-bpe.c and core/tokenizer-json.c against Hugging Face
 * tokenizers: the fixtures in tests/fixtures/tok/ (tools/make-tok-fixtures.py) hold, for a
 * Qwen2-style and a Llama-3-style tokenizer.json, texts and the ids `tokenizers` gives them.
 * Checks: identical ids for every case, lossless decode (NFC form where NFC applies),
 * specials, bos/eos/pad and chat_template from tokenizer_config.json, save -> load round
 * trip, error cases, and concurrent encodes.  Run with the argument "smollm2" it checks the
 * SmolLM2 GGUF's own tokenizer (tokenizer.ggml.*) and its tokenizer.json form instead
 * (exit 77 when the model is not downloaded: tools/fetch-model smollm2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/gguf.h"
#include "core/template.h"
#include "core/tokenizer.h"

static char src_root[2048];

static void fixture(char *path, size_t n, const char *name)
{
    snprintf(path, n, "%s/tests/fixtures/tok/%s", src_root, name);
}

static json_t *load_cases(const char *name)
{
    char path[4096];
    fixture(path, sizeof(path), name);
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!doc)
        fail_msg("%s: %s", path, jerr.text);
    assert_string_equal(json_string_value(json_object_get(doc, "format")), "r1-tok-cases");
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), 1);
    assert_true(json_array_size(json_object_get(doc, "cases")) >= 20);
    return doc;
}

/* Every case: the reference ids, and decode(ids) == the reference decoded text. */
static void check_cases(const struct r1_tokenizer *tok, const json_t *doc)
{
    size_t i;
    json_t *c;
    json_array_foreach (json_object_get(doc, "cases"), i, c) {
        const json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids");
        const json_t *dec = json_object_get(c, "decoded");
        int32_t *ids;
        int n;
        assert_int_equal(
            r1_tokenizer_encode(tok, json_string_value(text), json_string_length(text), &ids, &n),
            0);
        for (int k = 0; k < n && k < (int)json_array_size(want); k++)
            if (ids[k] != json_integer_value(json_array_get(want, (size_t)k)))
                fail_msg("case %zu \"%s\": id %d is %d, tokenizers says %d", i,
                         json_string_value(text), k, ids[k],
                         (int)json_integer_value(json_array_get(want, (size_t)k)));
        assert_int_equal(n, json_array_size(want));
        char *back;
        size_t blen;
        assert_int_equal(r1_tokenizer_decode(tok, ids, n, &back, &blen), 0);
        assert_int_equal(blen, json_string_length(dec));
        assert_memory_equal(back, json_string_value(dec), blen);
        free(back);
        free(ids);
    }
}

static struct r1_tokenizer *load_fixture(const char *name)
{
    char tj[4096], tc[4096];
    snprintf(tj, sizeof(tj), "%s/tests/fixtures/tok/%s/tokenizer.json", src_root, name);
    snprintf(tc, sizeof(tc), "%s/tests/fixtures/tok/%s/tokenizer_config.json", src_root, name);
    struct r1_tokenizer *tok = NULL;
    if (r1_tokenizer_json_load(&tok, tj, tc))
        fail_msg("%s", r1_err_last());
    return tok;
}

static void test_qwen2(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = load_fixture("qwen2");
    json_t *doc = load_cases("qwen2-cases.json");
    check_cases(tok, doc);
    assert_string_equal(tok->ops->name, "bpe");
    assert_int_equal(tok->vocab_size, 2500);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|endoftext|>"), 0);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|im_start|>"), 1);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|im_end|>"), 2);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|im_end"), -1);
    assert_int_equal(r1_tokenizer_lookup(tok, ""), -1);
    assert_true(r1_tokenizer_lookup(tok, " the") > 2); /* a normal token, by its raw bytes */
    assert_int_equal(tok->bos_id, -1);                 /* "bos_token": null */
    assert_int_equal(tok->eos_id, 2);                  /* "<|im_end|>" */
    assert_int_equal(tok->pad_id, 0);                  /* {"content": "<|endoftext|>"} */
    assert_non_null(tok->chat_template);
    assert_non_null(strstr(tok->chat_template, "'<|im_start|>' + message['role']"));
    json_decref(doc);
    r1_tokenizer_free(tok);
}

static void test_llama3(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = load_fixture("llama3");
    json_t *doc = load_cases("llama3-cases.json");
    check_cases(tok, doc);
    /* specials were added after the 2000 trained tokens, then one non-special */
    assert_int_equal(tok->vocab_size, 2004);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|begin_of_text|>"), 2000);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|eot_id|>"), 2002);
    assert_int_equal(r1_tokenizer_lookup(tok, "<tool>"), 2003);
    assert_int_equal(tok->bos_id, 2000);
    assert_int_equal(tok->eos_id, 2002);
    assert_int_equal(tok->pad_id, -1);
    assert_non_null(tok->chat_template);
    assert_null(strstr(tok->chat_template, "tools")); /* the "default" entry of the list */
    assert_non_null(strstr(tok->chat_template, "add_generation_prompt"));
    json_decref(doc);
    r1_tokenizer_free(tok);
}

static void test_save_roundtrip(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = load_fixture("qwen2"), *back = NULL;
    char dir[] = "/tmp/r1-test-tok-XXXXXX", tj[256], tc[256];
    assert_non_null(mkdtemp(dir));
    if (r1_tokenizer_json_save(tok, dir))
        fail_msg("%s", r1_err_last());
    snprintf(tj, sizeof(tj), "%s/tokenizer.json", dir);
    snprintf(tc, sizeof(tc), "%s/tokenizer_config.json", dir);
    if (r1_tokenizer_json_load(&back, tj, tc))
        fail_msg("%s", r1_err_last());
    json_t *doc = load_cases("qwen2-cases.json");
    check_cases(back, doc); /* the saved file gives the reference ids */
    assert_int_equal(back->vocab_size, tok->vocab_size);
    assert_int_equal(back->bos_id, tok->bos_id);
    assert_int_equal(back->eos_id, tok->eos_id);
    assert_int_equal(back->pad_id, tok->pad_id);
    assert_string_equal(back->chat_template, tok->chat_template);
    json_decref(doc);
    unlink(tj);
    unlink(tc);
    rmdir(dir);
    r1_tokenizer_free(back);
    r1_tokenizer_free(tok);
    /* the byte tokenizer is no BPE: saving it is refused */
    struct r1_tokenizer *bytes;
    assert_int_equal(r1_tokenizer_bytes_create(&bytes), 0);
    assert_int_equal(r1_tokenizer_json_save(bytes, "/tmp"), R1_EINVAL);
    r1_tokenizer_free(bytes);
}

/* Writes text to dir/name and loads it; returns the code, the message in r1_err_last(). */
static int load_text(const char *dir, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    struct r1_tokenizer *tok = (struct r1_tokenizer *)1;
    int rc = r1_tokenizer_json_load(&tok, path, NULL);
    assert_null(tok);
    unlink(path);
    if (rc)
        assert_non_null(strstr(r1_err_last(), path));
    return rc;
}

#define BL_VOCAB "{\"a\": 0, \"b\": 1, \"ab\": 2}"
#define BL_REST "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}}"

static void test_errors(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = NULL;
    assert_int_equal(r1_tokenizer_json_load(&tok, "/nonexistent/tokenizer.json", NULL), R1_EIO);
    assert_non_null(strstr(r1_err_last(), "/nonexistent/tokenizer.json"));
    char dir[] = "/tmp/r1-test-tok-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", "), R1_EFORMAT);
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}"),
                     R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "WordPiece"));
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}"),
                     R1_EFORMAT);
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": " BL_VOCAB
                                    ", \"merges\": [\"a c\"]}, " BL_REST),
                     R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "\"a c\""));
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": " BL_VOCAB
                                    ", \"merges\": [[\"b\", \"a\"]]}, " BL_REST),
                     R1_EFORMAT); /* "ba" is not in the vocabulary */
    assert_int_equal(load_text(dir, "{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": "
                                    "{\"type\": \"BPE\", \"vocab\": " BL_VOCAB
                                    ", \"merges\": []}, " BL_REST),
                     R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "Lowercase"));
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
                                    "\"b\": 2}, \"merges\": []}, " BL_REST),
                     R1_EFORMAT); /* id 1 missing */
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": " BL_VOCAB
                                    ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
                                    "\"Metaspace\"}}"),
                     R1_EFORMAT);
    assert_int_equal(load_text(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": " BL_VOCAB
                                    ", \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", "
                                    "\"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
                                    "\"Isolated\"}}"),
                     R1_EFORMAT); /* a regex that does not compile */
    /* a tokenizer_config.json naming a token that is not there */
    char tj[4096], tc[256];
    snprintf(tj, sizeof(tj), "%s/tests/fixtures/tok/qwen2/tokenizer.json", src_root);
    snprintf(tc, sizeof(tc), "%s/tokenizer_config.json", dir);
    FILE *f = fopen(tc, "w");
    fputs("{\"eos_token\": \"</s>\"}", f);
    fclose(f);
    assert_int_equal(r1_tokenizer_json_load(&tok, tj, tc), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "</s>"));
    unlink(tc);
    /* a missing tokenizer_config.json is no error */
    assert_int_equal(r1_tokenizer_json_load(&tok, tj, tc), 0);
    assert_null(tok->chat_template);
    assert_int_equal(tok->eos_id, -1);
    r1_tokenizer_free(tok);
    rmdir(dir);
}

static void test_small_spec(void **state)
{
    (void)state;
    const char *tokens[] = {"a", "b", "ab", "<s>"};
    const char *merges[] = {"a b"};
    const bool special[] = {false, false, false, true};
    struct r1_pretok bl = {.kind = R1_PRETOK_BYTELEVEL, .use_regex = true};
    struct r1_bpe_spec spec = {4, tokens, 1, merges, special, 1, &bl, false, false, 3, -1, -1};
    struct r1_tokenizer *tok;
    assert_int_equal(r1_tokenizer_bpe_create(&tok, &spec), 0);
    int32_t *ids;
    int n;
    assert_int_equal(r1_tokenizer_encode(tok, "<s>abba", 7, &ids, &n), 0);
    int32_t want[] = {3, 2, 1, 0};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof(want));
    free(ids);
    assert_int_equal(r1_tokenizer_encode(tok, "abc", 3, &ids, &n), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "0x63"));
    assert_int_equal(tok->bos_id, 3);
    r1_tokenizer_free(tok);
    spec.bos_id = 4; /* outside the vocabulary */
    assert_int_equal(r1_tokenizer_bpe_create(&tok, &spec), R1_EFORMAT);
    /* ranks decide, not length: "b c" (rank 0) before "a b" gives [a, bc] for "abc"; with
     * ignore_merges a piece that is itself a token comes out whole */
    const char *t2[] = {"a", "b", "c", "bc", "ab", "abc"};
    const char *m2[] = {"b c", "a b"};
    struct r1_bpe_spec s2 = {6, t2, 2, m2, NULL, 1, &bl, false, false, -1, -1, -1};
    int32_t want_merged[] = {0, 3}, want_whole[] = {5};
    assert_int_equal(r1_tokenizer_bpe_create(&tok, &s2), 0);
    assert_int_equal(r1_tokenizer_encode(tok, "abc", 3, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(ids, want_merged, sizeof(want_merged));
    free(ids);
    r1_tokenizer_free(tok);
    s2.ignore_merges = true;
    assert_int_equal(r1_tokenizer_bpe_create(&tok, &s2), 0);
    assert_int_equal(r1_tokenizer_encode(tok, "abc", 3, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(ids, want_whole, sizeof(want_whole));
    free(ids);
    r1_tokenizer_free(tok);
    struct r1_bpe_spec pre = {0};
    assert_int_equal(r1_bpe_spec_set_pre(&pre, "smollm"), 0);
    assert_int_equal(pre.n_pretok, 2);
    assert_int_equal(r1_bpe_spec_set_pre(&pre, "qwen2"), 0);
    assert_true(pre.nfc);
    assert_int_equal(r1_bpe_spec_set_pre(&pre, "llama-bpe"), 0);
    assert_true(pre.ignore_merges);
    assert_int_equal(r1_bpe_spec_set_pre(&pre, "no-such-pre"), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "no-such-pre"));
}

/* Any bytes (invalid UTF-8, NULs, stray specials' prefixes) decode back to themselves. */
static void test_random_bytes(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = load_fixture("llama3");
    uint64_t x = 88172645463325252ull;
    char text[3000];
    for (int rep = 0; rep < 40; rep++) {
        size_t len = (size_t)(rep * 73 % 3000);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly ASCII and spaces, some high bytes, some '<' to tease the specials */
            unsigned r = (unsigned)(x >> 40) % 10;
            text[i] = r < 5   ? (char)('a' + (x >> 8) % 26)
                      : r < 7 ? " \n\t<|"[(x >> 8) % 5]
                              : (char)(x >> 16);
        }
        int32_t *ids;
        int n;
        char *back;
        size_t blen;
        assert_int_equal(r1_tokenizer_encode(tok, text, len, &ids, &n), 0);
        assert_int_equal(r1_tokenizer_decode(tok, ids, n, &back, &blen), 0);
        assert_int_equal(blen, len);
        assert_memory_equal(back, text, len);
        free(back);
        free(ids);
    }
    r1_tokenizer_free(tok);
}

struct thread_arg {
    const struct r1_tokenizer *tok;
    const json_t *doc;
    int bad;
};

static void *encode_all(void *p)
{
    struct thread_arg *a = p;
    for (int rep = 0; rep < 20; rep++) {
        size_t i;
        json_t *c;
        json_array_foreach (json_object_get(a->doc, "cases"), i, c) {
            const json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids");
            int32_t *ids;
            int n;
            if (r1_tokenizer_encode(a->tok, json_string_value(text), json_string_length(text), &ids,
                                    &n)) {
                a->bad++;
                continue;
            }
            a->bad += n != (int)json_array_size(want);
            for (int k = 0; k < n && k < (int)json_array_size(want); k++)
                a->bad += ids[k] != json_integer_value(json_array_get(want, (size_t)k));
            free(ids);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct r1_tokenizer *tok = load_fixture("llama3");
    json_t *doc = load_cases("llama3-cases.json");
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){tok, doc, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_all, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    json_decref(doc);
    r1_tokenizer_free(tok);
}

/* --- SmolLM2: the tokenizer its GGUF carries (core/tokenizer-gguf.c), and the same
 * tokenizer saved as tokenizer.json and read back (what `r1 convert` writes) ----------- */

static char gguf_path[4096];

static void test_smollm2(void **state)
{
    (void)state;
    struct r1_gguf *g = NULL;
    struct r1_tokenizer *tok = NULL, *back = NULL;
    if (r1_gguf_open(&g, gguf_path) || r1_tokenizer_gguf_load(&tok, g))
        fail_msg("%s", r1_err_last());
    r1_gguf_close(g);
    json_t *doc = load_cases("smollm2-cases.json");
    check_cases(tok, doc);
    assert_int_equal(r1_tokenizer_lookup(tok, "<|im_start|>"), 1);
    assert_int_equal(tok->bos_id, 1);
    assert_int_equal(tok->eos_id, 2);
    assert_int_equal(tok->pad_id, 2);
    assert_non_null(tok->chat_template);
    assert_string_equal(r1_chat_template_detect(tok->chat_template), "chatml");

    char dir[] = "/tmp/r1-tok-smollm2-XXXXXX", p1[128], p2[128];
    assert_non_null(mkdtemp(dir));
    snprintf(p1, sizeof(p1), "%s/tokenizer.json", dir);
    snprintf(p2, sizeof(p2), "%s/tokenizer_config.json", dir);
    if (r1_tokenizer_json_save(tok, dir) || r1_tokenizer_json_load(&back, p1, p2))
        fail_msg("%s", r1_err_last());
    check_cases(back, doc);
    assert_int_equal(back->eos_id, 2);
    assert_string_equal(back->chat_template, tok->chat_template);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    json_decref(doc);
    r1_tokenizer_free(back);
    r1_tokenizer_free(tok);
}

static int run_smollm2(void)
{
    const char *cache = getenv("R1_CACHE"), *home = getenv("HOME");
    if (cache)
        snprintf(gguf_path, sizeof(gguf_path), "%s/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
    else
        snprintf(gguf_path, sizeof(gguf_path),
                 "%s/.cache/r1/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
    if (access(gguf_path, R_OK) != 0) {
        fprintf(stderr,
                "skipped: %s is missing (download SmolLM2-135M-Instruct Q4_1 there, or "
                "set R1_CACHE)\n",
                gguf_path);
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_smollm2)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(int argc, char **argv)
{
    const char *src = getenv("R1_SRC");
    snprintf(src_root, sizeof(src_root), "%s", src ? src : ".");
    if (argc > 1 && strcmp(argv[1], "smollm2") == 0)
        return run_smollm2();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2),          cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_save_roundtrip), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_small_spec),     cmocka_unit_test(test_threads),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
