/* gguf.c - the GGUF reader: mapping, header, metadata, tensor infos (see gguf.h).
 *
 * Parsing walks a cursor over the mapped bytes; every read first checks that the
 * bytes are there, so a truncated or lying file stops with R1_EFORMAT naming the
 * file, the byte offset and the key or tensor being read.  Counts are bounded by the
 * bytes left before anything is allocated for them. */
#include "core/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY 1024

struct cursor {
    const uint8_t *p;
    uint64_t pos, size;
    const char *path;
    const char *what; /* the key or tensor being read, for messages */
};

static int truncated(const struct cursor *c, uint64_t need)
{
    return r1_err_set(R1_EFORMAT,
                      "%s: truncated at byte %llu reading %s (needs %llu more bytes, the file "
                      "has %llu); the file is incomplete or corrupt, download it again",
                      c->path, (unsigned long long)c->pos, c->what, (unsigned long long)need,
                      (unsigned long long)c->size);
}

static int take(struct cursor *c, void *dst, uint64_t n)
{
    if (n > c->size - c->pos)
        return truncated(c, n);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int take_u32(struct cursor *c, uint32_t *v)
{
    return take(c, v, 4);
}
static int take_u64(struct cursor *c, uint64_t *v)
{
    return take(c, v, 8);
}

/* A GGUF string as a malloc'd NUL-terminated copy; *len (may be NULL) its length. */
static int take_str(struct cursor *c, char **out, uint64_t *len, uint64_t max)
{
    uint64_t n = 0;
    int rc = take_u64(c, &n);
    if (rc)
        return rc;
    if (n > c->size - c->pos)
        return r1_err_set(R1_EFORMAT,
                          "%s: %s: a string of %llu bytes at byte %llu runs past the end of "
                          "the file (%llu bytes); the file is corrupt",
                          c->path, c->what, (unsigned long long)n, (unsigned long long)c->pos,
                          (unsigned long long)c->size);
    if (n > max)
        return r1_err_set(R1_EFORMAT, "%s: %s: a string of %llu bytes is longer than %llu", c->path,
                          c->what, (unsigned long long)n, (unsigned long long)max);
    char *s = malloc(n + 1);
    if (!s)
        return r1_err_set(R1_ENOMEM, "%s: out of memory reading %s", c->path, c->what);
    memcpy(s, c->p + c->pos, n);
    s[n] = '\0';
    c->pos += n;
    *out = s;
    if (len)
        *len = n;
    return 0;
}

static const uint8_t scalar_size[R1_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const type_names[R1_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

static bool is_int_type(enum r1_gguf_type t)
{
    return t <= R1_GGUF_I32 || t == R1_GGUF_U64 || t == R1_GGUF_I64;
}

static bool is_signed_type(enum r1_gguf_type t)
{
    return t == R1_GGUF_I8 || t == R1_GGUF_I16 || t == R1_GGUF_I32 || t == R1_GGUF_I64;
}

/* Reads one scalar of type t (not string/array) into kv->v. */
static void decode_scalar(struct r1_gguf_kv *kv, enum r1_gguf_type t, const uint8_t *b)
{
    switch (t) {
    case R1_GGUF_U8:
        kv->v.u = b[0];
        break;
    case R1_GGUF_I8:
        kv->v.i = (int8_t)b[0];
        break;
    case R1_GGUF_BOOL:
        kv->v.u = b[0] != 0;
        break;
    case R1_GGUF_U16: {
        uint16_t x;
        memcpy(&x, b, 2);
        kv->v.u = x;
        break;
    }
    case R1_GGUF_I16: {
        int16_t x;
        memcpy(&x, b, 2);
        kv->v.i = x;
        break;
    }
    case R1_GGUF_U32: {
        uint32_t x;
        memcpy(&x, b, 4);
        kv->v.u = x;
        break;
    }
    case R1_GGUF_I32: {
        int32_t x;
        memcpy(&x, b, 4);
        kv->v.i = x;
        break;
    }
    case R1_GGUF_F32: {
        float x;
        memcpy(&x, b, 4);
        kv->v.f = x;
        break;
    }
    case R1_GGUF_U64:
        memcpy(&kv->v.u, b, 8);
        break;
    case R1_GGUF_I64:
        memcpy(&kv->v.i, b, 8);
        break;
    case R1_GGUF_F64:
        memcpy(&kv->v.f, b, 8);
        break;
    default:
        break;
    }
}

static int bad_type(const struct cursor *c, uint32_t t)
{
    return r1_err_set(R1_EFORMAT,
                      "%s: %s: unknown value type %u at byte %llu; the file is "
                      "corrupt or from a newer GGUF version",
                      c->path, c->what, t, (unsigned long long)(c->pos - 4));
}

/* Skips a nested array (arrays of arrays are legal but nothing r1 reads uses them). */
static int skip_value(struct cursor *c, uint32_t t, int depth)
{
    if (t >= R1_GGUF_TYPE_COUNT)
        return bad_type(c, t);
    if (t == R1_GGUF_STRING) {
        uint64_t n = 0;
        int rc = take_u64(c, &n);
        if (rc)
            return rc;
        if (n > c->size - c->pos)
            return truncated(c, n);
        c->pos += n;
        return 0;
    }
    if (t != R1_GGUF_ARRAY) {
        if (scalar_size[t] > c->size - c->pos)
            return truncated(c, scalar_size[t]);
        c->pos += scalar_size[t];
        return 0;
    }
    if (depth > 8)
        return r1_err_set(R1_EFORMAT, "%s: %s: arrays nested too deep", c->path, c->what);
    uint32_t et = 0;
    uint64_t n = 0;
    int rc;
    if ((rc = take_u32(c, &et)) || (rc = take_u64(c, &n)))
        return rc;
    for (uint64_t i = 0; i < n; i++)
        if ((rc = skip_value(c, et, depth + 1)))
            return rc;
    return 0;
}

static int read_array(struct cursor *c, struct r1_gguf_kv *kv)
{
    uint32_t et = 0;
    uint64_t n = 0;
    int rc;
    if ((rc = take_u32(c, &et)) || (rc = take_u64(c, &n)))
        return rc;
    if (et >= R1_GGUF_TYPE_COUNT)
        return bad_type(c, et);
    kv->arr_type = et;
    kv->n = n;
    uint64_t left = c->size - c->pos;
    /* each element takes at least one byte (a string eight): bound n before allocating */
    uint64_t min_size = et == R1_GGUF_STRING ? 8 : et == R1_GGUF_ARRAY ? 12 : scalar_size[et];
    if (n > left / min_size)
        return r1_err_set(R1_EFORMAT,
                          "%s: %s: an array of %llu elements at byte %llu runs past the end of "
                          "the file (%llu bytes); the file is corrupt",
                          c->path, c->what, (unsigned long long)n, (unsigned long long)c->pos,
                          (unsigned long long)c->size);
    if (et == R1_GGUF_ARRAY) {
        for (uint64_t i = 0; i < n; i++)
            if ((rc = skip_value(c, et, 1)))
                return rc;
        return 0;
    }
    if (et == R1_GGUF_STRING) {
        kv->strs = calloc(n ? n : 1, sizeof(char *));
        kv->lens = calloc(n ? n : 1, sizeof(uint64_t));
        if (!kv->strs || !kv->lens)
            return r1_err_set(R1_ENOMEM, "%s: out of memory reading %s", c->path, c->what);
        for (uint64_t i = 0; i < n; i++)
            if ((rc = take_str(c, &kv->strs[i], &kv->lens[i], UINT64_MAX)))
                return rc;
        return 0;
    }
    size_t sz = scalar_size[et];
    kv->arr = malloc(n ? n * sz : 1);
    if (!kv->arr)
        return r1_err_set(R1_ENOMEM, "%s: out of memory reading %s", c->path, c->what);
    return take(c, kv->arr, n * sz);
}

static int read_kv(struct cursor *c, struct r1_gguf_kv *kv, uint64_t index)
{
    char where[64];
    snprintf(where, sizeof(where), "metadata entry %llu", (unsigned long long)index);
    c->what = where;
    int rc = take_str(c, &kv->key, NULL, GGUF_MAX_KEY);
    if (rc)
        return rc;
    char what[GGUF_MAX_KEY + 16];
    snprintf(what, sizeof(what), "key '%s'", kv->key);
    c->what = what;
    uint32_t t = 0;
    if ((rc = take_u32(c, &t)))
        goto out;
    if (t >= R1_GGUF_TYPE_COUNT) {
        rc = bad_type(c, t);
        goto out;
    }
    kv->type = t;
    kv->n = 1;
    if (t == R1_GGUF_STRING)
        rc = take_str(c, &kv->str, NULL, UINT64_MAX);
    else if (t == R1_GGUF_ARRAY)
        rc = read_array(c, kv);
    else {
        uint8_t b[8];
        if (!(rc = take(c, b, scalar_size[t])))
            decode_scalar(kv, t, b);
    }
out:
    c->what = "metadata";
    return rc;
}

const char *r1_ggml_type_name(int type)
{
    static const char *const names[] = {
        "F32",      "F16",      "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
        "Q8_0",     "Q8_1",     "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
        "IQ2_XXS",  "IQ2_XS",   "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8",       "I16",      "I32",     "I64",   "F64",    "IQ1_M", "BF16",  "Q4_0_4_4",
        "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0",
    };
    static _Thread_local char buf[32];
    if (type >= 0 && (size_t)type < sizeof(names) / sizeof(names[0]))
        return names[type];
    snprintf(buf, sizeof(buf), "type %d", type);
    return buf;
}

static int check_tensor_info(struct cursor *c, struct r1_gguf_tensor *t, const uint32_t type,
                             uint32_t ndim, const uint64_t *dims)
{
    if (ndim == 0 || ndim > R1_GGUF_MAX_DIMS)
        return r1_err_set(R1_EFORMAT, "%s: tensor '%s' has %u dimensions; GGUF allows 1 to %d",
                          c->path, t->name, ndim, R1_GGUF_MAX_DIMS);
    if (r1_ggml_block_size((int)type) == 0)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s' has ggml type %s, which r1 cannot read (it reads F32, "
                          "F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K); convert the "
                          "model with one of those",
                          c->path, t->name, r1_ggml_type_name((int)type));
    t->type = type;
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    for (int d = 0; d < R1_GGUF_MAX_DIMS; d++) {
        uint64_t v = d < (int)ndim ? dims[d] : 1;
        if (v == 0 || v > ((uint64_t)1 << 40) || numel > (((uint64_t)1 << 42) / v))
            return r1_err_set(R1_EFORMAT,
                              "%s: tensor '%s': dimension %d is %llu; the file is "
                              "corrupt",
                              c->path, t->name, d, (unsigned long long)v);
        numel *= v;
        t->ne[d] = (int64_t)v;
    }
    int bs = r1_ggml_block_size((int)type);
    if (t->ne[0] % bs != 0)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': rows of %lld elements are not whole "
                          "%s blocks of %d",
                          c->path, t->name, (long long)t->ne[0], r1_ggml_type_name((int)type), bs);
    t->nbytes = numel / (uint64_t)bs * r1_ggml_block_bytes((int)type);
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const struct r1_gguf_tensor *x = *(const struct r1_gguf_tensor *const *)a;
    const struct r1_gguf_tensor *y = *(const struct r1_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Offsets: aligned, inside the file, no two tensors sharing bytes. */
static int check_layout(struct r1_gguf *g)
{
    int rc = 0;
    struct r1_gguf_tensor **order = malloc(sizeof(*order) * (size_t)(g->n_tensors + 1));
    if (!order)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", g->path);
    uint64_t data_size = g->file_size - g->data_start;
    for (int i = 0; i < g->n_tensors; i++) {
        struct r1_gguf_tensor *t = &g->tensors[i];
        order[i] = t;
        if (t->offset % g->alignment != 0) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tensor '%s': offset %llu is not a multiple of the "
                            "alignment %llu; the file is corrupt",
                            g->path, t->name, (unsigned long long)t->offset,
                            (unsigned long long)g->alignment);
            goto out;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tensor '%s' (%llu bytes at data offset %llu) runs "
                            "past the end of the file (%llu data bytes); the file is truncated "
                            "or corrupt",
                            g->path, t->name, (unsigned long long)t->nbytes,
                            (unsigned long long)t->offset, (unsigned long long)data_size);
            goto out;
        }
        t->data = g->map + g->data_start + t->offset;
    }
    qsort(order, (size_t)g->n_tensors, sizeof(*order), cmp_offset);
    for (int i = 1; i < g->n_tensors; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tensors '%s' and '%s' overlap (offsets %llu and "
                            "%llu); the file is corrupt",
                            g->path, order[i - 1]->name, order[i]->name,
                            (unsigned long long)order[i - 1]->offset,
                            (unsigned long long)order[i]->offset);
            goto out;
        }
out:
    free(order);
    return rc;
}

