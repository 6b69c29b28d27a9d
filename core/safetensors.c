/* safetensors.c - reading .safetensors files (see safetensors.h); the writer is in
 * safetensors-write.c.
 *
 * Reading: r1_st_open() reads the 8-byte length and the JSON header, checks
 * every entry against the file (dtype, shape, offsets, sizes, overlaps) and
 * keeps the FILE * open; tensors are read on demand with fseeko/fread.  A
 * struct r1_st_file is not safe to read from two threads at once (one FILE
 * position).  Ranges need not cover the data region contiguously (the reference
 * reader requires that; r1 only requires that they do not overlap).
 *
 * Byte order: safetensors is little-endian; r1 supports little-endian hosts only. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fseeko, ftello, fileno */
#endif
#include "core/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/err.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_HEADER_MAX 100000000ull /* same cap as the reference implementation */
#define ST_CHUNK_ELEMS 65536       /* elements converted per buffered chunk */

/* --- reading ------------------------------------------------------------------ */

static int st_dtype_parse(const char *s, enum r1_dtype *out)
{
    static const char *const names[] = {"F32", "BF16", "F16", "I32"};
    static const enum r1_dtype dts[] = {R1_F32, R1_BF16, R1_F16, R1_I32};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = dts[i];
            return 1;
        }
    }
    return 0;
}

/* dtypes the format defines that r1 does not read */
static int st_dtype_known(const char *s)
{
    static const char *const names[] = {
        "BOOL",    "U8",      "I8",      "I16",     "U16",         "U32",
        "I64",     "U64",     "F64",     "C64",     "F4",          "F6_E2M3",
        "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0)
            return 1;
    return 0;
}

static const char *st_json_type(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "?";
    }
}

#define ST_CORRUPT "the file is truncated or corrupt; re-download or re-export it"

static int st_parse_meta(struct r1_st_file *f, json_t *meta)
{
    if (json_is_null(meta))
        return R1_OK;
    if (!json_is_object(meta))
        return r1_err_set(R1_EFORMAT,
                          "%s: header key '__metadata__' is %s, expected an object "
                          "of strings; " ST_CORRUPT,
                          f->path, st_json_type(meta));
    size_t n = json_object_size(meta);
    f->meta_keys = calloc(n ? n : 1, sizeof(char *));
    f->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values)
        return r1_err_set(R1_ENOMEM, "%s: out of memory reading the header metadata", f->path);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val)
    {
        if (!json_is_string(val))
            return r1_err_set(R1_EFORMAT,
                              "%s: __metadata__ key '%s' is %s, expected a string; " ST_CORRUPT,
                              f->path, key, st_json_type(val));
        char *k = strdup(key), *v = strdup(json_string_value(val));
        if (!k || !v) {
            free(k);
            free(v);
            return r1_err_set(R1_ENOMEM, "%s: out of memory reading the header metadata", f->path);
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_values[f->n_meta] = v;
        f->n_meta++;
    }
    return R1_OK;
}

/* Fills e (except name) from the JSON entry obj of tensor name; data_size is the
 * size of the data region. */
