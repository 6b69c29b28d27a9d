/* tokenizer-bpe.c - the byte-level BPE tokenizer (see tokenizer.h, docs/tokenizer.md).
 *
 * Encoding: special tokens are cut out of the text first (longest match at each byte);
 * each stretch between them is NFC-normalized (when asked), split by the pre-tokenizers
 * (tokenizer-pretok.c), and each piece becomes byte ids that merge by rank, lowest first,
 * leftmost first among equals: a heap of candidate pairs over a linked list of symbols, as
 * Hugging Face tokenizers does.  Every byte has a token in these vocabularies; a byte that
 * has none is an error, never dropped.
 *
 * Tokens are kept twice: as given (byte-level unicode form, "Ġthe") for merges and saving,
 * and as raw bytes (" the") for decoding and lookup.  A token whose text is not all in the
 * byte-level alphabet (and every special token) is its own text.  Ids of recent pieces are
 * kept in a small cache behind a mutex; everything else is read-only after create, so
 * concurrent encodes are safe. */
#include "core/tokenizer-bpe-internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/utf8.h"

/* --- strings by id, and a hash map from string to id ---------------------------------- */

struct strs { /* n strings in one arena; string i is base[off[i] .. off[i + 1]) less its NUL */
    char *base;
    size_t *off;
    int n;
};

static const char *strs_get(const struct strs *s, int i, size_t *len)
{
    *len = s->off[i + 1] - s->off[i] - 1;
    return s->base + s->off[i];
}

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

struct strmap { /* open addressing; slots hold id + 1, 0 is empty */
    int32_t *slot;
    uint32_t mask;
    const struct strs *keys;
};

static int strmap_init(struct strmap *m, const struct strs *keys, int n)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u)
        cap *= 2;
    m->slot = calloc(cap, sizeof(int32_t));
    m->mask = cap - 1;
    m->keys = keys;
    return m->slot ? 0 : r1_err_set(R1_ENOMEM, "tokenizer: out of memory for a map of %d", n);
}

static int32_t strmap_get(const struct strmap *m, const char *p, size_t n)
{
    for (uint32_t i = hash_bytes(p, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t v = m->slot[i];
        if (v == 0)
            return -1;
        size_t kl;
        const char *k = strs_get(m->keys, v - 1, &kl);
        if (kl == n && memcmp(k, p, n) == 0)
            return v - 1;
    }
}

/* Adds id under its key unless the key is there already (the first id keeps it). */
static void strmap_add(struct strmap *m, int32_t id)
{
    size_t n;
    const char *p = strs_get(m->keys, id, &n);
    for (uint32_t i = hash_bytes(p, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t v = m->slot[i];
        if (v == 0) {
            m->slot[i] = id + 1;
            return;
        }
        size_t kl;
        const char *k = strs_get(m->keys, v - 1, &kl);
        if (kl == n && memcmp(k, p, n) == 0)
            return;
    }
}

/* --- merges: (left, right) -> rank, merged id ------------------------------------------ */

struct merge_slot {
    uint64_t key; /* left << 32 | right, + 1 so 0 is empty */
    int32_t rank, merged;
};

struct mergemap {
    struct merge_slot *slot;
    uint64_t mask;
};

static uint64_t pair_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static const struct merge_slot *merge_get(const struct mergemap *m, int32_t l, int32_t r)
{
    uint64_t k = pair_key(l, r);
    for (uint64_t i = mix64(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slot[i].key == k)
            return &m->slot[i];
        if (m->slot[i].key == 0)
            return NULL;
    }
}

/* --- the tokenizer ----------------------------------------------------------------------- */

#define CACHE_N 8192
#define CACHE_KEY 40
#define CACHE_IDS 12

struct cache_entry {
    uint8_t klen, nids; /* klen 0: empty */
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
};

struct bpe {
    struct strs tokens; /* as given (byte-level form; specials as text) */
    struct strs raw;    /* the bytes each token decodes to */
    struct strs merges; /* as given, "left right" */
    bool *special;
    struct strmap raw_map; /* raw bytes of normal tokens -> id (lookup, ignore_merges) */
    struct mergemap mm;
    int32_t byte_id[256]; /* the token of each single byte, -1 when none */
    int32_t *spec_ids;    /* special ids by first byte, longest first within a byte */
    int spec_start[257];  /* spec_ids[spec_start[b] .. spec_start[b + 1]) start with byte b */
    int n_pretok;
    struct r1_pretok *pretok; /* a copy (patterns in pretok_text) for the spec view */
    char *pretok_text;
    struct r1_pretok_list *pl;
    bool nfc, ignore_merges;
    pthread_mutex_t lock;
    struct cache_entry *cache;
    const char **tok_ptrs, **merge_ptrs; /* into tokens and merges, for the spec view */
};

/* Copies n strings into one arena (NULL entries are an error the caller names). */
static int strs_copy(struct strs *s, const char *const *src, int n, const char *what)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!src[i])
            return r1_err_set(R1_EFORMAT, "tokenizer: %s %d is missing (NULL)", what, i);
        total += strlen(src[i]) + 1;
    }
    s->base = malloc(total ? total : 1);
    s->off = malloc(sizeof(size_t) * (size_t)(n + 1));
    if (!s->base || !s->off)
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d %ss", n, what);
    s->n = n;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(src[i]) + 1;
        s->off[i] = at;
        memcpy(s->base + at, src[i], l);
        at += l;
    }
    s->off[n] = at;
    return 0;
}