static int parse(struct r1_gguf *g)
{
    struct cursor c = {g->map, 0, g->file_size, g->path, "the header"};
    char magic[4];
    uint64_t n_tensors = 0, n_kv = 0;
    int rc;
    if ((rc = take(&c, magic, 4)))
        return rc;
    if (memcmp(magic, "GGUF", 4) != 0)
        return r1_err_set(R1_EFORMAT,
                          "%s: not a GGUF file (bad magic %02x %02x %02x %02x, want "
                          "\"GGUF\")",
                          g->path, (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2],
                          (uint8_t)magic[3]);
    if ((rc = take_u32(&c, &g->version)))
        return rc;
    if (g->version != 2 && g->version != 3)
        return r1_err_set(R1_EFORMAT,
                          "%s: GGUF version %u is not supported; r1 reads versions 2 "
                          "and 3 (little-endian)%s",
                          g->path, g->version,
                          g->version == 1       ? "; re-convert the model with a current llama.cpp"
                          : g->version > 0xffff ? "; this looks like a big-endian file"
                                                : "");
    if ((rc = take_u64(&c, &n_tensors)) || (rc = take_u64(&c, &n_kv)))
        return rc;
    /* a metadata entry takes at least 13 bytes, a tensor info at least 28 */
    if (n_kv > (c.size - c.pos) / 13 || n_tensors > (c.size - c.pos) / 28 || n_tensors > 1 << 24)
        return r1_err_set(R1_EFORMAT,
                          "%s: the header claims %llu tensors and %llu metadata "
                          "entries, more than the file can hold; it is truncated or corrupt",
                          g->path, (unsigned long long)n_tensors, (unsigned long long)n_kv);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(*g->tensors));
    if (!g->kv || !g->tensors)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int)i + 1;
        if ((rc = read_kv(&c, &g->kv[i], i)))
            return rc;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, g->kv[i].key) == 0)
                return r1_err_set(R1_EFORMAT, "%s: key '%s' appears twice", g->path, g->kv[i].key);
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct r1_gguf_kv *al = r1_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != R1_GGUF_U32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) != 0)
            return r1_err_set(R1_EFORMAT,
                              "%s: key 'general.alignment' must be a u32 power of "
                              "two",
                              g->path);
        g->alignment = al->v.u;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        struct r1_gguf_tensor *t = &g->tensors[i];
        char where[64];
        snprintf(where, sizeof(where), "tensor info %llu", (unsigned long long)i);
        c.what = where;
        g->n_tensors = (int)i + 1;
        if ((rc = take_str(&c, &t->name, NULL, GGUF_MAX_KEY)))
            return rc;
        char what[GGUF_MAX_KEY + 16];
        snprintf(what, sizeof(what), "tensor '%s'", t->name);
        c.what = what;
        uint32_t ndim = 0, type = 0;
        uint64_t dims[R1_GGUF_MAX_DIMS] = {0};
        if ((rc = take_u32(&c, &ndim)))
            return rc;
        if (ndim == 0 || ndim > R1_GGUF_MAX_DIMS)
            return r1_err_set(R1_EFORMAT,
                              "%s: tensor '%s' has %u dimensions; GGUF allows 1 to "
                              "%d",
                              g->path, t->name, ndim, R1_GGUF_MAX_DIMS);
        for (uint32_t d = 0; d < ndim; d++)
            if ((rc = take_u64(&c, &dims[d])))
                return rc;
        if ((rc = take_u32(&c, &type)) || (rc = take_u64(&c, &t->offset)))
            return rc;
        if ((rc = check_tensor_info(&c, t, type, ndim, dims)))
            return rc;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0)
                return r1_err_set(R1_EFORMAT, "%s: tensor '%s' appears twice", g->path, t->name);
    }
    uint64_t start = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (start > g->file_size && n_tensors > 0) {
        c.what = "the padding before the tensor data";
        return truncated(&c, start - c.pos);
    }
    g->data_start = start > g->file_size ? g->file_size : start;
    return check_layout(g);
}