static int st_parse_entry(const struct r1_st_file *f, const char *name, json_t *obj,
                          uint64_t data_size, struct r1_st_entry *e)
{
    if (!json_is_object(obj))
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': header entry is %s, expected an object; " ST_CORRUPT,
                          f->path, name, st_json_type(obj));

    json_t *jd = json_object_get(obj, "dtype");
    if (!jd || !json_is_string(jd))
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': key 'dtype' is %s, expected a string; " ST_CORRUPT,
                          f->path, name, jd ? st_json_type(jd) : "missing");
    const char *ds = json_string_value(jd);
    if (!st_dtype_parse(ds, &e->dtype)) {
        if (st_dtype_known(ds))
            return r1_err_set(R1_EFORMAT,
                              "%s: unsupported dtype %s for tensor '%s'; r1 reads F32, "
                              "BF16, F16, I32 (convert the file first)",
                              f->path, ds, name);
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': unknown dtype '%s'; r1 reads F32, BF16, "
                          "F16, I32; " ST_CORRUPT,
                          f->path, name, ds);
    }

    json_t *js = json_object_get(obj, "shape");
    if (!js || !json_is_array(js))
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': key 'shape' is %s, expected an array; " ST_CORRUPT,
                          f->path, name, js ? st_json_type(js) : "missing");
    size_t nd = json_array_size(js);
    if (nd > R1_TENSOR_MAX_DIMS)
        return r1_err_set(R1_EFORMAT, "%s: tensor '%s': shape has %zu dims; r1 supports at most %d",
                          f->path, name, nd, R1_TENSOR_MAX_DIMS);
    e->ndim = (int)nd;
    int has_zero = 0;
    for (size_t i = 0; i < R1_TENSOR_MAX_DIMS; i++)
        e->shape[i] = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return r1_err_set(R1_EFORMAT,
                              "%s: tensor '%s': shape[%zu] is %s, expected a "
                              "non-negative integer; " ST_CORRUPT,
                              f->path, name, i, json_is_integer(d) ? "negative" : st_json_type(d));
        e->shape[i] = (int64_t)json_integer_value(d);
        has_zero |= e->shape[i] == 0;
    }
    /* bytes = numel * element size, refused past INT64_MAX (no file is that big) */
    uint64_t bytes = has_zero ? 0 : r1_dtype_size(e->dtype);
    for (size_t i = 0; i < nd && bytes; i++) {
        if (bytes > (uint64_t)INT64_MAX / (uint64_t)e->shape[i])
            return r1_err_set(R1_EFORMAT,
                              "%s: tensor '%s': shape size overflows 64 bits; " ST_CORRUPT, f->path,
                              name);
        bytes *= (uint64_t)e->shape[i];
    }
    e->nbytes = bytes;

    json_t *jo = json_object_get(obj, "data_offsets");
    if (!jo || !json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': key 'data_offsets' is %s, expected "
                          "[begin, end] integers; " ST_CORRUPT,
                          f->path, name,
                          !jo                 ? "missing"
                          : json_is_array(jo) ? "malformed"
                                              : st_json_type(jo));
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': data_offsets [%lld, %lld) is not a valid "
                          "range; " ST_CORRUPT,
                          f->path, name, (long long)b, (long long)en);
    if ((uint64_t)en > data_size)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': data_offsets [%lld, %lld) end past the "
                          "data region (%llu bytes); " ST_CORRUPT,
                          f->path, name, (long long)b, (long long)en,
                          (unsigned long long)data_size);
    if ((uint64_t)(en - b) != e->nbytes)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': data_offsets [%lld, %lld) hold %lld bytes "
                          "but dtype %s and its shape need %llu; " ST_CORRUPT,
                          f->path, name, (long long)b, (long long)en, (long long)(en - b), ds,
                          (unsigned long long)e->nbytes);
    e->offset = (uint64_t)b;
    return R1_OK;
}

struct st_range {
    uint64_t begin, end;
    int idx;
};

static int st_cmp_range(const void *pa, const void *pb)
{
    const struct st_range *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

/* Empty ranges overlap nothing; the others must be disjoint. */
static int st_check_overlap(const struct r1_st_file *f)
{
    if (f->n < 2)
        return R1_OK;
    struct st_range *r = malloc((size_t)f->n * sizeof(*r));
    if (!r)
        return r1_err_set(R1_ENOMEM, "%s: out of memory checking the header", f->path);
    int m = 0;
    for (int i = 0; i < f->n; i++) {
        const struct r1_st_entry *e = &f->entries[i];
        if (e->nbytes)
            r[m++] = (struct st_range){e->offset, e->offset + e->nbytes, i};
    }
    qsort(r, (size_t)m, sizeof(*r), st_cmp_range);
    int rc = R1_OK;
    for (int i = 1; i < m; i++) {
        if (r[i].begin < r[i - 1].end) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) have "
                            "overlapping data_offsets; " ST_CORRUPT,
                            f->path, f->entries[r[i - 1].idx].name,
                            (unsigned long long)r[i - 1].begin, (unsigned long long)r[i - 1].end,
                            f->entries[r[i].idx].name, (unsigned long long)r[i].begin,
                            (unsigned long long)r[i].end);
            break;
        }
    }
    free(r);
    return rc;
}

