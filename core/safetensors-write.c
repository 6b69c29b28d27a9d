/* safetensors-write.c - writing .safetensors files (r1_st_writer_*, see safetensors.h).
 *
 * Tensors sorted by name (strcmp), compact JSON header with __metadata__ first
 * and per tensor the keys dtype, shape, data_offsets, padded with spaces to a
 * multiple of 8 bytes; written to path.tmp, flushed, fsynced and renamed over
 * path.  On failure nothing is left at path.tmp.
 *
 * Byte order: safetensors is little-endian; r1 supports little-endian hosts only. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fileno, fsync */
#endif
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors-write.c assumes a little-endian host"
#endif

#define ST_CHUNK_ELEMS 65536 /* elements converted per buffered chunk */

struct r1_st_wentry {
    char *name;
    enum r1_dtype dtype; /* stored dtype */
    int ndim;
    int64_t shape[R1_TENSOR_MAX_DIMS];
    uint64_t nbytes;  /* stored size */
    const void *data; /* borrowed */
    int src_f32;      /* data is f32, converted to dtype at write time */
};

struct r1_st_writer {
    int n, cap;
    struct r1_st_wentry *e;
    int n_meta, cap_meta;
    char **meta_keys, **meta_values;
};

int r1_st_writer_create(struct r1_st_writer **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
    return R1_OK;
}

void r1_st_writer_free(struct r1_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    free(w->e);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}

/* Replaces the value when key is already set. */
int r1_st_writer_meta(struct r1_st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return r1_err_set(R1_EINVAL, "safetensors writer: metadata key or value missing");
    char *v = strdup(value);
    if (!v)
        return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return R1_OK;
        }
    }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof(char *));
        if (k)
            w->meta_keys = k;
        char **vv = k ? realloc(w->meta_values, (size_t)cap * sizeof(char *)) : NULL;
        if (vv)
            w->meta_values = vv;
        if (!k || !vv) {
            free(v);
            return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
        }
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_values[w->n_meta] = v;
    w->n_meta++;
    return R1_OK;
}

static int st_writer_push(struct r1_st_writer *w, const char *name, enum r1_dtype dt, int ndim,
                          const int64_t *shape, const void *data, int src_f32)
{
    if (!w || !name)
        return r1_err_set(R1_EINVAL, "safetensors writer: no tensor name given");
    if (strcmp(name, "__metadata__") == 0)
        return r1_err_set(R1_EINVAL, "safetensors writer: '__metadata__' is reserved and cannot "
                                     "name a tensor");
    if ((unsigned)dt >= R1_DTYPE_COUNT)
        return r1_err_set(R1_EINVAL, "safetensors writer: tensor '%s': invalid dtype %d", name,
                          (int)dt);
    if (src_f32 && dt == R1_I32)
        return r1_err_set(R1_EINVAL,
                          "safetensors writer: tensor '%s': f32 data cannot be written "
                          "as I32; use r1_st_writer_add with int32 data",
                          name);
    if (ndim < 0 || ndim > R1_TENSOR_MAX_DIMS || (ndim > 0 && !shape))
        return r1_err_set(R1_EINVAL, "safetensors writer: tensor '%s': %d dims; 0 to %d allowed",
                          name, ndim, R1_TENSOR_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return r1_err_set(R1_EINVAL,
                              "safetensors writer: tensor '%s': shape[%d] = %lld is "
                              "negative",
                              name, i, (long long)shape[i]);
        if (shape[i] && numel > (uint64_t)INT64_MAX / 4 / (uint64_t)shape[i])
            return r1_err_set(R1_EINVAL, "safetensors writer: tensor '%s': shape too large", name);
        numel *= (uint64_t)shape[i];
    }
    if (numel && !data)
        return r1_err_set(R1_EINVAL, "safetensors writer: tensor '%s': no data given", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return r1_err_set(R1_EINVAL, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        struct r1_st_wentry *e = realloc(w->e, (size_t)cap * sizeof(*e));
        if (!e)
            return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    struct r1_st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(name)))
        return r1_err_set(R1_ENOMEM, "safetensors writer: out of memory");
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->nbytes = numel * r1_dtype_size(dt);
    e->data = data;
    e->src_f32 = src_f32;
    w->n++;
    return R1_OK;
}

int r1_st_writer_add(struct r1_st_writer *w, const char *name, enum r1_dtype dt, int ndim,
                     const int64_t *shape, const void *data)
{
    return st_writer_push(w, name, dt, ndim, shape, data, 0);
}

int r1_st_writer_add_f32(struct r1_st_writer *w, const char *name, enum r1_dtype dt, int ndim,
                         const int64_t *shape, const float *data)
{
    return st_writer_push(w, name, dt, ndim, shape, data, 1);
}

/* Larger element sizes first, then by name (as the reference writer does): every
 * tensor then starts at a multiple of its element size, which mmap readers need. */
static int st_cmp_name(const void *pa, const void *pb)
{
    const struct r1_st_wentry *a = pa, *b = pb;
    size_t sa = r1_dtype_size(a->dtype), sb = r1_dtype_size(b->dtype);
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* {"dtype":..,"shape":[..],"data_offsets":[off,off+nbytes]}, or NULL when out of memory. */
static json_t *st_entry_json(const struct r1_st_wentry *e, uint64_t off)
{
    json_t *t = json_object();
    if (!t)
        return NULL;
    json_t *shp = json_array(), *offs = json_array();
    /* set_new takes the reference even when it fails, so t owns shp and offs after this */
    int bad = json_object_set_new(t, "dtype", json_string(r1_dtype_name(e->dtype)));
    bad |= json_object_set_new(t, "shape", shp);
    bad |= json_object_set_new(t, "data_offsets", offs);
    for (int d = 0; !bad && d < e->ndim; d++)
        bad = json_array_append_new(shp, json_integer(e->shape[d]));
    if (!bad)
        bad = json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + e->nbytes)));
    if (bad) {
        json_decref(t);
        return NULL;
    }
    return t;
}