int r1_gguf_open(struct r1_gguf **out, const char *path)
{
    *out = NULL;
    struct r1_gguf *g = calloc(1, sizeof(*g));
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return r1_err_set(R1_ENOMEM, "%s: out of memory", path);
    }
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot open (%s); check the path", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = r1_err_set(R1_EINVAL, "%s: not a regular file; give a .gguf file", path);
        goto out;
    }
    g->file_size = (uint64_t)st.st_size;
    if (g->file_size == 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: the file is empty; it is not a GGUF model", path);
        goto out;
    }
    void *map = mmap(NULL, g->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = r1_err_set(R1_EIO, "%s: cannot map (%s)", path, strerror(errno));
        goto out;
    }
    g->map = map;
    rc = parse(g);
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        r1_gguf_close(g);
    else
        *out = g;
    return rc;
}

void r1_gguf_close(struct r1_gguf *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_kv; i++) {
        struct r1_gguf_kv *kv = &g->kv[i];
        if (kv->strs)
            for (uint64_t j = 0; j < kv->n; j++)
                free(kv->strs[j]);
        free(kv->strs);
        free(kv->lens);
        free(kv->arr);
        free(kv->str);
        free(kv->key);
    }
    for (int i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->map)
        munmap((void *)g->map, g->file_size);
    free(g->path);
    free(g);
}