static int st_parse_header(struct r1_st_file *f, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return r1_err_set(R1_EFORMAT,
                          "%s: header JSON is invalid at byte %d (line %d, column %d): "
                          "%s; " ST_CORRUPT,
                          f->path, jerr.position + 8, jerr.line, jerr.column, jerr.text);
    int rc = R1_OK;
    if (!json_is_object(root)) {
        rc = r1_err_set(R1_EFORMAT, "%s: header JSON is %s, expected an object; " ST_CORRUPT,
                        f->path, st_json_type(root));
        goto out;
    }
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta)
        n--;
    if (n > INT32_MAX) {
        rc = r1_err_set(R1_EFORMAT, "%s: header lists %zu tensors; too many", f->path, n);
        goto out;
    }
    f->entries = calloc(n ? n : 1, sizeof(*f->entries));
    if (!f->entries) {
        rc =
            r1_err_set(R1_ENOMEM, "%s: out of memory reading the header (%zu tensors)", f->path, n);
        goto out;
    }
    if (meta && (rc = st_parse_meta(f, meta)) != R1_OK)
        goto out;
    uint64_t data_size = f->file_size - f->data_start;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        struct r1_st_entry *e = &f->entries[f->n];
        if ((rc = st_parse_entry(f, key, val, data_size, e)) != R1_OK)
            goto out;
        if (!(e->name = strdup(key))) {
            rc = r1_err_set(R1_ENOMEM, "%s: out of memory reading the header", f->path);
            goto out;
        }
        f->n++;
    }
    rc = st_check_overlap(f);
out:
    json_decref(root);
    return rc;
}

int r1_st_open(struct r1_st_file **out, const char *path)
{
    *out = NULL;
    if (!path)
        return r1_err_set(R1_EINVAL, "safetensors open: no path given");
    struct r1_st_file *f = calloc(1, sizeof(*f));
    char *hdr = NULL;
    FILE *fp = NULL;
    struct stat st;
    unsigned char lenb[8];
    uint64_t hlen = 0;
    int rc = R1_OK;
    if (!f || !(f->path = strdup(path))) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory opening the file", path);
        goto out;
    }
    fp = fopen(path, "rb");
    if (!fp) {
        rc = r1_err_set(R1_EIO, "%s: cannot open: %s; check the path and its permissions", path,
                        strerror(errno));
        goto out;
    }
    f->fp = fp;
    if (fstat(fileno(fp), &st) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = r1_err_set(R1_EIO, "%s: not a regular file; pass a .safetensors file", path);
        goto out;
    }
    f->file_size = (uint64_t)st.st_size;
    if (f->file_size < 8) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s: file is %llu bytes, shorter than the 8-byte header "
                        "length; " ST_CORRUPT,
                        path, (unsigned long long)f->file_size);
        goto out;
    }
    if (fread(lenb, 1, 8, fp) != 8) {
        rc = r1_err_set(R1_EIO, "%s: cannot read the header length: %s", path,
                        ferror(fp) ? strerror(errno) : "unexpected end of file");
        goto out;
    }
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lenb[i];
    if (hlen < 2 || hlen > f->file_size - 8 || hlen > ST_HEADER_MAX) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s: header length %llu at byte 0 is invalid (need 2 to %llu "
                        "for this %llu-byte file, at most %llu); " ST_CORRUPT,
                        path, (unsigned long long)hlen,
                        (unsigned long long)(f->file_size - 8 < ST_HEADER_MAX ? f->file_size - 8
                                                                              : ST_HEADER_MAX),
                        (unsigned long long)f->file_size, (unsigned long long)ST_HEADER_MAX);
        goto out;
    }
    f->data_start = 8 + hlen;
    hdr = malloc((size_t)hlen);
    if (!hdr) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory reading the %llu-byte header", path,
                        (unsigned long long)hlen);
        goto out;
    }
    if (fread(hdr, 1, (size_t)hlen, fp) != (size_t)hlen) {
        rc = r1_err_set(R1_EIO, "%s: cannot read the %llu-byte header: %s", path,
                        (unsigned long long)hlen,
                        ferror(fp) ? strerror(errno) : "unexpected end of file");
        goto out;
    }
    rc = st_parse_header(f, hdr, (size_t)hlen);
out:
    free(hdr);
    if (rc != R1_OK) {
        r1_st_close(f);
        return rc;
    }
    *out = f;
    return R1_OK;
}

