/* test-tokenizer.c - core/tokenizer: the generic wrappers on the byte-level
 * tokenizer: ids and specials as listed in tokenizer.h, round trips of arbitrary
 * bytes, special recognition (longest match, prefixes stay bytes), lookup, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/tokenizer.h"
#include "core/utf8.h"

static int setup(void **state)
{
    struct r1_tokenizer *tok;
    if (r1_tokenizer_bytes_create(&tok) != 0)
        return -1;
    *state = tok;
    return 0;
}

static int teardown(void **state)
{
    r1_tokenizer_free(*state);
    return 0;
}

static void test_ids(void **state)
{
    const struct r1_tokenizer *tok = *state;
    assert_int_equal(tok->vocab_size, 264);
    assert_int_equal(tok->eos_id, 256);
    assert_int_equal(tok->bos_id, -1);
    assert_int_equal(tok->pad_id, 263);
    const char *names[] = {"<|endoftext|>", "<think>",      "</think>",   "<answer>",
                           "</answer>",     "<|im_start|>", "<|im_end|>", "<|pad|>"};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(r1_tokenizer_lookup(tok, names[i]), 256 + i);
        size_t len;
        const char *p = tok->ops->piece(tok, 256 + i, &len);
        assert_int_equal(len, strlen(names[i]));
        assert_memory_equal(p, names[i], len);
    }
    assert_int_equal(r1_tokenizer_lookup(tok, "a"), 'a');
    assert_int_equal(r1_tokenizer_lookup(tok, "\xff"), 255);
    assert_int_equal(r1_tokenizer_lookup(tok, "<"), '<');
    assert_int_equal(r1_tokenizer_lookup(tok, ""), -1);
    assert_int_equal(r1_tokenizer_lookup(tok, "ab"), -1);
    assert_int_equal(r1_tokenizer_lookup(tok, "<think"), -1);
    assert_int_equal(r1_tokenizer_lookup(tok, NULL), -1);
    assert_string_equal(tok->ops->name, "bytes");
}

static void roundtrip(const struct r1_tokenizer *tok, const char *text, size_t len)
{
    int32_t *ids;
    int n;
    char *back;
    size_t blen;
    assert_int_equal(r1_tokenizer_encode(tok, text, len, &ids, &n), 0);
    assert_non_null(ids);
    assert_int_equal(r1_tokenizer_decode(tok, ids, n, &back, &blen), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(back, text, len);
    assert_int_equal(back[len], '\0');
    free(ids);
    free(back);
}

static void test_roundtrip_bytes(void **state)
{
    const struct r1_tokenizer *tok = *state;
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    int32_t *ids;
    int n;
    assert_int_equal(r1_tokenizer_encode(tok, all, 256, &ids, &n), 0);
    assert_int_equal(n, 256);
    for (int i = 0; i < 256; i++)
        assert_int_equal(ids[i], i); /* every byte is its own id, 0x00 included */
    free(ids);
    roundtrip(tok, all, 256);
    roundtrip(tok, "\xc3\x28\xa0\xa1\xf0\x28\x8c\x28", 8); /* invalid UTF-8 */
    roundtrip(tok, "h\xc3\xa9llo \xe2\x82\xac", 10);       /* valid UTF-8 */
    roundtrip(tok, "", 0);

    /* Random byte strings, with specials and their fragments mixed in. */
    const char *frag[] = {"<think>", "</think>", "<|im_end|>", "<thin", "<|", "<", "|>", "x"};
    struct r1_rng r = r1_rng_make(1, R1_STREAM_USER);
    char buf[512];
    for (int t = 0; t < 200; t++) {
        size_t len = 0;
        while (len < 400) {
            if (r1_rng_below(&r, 4) == 0) {
                const char *f = frag[r1_rng_below(&r, 8)];
                memcpy(buf + len, f, strlen(f));
                len += strlen(f);
            } else {
                buf[len++] = (char)r1_rng_below(&r, 256);
            }
        }
        roundtrip(tok, buf, len);
    }
}