/* ---- metadata accessors ---------------------------------------------------- */

const struct r1_gguf_kv *r1_gguf_find_kv(const struct r1_gguf *g, const char *key)
{
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0)
            return &g->kv[i];
    return NULL;
}

bool r1_gguf_has(const struct r1_gguf *g, const char *key)
{
    return r1_gguf_find_kv(g, key) != NULL;
}

static int get_kv(const struct r1_gguf *g, const char *key, const char *want,
                  const struct r1_gguf_kv **out)
{
    *out = r1_gguf_find_kv(g, key);
    if (!*out)
        return r1_err_set(R1_EFORMAT, "%s: metadata key '%s' (%s) is missing", g->path, key, want);
    return 0;
}

static int wrong_type(const struct r1_gguf *g, const struct r1_gguf_kv *kv, const char *want)
{
    return r1_err_set(R1_EFORMAT, "%s: metadata key '%s' is a %s%s%s; r1 expects %s", g->path,
                      kv->key, type_names[kv->type], kv->type == R1_GGUF_ARRAY ? " of " : "",
                      kv->type == R1_GGUF_ARRAY ? type_names[kv->arr_type] : "", want);
}

/* An integer value in [lo, hi]. */
static int get_int(const struct r1_gguf *g, const char *key, int64_t lo, uint64_t hi,
                   const char *want, int64_t *si, uint64_t *ui)
{
    const struct r1_gguf_kv *kv;
    int rc = get_kv(g, key, want, &kv);
    if (rc)
        return rc;
    if (!is_int_type(kv->type))
        return wrong_type(g, kv, want);
    bool neg = is_signed_type(kv->type) && kv->v.i < 0;
    if ((neg && kv->v.i < lo) || (!neg && kv->v.u > hi))
        return r1_err_set(R1_EFORMAT, "%s: metadata key '%s' = %lld is out of range for %s",
                          g->path, key, neg ? (long long)kv->v.i : (long long)kv->v.u, want);
    if (si)
        *si = neg ? kv->v.i : (int64_t)kv->v.u;
    if (ui)
        *ui = kv->v.u;
    return 0;
}

