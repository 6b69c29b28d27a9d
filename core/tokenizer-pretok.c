/* tokenizer-pretok.c - the text side of the BPE tokenizer: GPT-2's byte <-> unicode map,
 * NFC (utf8proc), the pre-tokenizer steps run with PCRE2, and the step lists that
 * llama.cpp's tokenizer.ggml.pre names stand for.
 *
 * Every step splits each piece the previous step made, on its own (a lookahead never sees
 * past the end of its piece), with Hugging Face's "Isolated" behaviour: each match and
 * each run of text between matches becomes a piece.  Patterns compile with PCRE2_UTF |
 * PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, so invalid UTF-8 never matches and lands in the
 * pieces between matches: no byte is lost.  Compiled patterns are read-only and each
 * split makes its own match data, so concurrent encodes are safe. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/tokenizer-bpe-internal.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"

void r1_bpe_byte_to_cp(uint32_t cp[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        cp[b] = printable ? (uint32_t)b : next++;
    }
}

int r1_bpe_nfc(const char *s, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    if (i == n)
        return 0; /* ASCII is NFC */
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r == UTF8PROC_ERROR_NOMEM)
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory normalizing %zu bytes (NFC)", n);
    if (r < 0) /* invalid UTF-8: nothing to compose, keep the bytes as they are */
        return 0;
    *out = (char *)dst;
    *out_len = (size_t)r;
    return 0;
}

/* GPT-2's pattern, the one ByteLevel(use_regex=true) splits with. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct r1_pretok_list {
    int n;
    pcre2_code **codes; /* one per step that splits (ByteLevel without regex adds none) */
};

void r1_pretok_free(struct r1_pretok_list *pl)
{
    if (!pl)
        return;
    for (int i = 0; i < pl->n; i++)
        pcre2_code_free(pl->codes[i]);
    free(pl->codes);
    free(pl);
}

int r1_pretok_compile(struct r1_pretok_list **out, const struct r1_pretok *steps, int n)
{
    *out = NULL;
    struct r1_pretok_list *pl = calloc(1, sizeof(*pl));
    if (!pl || !(pl->codes = calloc((size_t)(n > 0 ? n : 1), sizeof(pcre2_code *)))) {
        free(pl);
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d pre-tokenizers", n);
    }
    for (int i = 0; i < n; i++) {
        const char *pat = NULL;
        switch (steps[i].kind) {
        case R1_PRETOK_SPLIT:
            pat = steps[i].pattern;
            if (!pat) {
                r1_pretok_free(pl);
                return r1_err_set(R1_EFORMAT,
                                  "tokenizer: pre-tokenizer %d is a Split with no "
                                  "pattern",
                                  i);
            }
            break;
        case R1_PRETOK_DIGITS:
            pat = steps[i].individual_digits ? "\\p{N}" : "\\p{N}+";
            break;
        case R1_PRETOK_BYTELEVEL:
            pat = steps[i].use_regex ? gpt2_pattern : NULL;
            break;
        default:
            r1_pretok_free(pl);
            return r1_err_set(R1_EFORMAT, "tokenizer: pre-tokenizer %d has unknown kind %d", i,
                              (int)steps[i].kind);
        }
        if (!pat)
            continue;
        int err;
        PCRE2_SIZE at;
        pcre2_code *code =
            pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof(msg));
            r1_pretok_free(pl);
            return r1_err_set(R1_EFORMAT,
                              "tokenizer: pre-tokenizer %d: pattern does not compile at offset "
                              "%zu (%s): %s",
                              i, (size_t)at, (const char *)msg, pat);
        }
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* the interpreter runs where JIT can't */
        pl->codes[pl->n++] = code;
    }
    *out = pl;
    return 0;
}

struct range {
    size_t at, len;
};

struct ranges {
    struct range *r;
    size_t n, cap;
};

static int ranges_push(struct ranges *rs, size_t at, size_t len)
{
    if (len == 0)
        return 0;
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        struct range *g = realloc(rs->r, cap * sizeof(*g));
        if (!g)
            return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %zu pieces", cap);
        rs->r = g;
        rs->cap = cap;
    }
    rs->r[rs->n++] = (struct range){at, len};
    return 0;
}