static void strs_free(struct strs *s)
{
    free(s->base);
    free(s->off);
}

/* The raw bytes of every token: byte-level text mapped back to bytes where every code point
 * is in the alphabet, the text itself otherwise (and for specials). */
static int make_raw(struct bpe *b)
{
    uint32_t cp[256];
    int16_t byte_of[R1_BPE_CP_MAX];
    r1_bpe_byte_to_cp(cp);
    for (int i = 0; i < R1_BPE_CP_MAX; i++)
        byte_of[i] = -1;
    for (int i = 0; i < 256; i++)
        byte_of[cp[i]] = (int16_t)i;
    int n = b->tokens.n;
    b->raw.base = malloc(b->tokens.off[n] ? b->tokens.off[n] : 1);
    b->raw.off = malloc(sizeof(size_t) * (size_t)(n + 1));
    if (!b->raw.base || !b->raw.off)
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d token pieces", n);
    b->raw.n = n;
    size_t at = 0;
    for (int id = 0; id < n; id++) {
        size_t len;
        const char *t = strs_get(&b->tokens, id, &len);
        b->raw.off[id] = at;
        size_t start = at, i = 0;
        bool mapped = !b->special[id];
        while (mapped && i < len) {
            uint32_t c;
            size_t k = r1_utf8_decode((const unsigned char *)t + i, len - i, &c);
            if (k == 0 || c >= R1_BPE_CP_MAX || byte_of[c] < 0)
                mapped = false;
            else
                b->raw.base[at++] = (char)byte_of[c];
            i += k;
        }
        if (!mapped) {
            at = start;
            memcpy(b->raw.base + at, t, len);
            at += len;
        }
        b->raw.base[at++] = '\0';
    }
    b->raw.off[n] = at;
    return 0;
}

/* Splits merge m into two tokens: the first space where both sides and their join are
 * tokens (a space never occurs in byte-level text, so normally there is one). */