/* Builds the padded header text (caller frees) for the sorted entries. */
static int st_build_header(const struct r1_st_writer *w, const char *path, char **out,
                           size_t *out_len)
{
    *out = NULL;
    json_t *root = json_object();
    int rc = R1_OK;
    if (!root)
        return r1_err_set(R1_ENOMEM, "%s: out of memory building the header", path);
    if (w->n_meta) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) != 0) {
            rc = r1_err_set(R1_ENOMEM, "%s: out of memory building the header", path);
            goto out;
        }
        for (int i = 0; i < w->n_meta; i++) {
            json_t *s = json_string(w->meta_values[i]);
            if (!s || json_object_set_new(m, w->meta_keys[i], s) != 0) {
                rc = r1_err_set(R1_EINVAL,
                                "%s: metadata key '%s' or its value is not valid "
                                "UTF-8",
                                path, w->meta_keys[i]);
                goto out;
            }
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const struct r1_st_wentry *e = &w->e[i];
        json_t *t = st_entry_json(e, off);
        if (!t) {
            rc = r1_err_set(R1_ENOMEM, "%s: out of memory building the header", path);
            goto out;
        }
        if (json_object_set_new(root, e->name, t) != 0) {
            rc = r1_err_set(R1_EINVAL, "%s: tensor name '%s' is not valid UTF-8", path, e->name);
            goto out;
        }
        off += e->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory serialising the header", path);
        goto out;
    }
    size_t len = strlen(s), padded = (len + 7) & ~(size_t)7;
    char *h = malloc(padded);
    if (!h) {
        free(s);
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory serialising the header", path);
        goto out;
    }
    memcpy(h, s, len);
    memset(h + len, ' ', padded - len);
    free(s);
    *out = h;
    *out_len = padded;
out:
    json_decref(root);
    return rc;
}

static int st_write_bytes(FILE *fp, const void *p, size_t n, const char *tmp)
{
    if (n && fwrite(p, 1, n, fp) != n)
        return r1_err_set(R1_EIO, "%s: write failed: %s; check free disk space and permissions",
                          tmp, strerror(errno));
    return R1_OK;
}

static int st_write_entry(FILE *fp, const struct r1_st_wentry *e, const char *tmp)
{
    if (!e->src_f32 || e->dtype == R1_F32)
        return st_write_bytes(fp, e->data, (size_t)e->nbytes, tmp);
    uint64_t numel = e->nbytes / r1_dtype_size(e->dtype);
    if (numel == 0)
        return R1_OK;
    size_t chunk = numel < ST_CHUNK_ELEMS ? (size_t)numel : ST_CHUNK_ELEMS;
    size_t esz = r1_dtype_size(e->dtype);
    char *buf = malloc(chunk * esz);
    if (!buf)
        return r1_err_set(R1_ENOMEM, "%s: tensor '%s': out of memory for the conversion buffer",
                          tmp, e->name);
    const float *src = e->data;
    int rc = R1_OK;
    for (uint64_t i = 0; i < numel && rc == R1_OK; i += chunk) {
        size_t m = numel - i < chunk ? (size_t)(numel - i) : chunk;
        r1_convert_from_f32(buf, e->dtype, src + i, (int64_t)m);
        rc = st_write_bytes(fp, buf, m * esz, tmp);
    }
    free(buf);
    return rc;
}

/* Makes the rename durable; best effort (the file itself is already complete). */
static void st_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? malloc((size_t)(slash - path) + 2) : strdup(".");
    if (!dir)
        return;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int r1_st_writer_write(struct r1_st_writer *w, const char *path)
{
    if (!w || !path)
        return r1_err_set(R1_EINVAL, "safetensors writer: no writer or path given");
    if (w->n > 1)
        qsort(w->e, (size_t)w->n, sizeof(*w->e), st_cmp_name);
    char *hdr = NULL, *tmp = NULL;
    size_t hlen = 0;
    FILE *fp = NULL;
    int rc = st_build_header(w, path, &hdr, &hlen);
    if (rc != R1_OK)
        return rc;
    size_t plen = strlen(path);
    tmp = malloc(plen + 5);
    if (!tmp) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fp = fopen(tmp, "wb");
    if (!fp) {
        rc = r1_err_set(R1_EIO,
                        "%s: cannot create: %s; check that the directory exists and is "
                        "writable",
                        tmp, strerror(errno));
        goto out;
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if ((rc = st_write_bytes(fp, lenb, 8, tmp)) != R1_OK ||
        (rc = st_write_bytes(fp, hdr, hlen, tmp)) != R1_OK)
        goto fail;
    for (int i = 0; i < w->n; i++)
        if ((rc = st_write_entry(fp, &w->e[i], tmp)) != R1_OK)
            goto fail;
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        rc = r1_err_set(R1_EIO, "%s: flush to disk failed: %s; check free disk space", tmp,
                        strerror(errno));
        goto fail;
    }
    int cerr = fclose(fp);
    fp = NULL;
    if (cerr != 0) {
        rc =
            r1_err_set(R1_EIO, "%s: close failed: %s; check free disk space", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot rename %s over it: %s; check permissions", path, tmp,
                        strerror(errno));
        goto fail;
    }
    st_sync_dir(path);
    goto out;
fail:
    if (fp)
        fclose(fp);
    remove(tmp);
out:
    free(tmp);
    free(hdr);
    return rc;
}