/* Splits text[p.at, p.at + p.len) by code into dst (Isolated). */
static int split_one(const pcre2_code *code, pcre2_match_data *md, const char *text, struct range p,
                     struct ranges *dst)
{
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + p.at);
    size_t start = 0, gap = 0;
    while (start < p.len) {
        int rc = pcre2_match(code, subj, p.len, start, 0, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* a very long piece: the interpreter copes */
            rc = pcre2_match(code, subj, p.len, start, PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return r1_err_set(R1_EINVAL,
                              "tokenizer: pre-tokenizer match failed (%s) on a piece "
                              "of %zu bytes",
                              (const char *)msg, p.len);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step over one byte (the gap keeps it) */
            start = ms + 1;
            continue;
        }
        int e = ranges_push(dst, p.at + gap, ms - gap);
        if (!e)
            e = ranges_push(dst, p.at + ms, me - ms);
        if (e)
            return e;
        gap = start = me;
    }
    return ranges_push(dst, p.at + gap, p.len - gap);
}

int r1_pretok_split(const struct r1_pretok_list *pl, const char *text, size_t len,
                    int (*fn)(void *arg, const char *piece, size_t len), void *arg)
{
    if (len == 0)
        return 0;
    if (pl->n == 0)
        return fn(arg, text, len);
    struct ranges a = {0}, b = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc = md ? ranges_push(&a, 0, len)
                : r1_err_set(R1_ENOMEM, "tokenizer: out of memory for PCRE2 match data");
    for (int s = 0; s < pl->n && rc == 0; s++) {
        b.n = 0;
        for (size_t i = 0; i < a.n && rc == 0; i++)
            rc = split_one(pl->codes[s], md, text, a.r[i], &b);
        struct ranges t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && rc == 0; i++)
        rc = fn(arg, text + a.r[i].at, a.r[i].len);
    pcre2_match_data_free(md);
    free(a.r);
    free(b.r);
    return rc;
}

/* --- llama.cpp's tokenizer.ggml.pre names ------------------------------------------ */

#define QWEN2_PATTERN                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"      \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_PATTERN                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct r1_pretok pre_gpt2[] = {{.kind = R1_PRETOK_BYTELEVEL, .use_regex = true}};
static const struct r1_pretok pre_default[] = {
    /* llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT */
    {.kind = R1_PRETOK_SPLIT, .pattern = "[\\p{P}\\$\\+<=>\\^~\\|]+"},
    {.kind = R1_PRETOK_SPLIT,
     .pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"},
    {.kind = R1_PRETOK_SPLIT, .pattern = "\\p{N}+"},
    {.kind = R1_PRETOK_SPLIT, .pattern = "[0-9][0-9][0-9]"},
};
static const struct r1_pretok pre_llama3[] = {
    {.kind = R1_PRETOK_SPLIT, .pattern = LLAMA3_PATTERN},
    {.kind = R1_PRETOK_BYTELEVEL, .use_regex = false},
};
static const struct r1_pretok pre_qwen2[] = {
    {.kind = R1_PRETOK_SPLIT, .pattern = QWEN2_PATTERN},
    {.kind = R1_PRETOK_BYTELEVEL, .use_regex = false},
};
static const struct r1_pretok pre_smollm[] = {
    {.kind = R1_PRETOK_DIGITS, .individual_digits = true},
    {.kind = R1_PRETOK_BYTELEVEL, .use_regex = true},
};

#define ROW(name, list, nfc, ignore)                                                               \
    {                                                                                              \
        name, list, (int)(sizeof(list) / sizeof(list[0])), nfc, ignore                             \
    }
static const struct {
    const char *name;
    const struct r1_pretok *list;
    int n;
    bool nfc, ignore_merges;
} pre_table[] = {
    ROW("gpt2", pre_gpt2, false, false),       ROW("default", pre_default, false, false),
    ROW("llama-bpe", pre_llama3, false, true), ROW("llama3", pre_llama3, false, true),
    ROW("qwen2", pre_qwen2, true, false),      ROW("deepseek-r1-qwen", pre_qwen2, true, false),
    ROW("smollm", pre_smollm, false, false),
};

int r1_bpe_spec_set_pre(struct r1_bpe_spec *spec, const char *pre)
{
    for (size_t i = 0; i < sizeof(pre_table) / sizeof(pre_table[0]); i++) {
        if (pre && strcmp(pre, pre_table[i].name) == 0) {
            spec->pretok = pre_table[i].list;
            spec->n_pretok = pre_table[i].n;
            spec->nfc = pre_table[i].nfc;
            spec->ignore_merges = pre_table[i].ignore_merges;
            return 0;
        }
    }
    return r1_err_set(R1_EFORMAT,
                      "tokenizer: pre-tokenizer '%s' (tokenizer.ggml.pre) is not one r1 knows; "
                      "known: gpt2, default, llama-bpe, llama3, qwen2, deepseek-r1-qwen, smollm",
                      pre ? pre : "(none)");
}