static int parse_merge(struct bpe *b, const struct strmap *bl, int m, struct merge_slot *out)
{
    size_t len;
    const char *s = strs_get(&b->merges, m, &len);
    char buf[512];
    for (const char *sp = memchr(s, ' ', len); sp;
         sp = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))) {
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        int32_t l = strmap_get(bl, s, ll), r = strmap_get(bl, sp + 1, rl);
        if (l < 0 || r < 0 || ll + rl > sizeof(buf))
            continue;
        memcpy(buf, s, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t j = strmap_get(bl, buf, ll + rl);
        if (j < 0)
            return r1_err_set(R1_EFORMAT,
                              "tokenizer: merge %d \"%s\" makes \"%.*s\", which is "
                              "not in the vocabulary",
                              m, s, (int)(ll + rl), buf);
        *out = (struct merge_slot){pair_key(l, r), m, j};
        return 0;
    }
    return r1_err_set(R1_EFORMAT,
                      "tokenizer: merge %d \"%s\" does not name two tokens of the "
                      "vocabulary (expected \"left right\")",
                      m, s);
}

static int make_merges(struct bpe *b)
{
    struct strmap bl;
    int rc = strmap_init(&bl, &b->tokens, b->tokens.n);
    if (rc)
        return rc;
    for (int i = 0; i < b->tokens.n; i++)
        strmap_add(&bl, i);
    uint64_t cap = 16;
    while (cap < (uint64_t)b->merges.n * 2u)
        cap *= 2;
    b->mm.slot = calloc(cap, sizeof(struct merge_slot));
    b->mm.mask = cap - 1;
    if (!b->mm.slot)
        rc = r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d merges", b->merges.n);
    for (int m = 0; m < b->merges.n && !rc; m++) {
        struct merge_slot ms;
        if ((rc = parse_merge(b, &bl, m, &ms)))
            break;
        uint64_t i = mix64(ms.key) & b->mm.mask;
        while (b->mm.slot[i].key != 0 && b->mm.slot[i].key != ms.key)
            i = (i + 1) & b->mm.mask;
        if (b->mm.slot[i].key == 0) /* a repeated pair keeps its first (lowest) rank */
            b->mm.slot[i] = ms;
    }
    if (!rc) {
        uint32_t cp[256];
        r1_bpe_byte_to_cp(cp);
        for (int i = 0; i < 256; i++) {
            unsigned char u[4];
            size_t n = cp[i] < 0x80 ? 1 : 2;
            if (n == 1)
                u[0] = (unsigned char)cp[i];
            else {
                u[0] = (unsigned char)(0xC0 | (cp[i] >> 6));
                u[1] = (unsigned char)(0x80 | (cp[i] & 0x3F));
            }
            b->byte_id[i] = strmap_get(&bl, (const char *)u, n);
        }
    }
    free(bl.slot);
    return rc;
}

struct spec_key {
    unsigned char first;
    size_t len;
    int32_t id;
};

static int by_first_then_longest(const void *pa, const void *pb)
{
    const struct spec_key *a = pa, *b = pb;
    if (a->first != b->first)
        return a->first - b->first;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int make_specials(struct bpe *b)
{
    int n = 0;
    for (int i = 0; i < b->tokens.n; i++)
        n += b->special[i] && b->raw.off[i + 1] - b->raw.off[i] > 1;
    struct spec_key *keys = malloc(sizeof(*keys) * (size_t)(n ? n : 1));
    b->spec_ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!keys || !b->spec_ids) {
        free(keys);
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d special tokens", n);
    }
    int k = 0;
    for (int i = 0; i < b->tokens.n; i++) {
        size_t len;
        const char *t = strs_get(&b->raw, i, &len);
        if (b->special[i] && len > 0)
            keys[k++] = (struct spec_key){(unsigned char)t[0], len, i};
    }
    qsort(keys, (size_t)n, sizeof(*keys), by_first_then_longest);
    k = 0;
    for (int c = 0; c < 256; c++) {
        b->spec_start[c] = k;
        while (k < n && keys[k].first == c) {
            b->spec_ids[k] = keys[k].id;
            k++;
        }
    }
    b->spec_start[256] = n;
    free(keys);
    return 0;
}