int r1_gguf_get_u32(const struct r1_gguf *g, const char *key, uint32_t *out)
{
    uint64_t v = 0;
    int rc = get_int(g, key, 0, UINT32_MAX, "a u32", NULL, &v);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

int r1_gguf_get_i32(const struct r1_gguf *g, const char *key, int32_t *out)
{
    int64_t v = 0;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, "an i32", &v, NULL);
    if (!rc)
        *out = (int32_t)v;
    return rc;
}

int r1_gguf_get_u64(const struct r1_gguf *g, const char *key, uint64_t *out)
{
    return get_int(g, key, 0, UINT64_MAX, "a u64", NULL, out);
}

int r1_gguf_get_f32(const struct r1_gguf *g, const char *key, float *out)
{
    const struct r1_gguf_kv *kv;
    int rc = get_kv(g, key, "a float", &kv);
    if (rc)
        return rc;
    if (kv->type != R1_GGUF_F32 && kv->type != R1_GGUF_F64)
        return wrong_type(g, kv, "a float (f32 or f64)");
    *out = (float)kv->v.f;
    return 0;
}

int r1_gguf_get_bool(const struct r1_gguf *g, const char *key, bool *out)
{
    const struct r1_gguf_kv *kv;
    int rc = get_kv(g, key, "a bool", &kv);
    if (rc)
        return rc;
    if (kv->type != R1_GGUF_BOOL)
        return wrong_type(g, kv, "a bool");
    *out = kv->v.u != 0;
    return 0;
}