static void test_specials_in_text(void **state)
{
    const struct r1_tokenizer *tok = *state;
    const char *text = "a<think>b</think><answer>42</answer><|endoftext|>";
    int32_t *ids;
    int n;
    assert_int_equal(r1_tokenizer_encode(tok, text, strlen(text), &ids, &n), 0);
    const int32_t want[] = {'a', 257, 'b', 258, 259, '4', '2', 260, 256};
    assert_int_equal(n, 9);
    assert_memory_equal(ids, want, sizeof(want));
    free(ids);

    /* Back-to-back specials and a special at the very end of the buffer. */
    const char *chat = "<|im_start|>user\n<|im_end|><|pad|><|pad|>";
    assert_int_equal(r1_tokenizer_encode(tok, chat, strlen(chat), &ids, &n), 0);
    assert_int_equal(n, 1 + 5 + 1 + 2);
    assert_int_equal(ids[0], 261);
    assert_int_equal(ids[6], 262);
    assert_int_equal(ids[7], 263);
    assert_int_equal(ids[8], 263);
    free(ids);

    /* The length bounds the match: "<think>" cut to "<think" stays bytes. */
    assert_int_equal(r1_tokenizer_encode(tok, "<think>", 6, &ids, &n), 0);
    assert_int_equal(n, 6);
    free(ids);
}

static void test_prefix_stays_bytes(void **state)
{
    const struct r1_tokenizer *tok = *state;
    const char *cases[] = {"<thin", "<|im_", "</answer", "<|endoftext|", "< think>", "<<think>"};
    const int nspecial[] = {0, 0, 0, 0, 0, 1};
    for (int c = 0; c < 6; c++) {
        int32_t *ids;
        int n;
        size_t len = strlen(cases[c]);
        assert_int_equal(r1_tokenizer_encode(tok, cases[c], len, &ids, &n), 0);
        int specials = 0;
        for (int i = 0; i < n; i++)
            specials += ids[i] >= 256;
        assert_int_equal(specials, nspecial[c]);
        assert_int_equal(n, (int)len - (nspecial[c] ? 6 : 0)); /* "<think>" is 7 bytes, 1 id */
        free(ids);
    }
}

static void test_decode_errors(void **state)
{
    const struct r1_tokenizer *tok = *state;
    char *text = (char *)1;
    size_t len = 99;
    int32_t bad[] = {'o', 'k', 264};
    r1_err_clear();
    assert_int_equal(r1_tokenizer_decode(tok, bad, 3, &text, &len), R1_EINVAL);
    assert_null(text);
    assert_non_null(strstr(r1_err_last(), "264"));
    int32_t neg[] = {-1};
    assert_int_equal(r1_tokenizer_decode(tok, neg, 1, &text, NULL), R1_EINVAL);
    assert_int_equal(r1_tokenizer_decode(tok, bad, -1, &text, NULL), R1_EINVAL);
    size_t plen;
    assert_null(tok->ops->piece(tok, 264, &plen));
    assert_null(tok->ops->piece(tok, -5, &plen));

    /* Empty decode gives an empty string; len may be NULL. */
    assert_int_equal(r1_tokenizer_decode(tok, NULL, 0, &text, NULL), 0);
    assert_string_equal(text, "");
    free(text);
}

static void test_encode_appends(void **state)
{
    const struct r1_tokenizer *tok = *state;
    /* The ops-level encode appends to an existing array. */
    int32_t *ids = NULL;
    int n = 0, cap = 0;
    assert_int_equal(tok->ops->encode(tok, "ab", 2, &ids, &n, &cap), 0);
    assert_int_equal(tok->ops->encode(tok, "<think>c", 8, &ids, &n, &cap), 0);
    assert_int_equal(n, 4);
    assert_true(cap >= n);
    const int32_t want[] = {'a', 'b', 257, 'c'};
    assert_memory_equal(ids, want, sizeof(want));
    free(ids);
    r1_tokenizer_free(NULL); /* no-op */
}

/* Strict UTF-8: valid sequences decode and survive cleaning; overlongs, surrogates,
 * truncated sequences, stray continuation bytes and NUL become U+FFFD, byte by byte. */
static void test_utf8(void **state)
{
    (void)state;
    uint32_t cp = 0;
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xE2\x82\xAC", 3, &cp), 3);
    assert_int_equal(cp, 0x20AC);
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xC0\xAF", 2, &cp), 0); /* overlong */
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &cp), 0);
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xE2\x82", 2, &cp), 0); /* cut */
    assert_int_equal(r1_utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), 0);
    const char in[] = "a\xFF" "b\xE2\x82\xAC\xC0\xAF\x00z";
    char *out = r1_utf8_clean(in, sizeof(in) - 1);
    assert_non_null(out);
    assert_string_equal(out, "a\xEF\xBF\xBD" "b\xE2\x82\xAC\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_specials_in_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_stays_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_appends, setup, teardown),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