static int copy_pretok(struct bpe *b, const struct r1_bpe_spec *spec)
{
    size_t total = 1;
    for (int i = 0; i < spec->n_pretok; i++)
        if (spec->pretok[i].kind == R1_PRETOK_SPLIT && spec->pretok[i].pattern)
            total += strlen(spec->pretok[i].pattern) + 1;
    b->pretok = calloc((size_t)(spec->n_pretok ? spec->n_pretok : 1), sizeof(*b->pretok));
    b->pretok_text = malloc(total);
    if (!b->pretok || !b->pretok_text)
        return r1_err_set(R1_ENOMEM, "tokenizer: out of memory for the pre-tokenizers");
    b->n_pretok = spec->n_pretok;
    size_t at = 0;
    for (int i = 0; i < spec->n_pretok; i++) {
        b->pretok[i] = spec->pretok[i];
        if (spec->pretok[i].kind == R1_PRETOK_SPLIT && spec->pretok[i].pattern) {
            size_t l = strlen(spec->pretok[i].pattern) + 1;
            memcpy(b->pretok_text + at, spec->pretok[i].pattern, l);
            b->pretok[i].pattern = b->pretok_text + at;
            at += l;
        } else {
            b->pretok[i].pattern = NULL;
        }
    }
    return r1_pretok_compile(&b->pl, b->pretok, b->n_pretok);
}

static void bpe_free(struct bpe *b)
{
    if (!b)
        return;
    strs_free(&b->tokens);
    strs_free(&b->raw);
    strs_free(&b->merges);
    free(b->special);
    free(b->raw_map.slot);
    free(b->mm.slot);
    free(b->spec_ids);
    free(b->pretok);
    free(b->pretok_text);
    r1_pretok_free(b->pl);
    free(b->cache);
    free(b->tok_ptrs);
    free(b->merge_ptrs);
    free(b);
}

static void bpe_release(struct r1_tokenizer *tok)
{
    struct bpe *b = tok->ctx;
    if (b)
        pthread_mutex_destroy(&b->lock);
    bpe_free(b);
    tok->ctx = NULL;
}

/* --- encoding ------------------------------------------------------------------------- */

struct sym { /* one symbol of a piece being merged; id -1 once merged into its left */
    int32_t id, prev, next;
};

struct cand { /* a candidate merge of the symbol at pos with its right neighbour */
    int32_t rank, pos, merged;
};

struct enc { /* one encode call */
    const struct bpe *b;
    int32_t **ids;
    int *n, *cap;
    struct sym *sym;
    size_t sym_cap;
    struct cand *heap;
    size_t heap_n, heap_cap;
};

static int push_id(struct enc *e, int32_t id)
{
    if (*e->n == *e->cap) {
        if (*e->cap > INT_MAX / 2)
            return r1_err_set(R1_EINVAL, "BPE tokenizer: text too long (more than %d tokens)",
                              INT_MAX / 2);
        int cap = *e->cap ? *e->cap * 2 : 256;
        int32_t *g = realloc(*e->ids, sizeof(int32_t) * (size_t)cap);
        if (!g)
            return r1_err_set(R1_ENOMEM, "BPE tokenizer: cannot grow the id array to %d", cap);
        *e->ids = g;
        *e->cap = cap;
    }
    (*e->ids)[(*e->n)++] = id;
    return 0;
}