void r1_st_close(struct r1_st_file *f)
{
    if (!f)
        return;
    if (f->fp)
        fclose(f->fp);
    if (f->entries)
        for (int i = 0; i < f->n; i++)
            free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
}

const struct r1_st_entry *r1_st_find(const struct r1_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->entries[i].name, name) == 0)
            return &f->entries[i];
    return NULL;
}

const char *r1_st_meta(const struct r1_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

/* Reads bytes at offset off of e's data into dst. */
static int st_read_at(const struct r1_st_file *f, const struct r1_st_entry *e, uint64_t off,
                      void *dst, size_t bytes)
{
    if (bytes == 0)
        return R1_OK;
    FILE *fp = f->fp;
    uint64_t pos = f->data_start + e->offset + off;
    if (pos > (uint64_t)INT64_MAX || fseeko(fp, (off_t)pos, SEEK_SET) != 0)
        return r1_err_set(R1_EIO, "%s: tensor '%s': cannot seek to byte %llu: %s", f->path, e->name,
                          (unsigned long long)pos, strerror(errno));
    if (fread(dst, 1, bytes, fp) != bytes) {
        int err = ferror(fp);
        clearerr(fp);
        if (err)
            return r1_err_set(R1_EIO, "%s: tensor '%s': read of %zu bytes at byte %llu failed: %s",
                              f->path, e->name, bytes, (unsigned long long)pos, strerror(errno));
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s': file ends before byte %llu; it shrank "
                          "after it was opened, or is truncated; re-download or "
                          "re-export it",
                          f->path, e->name, (unsigned long long)(pos + bytes));
    }
    return R1_OK;
}

int r1_st_read_raw(const struct r1_st_file *f, const struct r1_st_entry *e, void *dst,
                   size_t nbytes)
{
    if (!f || !e || (!dst && nbytes))
        return r1_err_set(R1_EINVAL, "safetensors read: no file, entry or buffer given");
    if ((uint64_t)nbytes != e->nbytes)
        return r1_err_set(R1_EINVAL,
                          "%s: tensor '%s': asked for %zu bytes but it holds %llu; "
                          "the caller's shape or dtype does not match the file",
                          f->path, e->name, nbytes, (unsigned long long)e->nbytes);
    return st_read_at(f, e, 0, dst, nbytes);
}

/* I32 is refused with R1_EFORMAT: the file holds integers where floats are expected. */
int r1_st_read_f32(const struct r1_st_file *f, const struct r1_st_entry *e, float *dst, int64_t n)
{
    if (!f || !e || (!dst && n))
        return r1_err_set(R1_EINVAL, "safetensors read: no file, entry or buffer given");
    uint64_t numel = e->nbytes / r1_dtype_size(e->dtype);
    if (n < 0 || (uint64_t)n != numel)
        return r1_err_set(R1_EINVAL,
                          "%s: tensor '%s': asked for %lld elements but it holds %llu; "
                          "the model's shape does not match the file",
                          f->path, e->name, (long long)n, (unsigned long long)numel);
    switch (e->dtype) {
    case R1_F32:
        return st_read_at(f, e, 0, dst, (size_t)e->nbytes);
    case R1_BF16:
    case R1_F16:
        break;
    default:
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s' is stored as %s, expected a floating-point "
                          "dtype (F32, BF16, F16); the file does not match the model",
                          f->path, e->name, r1_dtype_name(e->dtype));
    }
    if (numel == 0)
        return R1_OK;
    size_t chunk = numel < ST_CHUNK_ELEMS ? (size_t)numel : ST_CHUNK_ELEMS;
    uint16_t *buf = malloc(chunk * sizeof(uint16_t));
    if (!buf)
        return r1_err_set(R1_ENOMEM, "%s: tensor '%s': out of memory for the read buffer", f->path,
                          e->name);
    int rc = R1_OK;
    for (uint64_t i = 0; i < numel; i += chunk) {
        size_t m = numel - i < chunk ? (size_t)(numel - i) : chunk;
        if ((rc = st_read_at(f, e, i * 2, buf, m * 2)) != R1_OK)
            break;
        r1_convert_to_f32(dst + i, buf, e->dtype, (int64_t)m);
    }
    free(buf);
    return rc;
}
