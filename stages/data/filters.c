/* filters.c - the quality filters of rejection sampling (see filters.h). */
#include "stages/data/filters.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "stages/rewards/rewards.h"

static const char *const reason_names[R1_REJECT_N] = {
    "kept",   "truncated", "too_short",  "too_long",  "format", "reward",
    "language", "code_block", "paragraph", "duplicate", "quota",
};

const char *r1_reject_name(enum r1_reject r)
{
    return (unsigned)r < R1_REJECT_N ? reason_names[r] : "unknown";
}

/* ---- language ------------------------------------------------------------------- */

double r1_filter_language_share(const char *text, const char *language)
{
    static const char *const tags[] = {"<think>", "</think>", "<answer>", "</answer>"};
    static const char open[] = "<think>";
    if (!text || !language)
        return 0.0;
    size_t n = strlen(text);
    char *buf = malloc(sizeof(open) + n);
    if (!buf)
        return 0.0;
    /* the whole text as one unclosed thinking block, which the language reward reads
     * word by word; the tags inside become spaces so they neither count nor close it */
    memcpy(buf, open, sizeof(open) - 1);
    memcpy(buf + sizeof(open) - 1, text, n + 1);
    char *body = buf + sizeof(open) - 1;
    for (char *p = body; (p = strchr(p, '<'));) {
        size_t len = 0;
        for (size_t k = 0; k < sizeof(tags) / sizeof(tags[0]) && !len; k++)
            if (strncmp(p, tags[k], strlen(tags[k])) == 0)
                len = strlen(tags[k]);
        if (len) {
            memset(p, ' ', len);
            p += len;
        } else {
            p++;
        }
    }
    struct r1_reward_cfg cfg = {"language", 1.0f, R1_ANSWER_AUTO, (char *)language, 3, -1.0f,
                                {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
    struct r1_reward_input in = {"", buf, NULL, NULL, 0, 0, NAN};
    double share = r1_reward_language(&in, &cfg);
    free(buf);
    return share;
}

/* ---- structure ------------------------------------------------------------------ */

bool r1_filter_has_code_block(const char *text)
{
    return text && strstr(text, "```") != NULL;
}

/* Code points in s[0, n); an invalid byte counts as one. */
static int64_t count_chars(const char *s, size_t n)
{
    int64_t c = 0;
    for (size_t i = 0; i < n; c++) {
        uint32_t cp;
        size_t k = r1_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        i += k ? k : 1;
    }
    return c;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int64_t r1_filter_longest_paragraph(const char *text)
{
    if (!text)
        return 0;
    int64_t best = 0;
    size_t n = strlen(text), i = 0;
    while (i < n) {
        /* one paragraph: non-blank lines up to a blank line or the end */
        size_t first = (size_t)-1, last = 0;
        while (i < n) {
            size_t ls = i;
            while (i < n && text[i] != '\n')
                i++;
            size_t le = i;
            if (i < n)
                i++; /* the newline */
            bool blank = true;
            for (size_t k = ls; k < le && blank; k++)
                blank = text[k] == ' ' || text[k] == '\t' || text[k] == '\r';
            if (blank) {
                if (first != (size_t)-1)
                    break;
                continue;
            }
            if (first == (size_t)-1)
                first = ls;
            last = le;
        }
        if (first == (size_t)-1)
            break;
        while (first < last && is_space(text[first]))
            first++;
        while (last > first && is_space(text[last - 1]))
            last--;
        int64_t c = count_chars(text + first, last - first);
        if (c > best)
            best = c;
    }
    return best;
}

/* ---- near duplicates ------------------------------------------------------------ */

static uint64_t fnv_add(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sorted distinct hashes of the word trigrams of s (a 1- or 2-word text: one
 * shingle of its words); *n gets the count.  NULL with *n = 0 for a text without
 * words; NULL with *n = -1 when out of memory. */
static uint64_t *shingles(const char *s, int64_t *n)
{
    size_t len = strlen(s), nw = 0;
    for (size_t i = 0; i < len;) { /* count words */
        while (i < len && is_space(s[i]))
            i++;
        if (i < len)
            nw++;
        while (i < len && !is_space(s[i]))
            i++;
    }
    *n = 0;
    if (nw == 0)
        return NULL;
    size_t *ws = malloc(nw * sizeof(size_t)), *we = malloc(nw * sizeof(size_t));
    size_t ns = nw >= 3 ? nw - 2 : 1;
    uint64_t *h = malloc(ns * sizeof(uint64_t));
    if (!ws || !we || !h) {
        free(ws);
        free(we);
        free(h);
        *n = -1;
        return NULL;
    }
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && is_space(s[i]))
            i++;
        if (i >= len)
            break;
        ws[w] = i;
        while (i < len && !is_space(s[i]))
            i++;
        we[w++] = i;
    }
    size_t span = nw >= 3 ? 3 : nw;
    for (size_t k = 0; k < ns; k++) {
        uint64_t x = 0xcbf29ce484222325ull;
        for (size_t j = k; j < k + span; j++) {
            x = fnv_add(x, s + ws[j], we[j] - ws[j]);
            x = fnv_add(x, "\x1f", 1); /* a word separator no word holds */
        }
        h[k] = x;
    }
    free(ws);
    free(we);
    qsort(h, ns, sizeof(uint64_t), cmp_u64);
    size_t u = 0;
    for (size_t k = 0; k < ns; k++)
        if (u == 0 || h[k] != h[u - 1])
            h[u++] = h[k];
    *n = (int64_t)u;
    return h;
}

double r1_filter_similarity(const char *a, const char *b)
{
    int64_t na, nb;
    uint64_t *ha = shingles(a ? a : "", &na), *hb = shingles(b ? b : "", &nb);
    double sim;
    if (na < 0 || nb < 0) /* out of memory: call them different */
        sim = 0.0;
    else if (na == 0 || nb == 0)
        sim = na == nb ? 1.0 : 0.0;
    else {
        int64_t i = 0, j = 0, both = 0;
        while (i < na && j < nb) {
            if (ha[i] == hb[j]) {
                both++;
                i++;
                j++;
            } else if (ha[i] < hb[j]) {
                i++;
            } else {
                j++;
            }
        }
        sim = (double)both / (double)(na + nb - both);
    }
    free(ha);
    free(hb);
    return sim;
}

/* ---- the decision --------------------------------------------------------------- */

enum r1_reject r1_filter_check(const struct r1_filter_cfg *cfg, const struct r1_filter_sample *s,
                               const struct r1_filter_kept *kept)
{
    const char *text = s->completion ? s->completion : "";
    if (s->truncated)
        return R1_REJECT_TRUNCATED;
    if (s->n_tokens < cfg->min_tokens)
        return R1_REJECT_TOO_SHORT;
    if (cfg->max_tokens > 0 && s->n_tokens > cfg->max_tokens)
        return R1_REJECT_TOO_LONG;
    if (cfg->require_format) {
        struct r1_reward_input in = {s->prompt ? s->prompt : "", text, NULL, NULL, s->n_tokens, 0, NAN};
        if (!(r1_reward_format(&in, NULL) >= 1.0))
            return R1_REJECT_FORMAT;
    }
    if (!(s->reward >= cfg->min_reward)) /* NaN fails too */
        return R1_REJECT_REWARD;
    if (cfg->min_language > 0 &&
        r1_filter_language_share(text, cfg->language ? cfg->language : "en") < cfg->min_language)
        return R1_REJECT_LANGUAGE;
    if (cfg->no_code_blocks && r1_filter_has_code_block(text))
        return R1_REJECT_CODE_BLOCK;
    if (cfg->max_paragraph_chars > 0 &&
        r1_filter_longest_paragraph(text) > cfg->max_paragraph_chars)
        return R1_REJECT_PARAGRAPH;
    for (int k = 0; kept && k < kept->n; k++) {
        const char *o = kept->texts[k] ? kept->texts[k] : "";
        if (strcmp(o, text) == 0 ||
            (cfg->dedup_threshold > 0 && r1_filter_similarity(o, text) >= cfg->dedup_threshold))
            return R1_REJECT_DUPLICATE;
    }
    if (kept && kept->n >= cfg->keep_per_prompt)
        return R1_REJECT_QUOTA;
    return R1_REJECT_NONE;
}