static bool cand_before(const struct cand *a, const struct cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

/* Pushes the merge of symbols l and its right neighbour r, when there is one. */
static void heap_push_pair(struct enc *e, int32_t l, int32_t r)
{
    const struct merge_slot *m = merge_get(&e->b->mm, e->sym[l].id, e->sym[r].id);
    if (!m)
        return;
    struct cand c = {m->rank, l, m->merged};
    size_t i = e->heap_n++; /* capacity: at most 2 pushes per merge + len - 1, reserved */
    while (i > 0 && cand_before(&c, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = c;
}

static struct cand heap_pop(struct enc *e)
{
    struct cand top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_before(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!cand_before(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

static int reserve(struct enc *e, size_t len)
{
    if (len > e->sym_cap) {
        free(e->sym);
        free(e->heap);
        e->sym_cap = len * 2;
        e->heap_cap = 3 * e->sym_cap;
        e->sym = malloc(sizeof(*e->sym) * e->sym_cap);
        e->heap = malloc(sizeof(*e->heap) * e->heap_cap);
        if (!e->sym || !e->heap) {
            e->sym_cap = 0;
            return r1_err_set(R1_ENOMEM, "BPE tokenizer: out of memory for a piece of %zu bytes",
                              len);
        }
    }
    return 0;
}

static bool cache_get(const struct bpe *b, uint32_t h, const char *p, size_t len, struct enc *e,
                      int *rc)
{
    struct cache_entry *c = &b->cache[h & (CACHE_N - 1)];
    int32_t ids[CACHE_IDS];
    int n = -1;
    pthread_mutex_lock((pthread_mutex_t *)&b->lock);
    if (c->klen == len && memcmp(c->key, p, len) == 0) {
        n = c->nids;
        memcpy(ids, c->ids, sizeof(int32_t) * (size_t)n);
    }
    pthread_mutex_unlock((pthread_mutex_t *)&b->lock);
    for (int i = 0; i < n && *rc == 0; i++)
        *rc = push_id(e, ids[i]);
    return n >= 0;
}

static void cache_put(const struct bpe *b, uint32_t h, const char *p, size_t len,
                      const int32_t *ids, int n)
{
    if (n > CACHE_IDS)
        return;
    struct cache_entry *c = &b->cache[h & (CACHE_N - 1)];
    pthread_mutex_lock((pthread_mutex_t *)&b->lock);
    c->klen = (uint8_t)len;
    c->nids = (uint8_t)n;
    memcpy(c->key, p, len);
    memcpy(c->ids, ids, sizeof(int32_t) * (size_t)n);
    pthread_mutex_unlock((pthread_mutex_t *)&b->lock);
}

/* The ids of one pre-token: its bytes, merged by rank. */
static int encode_word(void *arg, const char *p, size_t len)
{
    struct enc *e = arg;
    const struct bpe *b = e->b;
    if (b->ignore_merges && len > 1) {
        int32_t id = strmap_get(&b->raw_map, p, len);
        if (id >= 0)
            return push_id(e, id);
    }
    uint32_t h = 0;
    int rc = 0;
    bool cacheable = len > 1 && len <= CACHE_KEY;
    if (cacheable) {
        h = hash_bytes(p, len);
        if (cache_get(b, h, p, len, e, &rc))
            return rc;
    }
    if ((rc = reserve(e, len)))
        return rc;
    struct sym *s = e->sym;
    for (size_t i = 0; i < len; i++) {
        int32_t id = b->byte_id[(unsigned char)p[i]];
        if (id < 0)
            return r1_err_set(R1_EINVAL,
                              "BPE tokenizer: byte 0x%02x of the text has no token in "
                              "this vocabulary, so it cannot be encoded",
                              (unsigned char)p[i]);
        s[i] = (struct sym){id, (int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1};
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < len; i++)
        heap_push_pair(e, (int32_t)i, (int32_t)i + 1);
    while (e->heap_n > 0) {
        struct cand c = heap_pop(e);
        int32_t nx = s[c.pos].next;
        if (s[c.pos].id < 0 || nx < 0)
            continue;
        const struct merge_slot *m = merge_get(&b->mm, s[c.pos].id, s[nx].id);
        if (!m || m->merged != c.merged) /* stale: the pair changed since it was pushed */
            continue;
        s[c.pos].id = c.merged;
        s[c.pos].next = s[nx].next;
        if (s[nx].next >= 0)
            s[s[nx].next].prev = c.pos;
        s[nx].id = -1;
        if (s[c.pos].prev >= 0)
            heap_push_pair(e, s[c.pos].prev, c.pos);
        if (s[c.pos].next >= 0)
            heap_push_pair(e, c.pos, s[c.pos].next);
    }
    int first = *e->n;
    for (int32_t i = 0; i >= 0 && rc == 0; i = s[i].next)
        rc = push_id(e, s[i].id);
    if (rc == 0 && cacheable)
        cache_put(b, h, p, len, *e->ids + first, *e->n - first);
    return rc;
}

/* Text between special tokens: NFC when asked, pre-tokenize, BPE each piece. */
static int encode_plain(struct enc *e, const char *text, size_t len)
{
    if (len == 0)
        return 0;
    char *norm = NULL;
    size_t nlen = 0;
    int rc = e->b->nfc ? r1_bpe_nfc(text, len, &norm, &nlen) : 0;
    if (rc == 0)
        rc = r1_pretok_split(e->b->pl, norm ? norm : text, norm ? nlen : len, encode_word, e);
    free(norm);
    return rc;
}

/* The longest special token at text[0..len), or -1; *slen its length. */
static int32_t match_special(const struct bpe *b, const char *text, size_t len, size_t *slen)
{
    unsigned char c = (unsigned char)text[0];
    for (int k = b->spec_start[c]; k < b->spec_start[c + 1]; k++) {
        size_t l;
        const char *t = strs_get(&b->raw, b->spec_ids[k], &l);
        if (l <= len && memcmp(t, text, l) == 0) {
            *slen = l;
            return b->spec_ids[k];
        }
    }
    return -1;
}

static int bpe_encode(const struct r1_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                      int *n, int *cap)
{
    struct enc e = {.b = tok->ctx, .ids = ids, .n = n, .cap = cap};
    const struct bpe *b = e.b;
    size_t seg = 0, i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        unsigned char c = (unsigned char)text[i];
        size_t slen = 0;
        int32_t id = b->spec_start[c] < b->spec_start[c + 1]
                         ? match_special(b, text + i, len - i, &slen)
                         : -1;
        if (id < 0) {
            i++;
            continue;
        }
        if ((rc = encode_plain(&e, text + seg, i - seg)) == 0)
            rc = push_id(&e, id);
        i += slen;
        seg = i;
    }
    if (rc == 0)
        rc = encode_plain(&e, text + seg, len - seg);
    free(e.sym);
    free(e.heap);
    return rc;
}

static const char *bpe_piece(const struct r1_tokenizer *tok, int32_t id, size_t *len)
{
    const struct bpe *b = tok->ctx;
    if (id < 0 || id >= b->raw.n) {
        *len = 0;
        return NULL;
    }
    return strs_get(&b->raw, id, len);
}

static int32_t bpe_lookup(const struct r1_tokenizer *tok, const char *text)
{
    const struct bpe *b = tok->ctx;
    size_t len = strlen(text);
    if (len == 0)
        return -1;
    for (int k = b->spec_start[(unsigned char)text[0]];
         k < b->spec_start[(unsigned char)text[0] + 1]; k++) { /* specials first */
        size_t l;
        const char *t = strs_get(&b->raw, b->spec_ids[k], &l);
        if (l == len && memcmp(t, text, l) == 0)
            return b->spec_ids[k];
    }
    return strmap_get(&b->raw_map, text, len);
}

static const struct r1_tokenizer_ops bpe_ops = {
    .name = "bpe",
    .encode = bpe_encode,
    .piece = bpe_piece,
    .lookup = bpe_lookup,
    .release = bpe_release,
};

int r1_tokenizer_bpe_create(struct r1_tokenizer **out, const struct r1_bpe_spec *spec)
{
    *out = NULL;
    if (spec->n_vocab <= 0 || !spec->tokens || spec->n_merges < 0 ||
        (spec->n_merges > 0 && !spec->merges) || spec->n_pretok < 0 ||
        (spec->n_pretok > 0 && !spec->pretok))
        return r1_err_set(R1_EINVAL,
                          "tokenizer: BPE spec with %d tokens and %d merges is "
                          "incomplete",
                          spec->n_vocab, spec->n_merges);
    int32_t ids[3] = {spec->bos_id, spec->eos_id, spec->pad_id};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= spec->n_vocab)
            return r1_err_set(R1_EFORMAT, "tokenizer: %s id %d is outside the vocabulary [0, %d)",
                              i == 0   ? "bos"
                              : i == 1 ? "eos"
                                       : "pad",
                              (int)ids[i], spec->n_vocab);
    struct bpe *b = calloc(1, sizeof(*b));
    struct r1_tokenizer *tok = calloc(1, sizeof(*tok));
    int rc = 0;
    if (!b || !tok || !(b->special = calloc((size_t)spec->n_vocab, sizeof(bool))) ||
        !(b->cache = calloc(CACHE_N, sizeof(struct cache_entry)))) {
        rc = r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d tokens", spec->n_vocab);
        goto out;
    }
    if (spec->special)
        memcpy(b->special, spec->special, sizeof(bool) * (size_t)spec->n_vocab);
    b->nfc = spec->nfc;
    b->ignore_merges = spec->ignore_merges;
    if ((rc = strs_copy(&b->tokens, spec->tokens, spec->n_vocab, "token")) ||
        (rc = strs_copy(&b->merges, spec->merges, spec->n_merges, "merge")) || (rc = make_raw(b)) ||
        (rc = make_merges(b)) || (rc = make_specials(b)) || (rc = copy_pretok(b, spec)) ||
        (rc = strmap_init(&b->raw_map, &b->raw, spec->n_vocab)))
        goto out;
    for (int i = 0; i < spec->n_vocab; i++)
        if (!b->special[i])
            strmap_add(&b->raw_map, i);
    b->tok_ptrs = malloc(sizeof(char *) * (size_t)spec->n_vocab);
    b->merge_ptrs = malloc(sizeof(char *) * (size_t)(spec->n_merges ? spec->n_merges : 1));
    if (!b->tok_ptrs || !b->merge_ptrs) {
        rc = r1_err_set(R1_ENOMEM, "tokenizer: out of memory for %d tokens", spec->n_vocab);
        goto out;
    }
    for (int i = 0; i < spec->n_vocab; i++)
        b->tok_ptrs[i] = b->tokens.base + b->tokens.off[i];
    for (int i = 0; i < spec->n_merges; i++)
        b->merge_ptrs[i] = b->merges.base + b->merges.off[i];
    pthread_mutex_init(&b->lock, NULL);
    tok->ops = &bpe_ops;
    tok->ctx = b;
    tok->vocab_size = spec->n_vocab;
    tok->bos_id = spec->bos_id;
    tok->eos_id = spec->eos_id;
    tok->pad_id = spec->pad_id;
    *out = tok;
    return 0;
out:
    bpe_free(b);
    free(tok);
    return rc;
}

int r1_tokenizer_bpe_spec(const struct r1_tokenizer *tok, struct r1_bpe_spec *spec)
{
    if (!tok || tok->ops != &bpe_ops)
        return r1_err_set(R1_EINVAL, "tokenizer: a %s tokenizer is not BPE",
                          tok ? tok->ops->name : "NULL");
    const struct bpe *b = tok->ctx;
    memset(spec, 0, sizeof(*spec));
    spec->tokens = b->tok_ptrs;
    spec->merges = b->merge_ptrs;
    spec->n_vocab = b->tokens.n;
    spec->n_merges = b->merges.n;
    spec->special = b->special;
    spec->n_pretok = b->n_pretok;
    spec->pretok = b->pretok;
    spec->nfc = b->nfc;
    spec->ignore_merges = b->ignore_merges;
    spec->bos_id = tok->bos_id;
    spec->eos_id = tok->eos_id;
    spec->pad_id = tok->pad_id;
    return 0;
}