int r1_gguf_get_str(const struct r1_gguf *g, const char *key, const char **out)
{
    const struct r1_gguf_kv *kv;
    int rc = get_kv(g, key, "a string", &kv);
    if (rc)
        return rc;
    if (kv->type != R1_GGUF_STRING)
        return wrong_type(g, kv, "a string");
    *out = kv->str;
    return 0;
}

int r1_gguf_get_array(const struct r1_gguf *g, const char *key, enum r1_gguf_type want,
                      struct r1_gguf_array *out)
{
    const struct r1_gguf_kv *kv;
    memset(out, 0, sizeof(*out));
    int rc = get_kv(g, key, "an array", &kv);
    if (rc)
        return rc;
    if (kv->type != R1_GGUF_ARRAY || kv->arr_type == R1_GGUF_ARRAY ||
        (want != R1_GGUF_TYPE_COUNT && kv->arr_type != want)) {
        char w[48];
        snprintf(w, sizeof(w), "an array of %s",
                 want == R1_GGUF_TYPE_COUNT ? "scalars or strings" : type_names[want]);
        return wrong_type(g, kv, w);
    }
    out->type = kv->arr_type;
    out->n = kv->n;
    out->data = kv->arr;
    out->strs = (const char *const *)kv->strs;
    out->lens = kv->lens;
    return 0;
}

int r1_gguf_get_strs(const struct r1_gguf *g, const char *key, const char *const **strs,
                     uint64_t *n)
{
    struct r1_gguf_array a;
    int rc = r1_gguf_get_array(g, key, R1_GGUF_STRING, &a);
    if (rc)
        return rc;
    *strs = a.strs;
    *n = a.n;
    return 0;
}

int r1_gguf_get_i32s(const struct r1_gguf *g, const char *key, int32_t **out, uint64_t *n)
{
    struct r1_gguf_array a;
    *out = NULL;
    int rc = r1_gguf_get_array(g, key, R1_GGUF_TYPE_COUNT, &a);
    if (rc)
        return rc;
    if (!is_int_type(a.type)) {
        const struct r1_gguf_kv *kv = r1_gguf_find_kv(g, key);
        return wrong_type(g, kv, "an array of integers");
    }
    int32_t *v = malloc((a.n ? a.n : 1) * sizeof(int32_t));
    if (!v)
        return r1_err_set(R1_ENOMEM, "%s: out of memory reading '%s'", g->path, key);
    size_t sz = scalar_size[a.type];
    for (uint64_t i = 0; i < a.n; i++) {
        struct r1_gguf_kv tmp = {0};
        decode_scalar(&tmp, a.type, (const uint8_t *)a.data + i * sz);
        bool neg = is_signed_type(a.type) && tmp.v.i < 0;
        if ((neg && tmp.v.i < INT32_MIN) || (!neg && tmp.v.u > INT32_MAX)) {
            free(v);
            return r1_err_set(R1_EFORMAT,
                              "%s: metadata key '%s': element %llu does not fit "
                              "an i32",
                              g->path, key, (unsigned long long)i);
        }
        v[i] = (int32_t)(neg ? tmp.v.i : (int64_t)tmp.v.u);
    }
    *out = v;
    *n = a.n;
    return 0;
}

/* ---- tensors ------------------------------------------------------------------ */

const struct r1_gguf_tensor *r1_gguf_find_tensor(const struct r1_gguf *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

int64_t r1_gguf_tensor_numel(const struct r1_gguf_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int r1_gguf_read_f32(const struct r1_gguf *g, const struct r1_gguf_tensor *t, float *dst)
{
    int rc = r1_ggml_dequantize(t->type, t->data, dst, r1_gguf_tensor_numel(t));
    if (rc)
        r1_err_wrap(rc, "%s: tensor '%s'", g->path, t->name);
    return rc;
}
