/* test-safetensors.c - unit tests for core/safetensors.c: writer/reader round
 * trips, the exact bytes written, atomic writes, every class of corrupt file
 * (each must give R1_EFORMAT naming the file, never a crash), and a fixture
 * written by the reference Python library (tests/fixtures/ref.safetensors, made
 * by tools/make-st-fixture.py).
 *
 * Temporary files live in a mkdtemp() directory removed by the group teardown.
 * The fixture is looked up under $R1_SRC (the source root; tests/meson.build
 * sets it), then next to this source file (__FILE__), then in tests/fixtures
 * under the working directory. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/safetensors.h"
#include "core/tensor.h"

static char tmp_dir[256];

static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, fp), (size_t)sz);
    fclose(fp);
    *n = (size_t)sz;
    return p;
}

/* Writes a safetensors file by hand: header length hlen (as stored), JSON text,
 * then ndata bytes 0..ndata-1. */
static void write_st_raw(const char *path, uint64_t hlen, const char *json, size_t ndata)
{
    size_t jl = strlen(json);
    unsigned char *p = malloc(8 + jl + ndata + 1);
    assert_non_null(p);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(p + 8, json, jl);
    for (size_t i = 0; i < ndata; i++)
        p[8 + jl + i] = (unsigned char)i;
    write_bytes(path, p, 8 + jl + ndata);
    free(p);
}

static void write_st(const char *path, const char *json, size_t ndata)
{
    write_st_raw(path, strlen(json), json, ndata);
}

/* Opening path must fail with code, leave *out NULL, and name the file (and
 * contain want when given). */
static void expect_open_fails(const char *path, int code, const char *want)
{
    struct r1_st_file *f = (struct r1_st_file *)&f; /* must be reset to NULL */
    r1_err_clear();
    int rc = r1_st_open(&f, path);
    if (rc != code || !strstr(r1_err_last(), path) || (want && !strstr(r1_err_last(), want)))
        print_error("open %s: rc %d, message: %s\n", path, rc, r1_err_last());
    assert_int_equal(rc, code);
    assert_null(f);
    assert_non_null(strstr(r1_err_last(), path));
    if (want)
        assert_non_null(strstr(r1_err_last(), want));
}

static int rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                    continue;
                char sub[1024];
                snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        return rmdir(path);
    }
    return unlink(path);
}

static int group_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/r1-test-st-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return rm_tree(tmp_dir);
}

/* --- round trips ---------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    const char *path = tpath("rt.safetensors");
    const float a[6] = {1.0f, -2.0f, 3.5f, 0.0f, -0.0f, 1e30f};
    const uint16_t b16[4] = {0x3f80, 0xc000, 0x7f80, 0x0001}; /* BF16 raw */
    const uint16_t h16[4] = {0x3c00, 0xfbff, 0x0001, 0x8400}; /* F16 raw */
    const int32_t iv[3] = {-1, 0, INT32_MAX};
    const float scalar = 42.5f;
    const float conv[5] = {1.0f / 3.0f, -65519.0f, 1e-7f, 3.0e38f, 0.1f};

    struct r1_st_writer *w;
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    const int64_t sa[] = {2, 3}, sb[] = {4}, sh[] = {2, 2}, si[] = {3}, se[] = {0, 4}, sc[] = {5};
    /* added out of name order on purpose */
    assert_int_equal(r1_st_writer_add(w, "z.f32", R1_F32, 2, sa, a), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "b.bf16", R1_BF16, 1, sb, b16), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "h.f16", R1_F16, 2, sh, h16), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "i.i32", R1_I32, 1, si, iv), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "a.scalar", R1_F32, 0, NULL, &scalar), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "e.empty", R1_F32, 2, se, NULL), R1_OK);
    assert_int_equal(r1_st_writer_add_f32(w, "c.as_bf16", R1_BF16, 1, sc, conv), R1_OK);
    assert_int_equal(r1_st_writer_add_f32(w, "d.as_f16", R1_F16, 1, sc, conv), R1_OK);
    assert_int_equal(r1_st_writer_add_f32(w, "f.as_f32", R1_F32, 1, sc, conv), R1_OK);
    assert_int_equal(r1_st_writer_meta(w, "format", "pt"), R1_OK);
    assert_int_equal(r1_st_writer_meta(w, "note", "old"), R1_OK);
    assert_int_equal(r1_st_writer_meta(w, "note", "ünïcode \"quoted\"\n"), R1_OK); /* replaces */
    assert_int_equal(r1_st_writer_write(w, path), R1_OK);
    r1_st_writer_free(w);
    assert_false(file_exists(tpath("rt.safetensors.tmp")));

    struct r1_st_file *f;
    assert_int_equal(r1_st_open(&f, path), R1_OK);
    assert_string_equal(f->path, path);
    assert_int_equal(f->n, 9);
    /* contiguous; larger element sizes first, then by name; each tensor aligned */
    uint64_t off = 0;
    for (int i = 0; i < 9; i++) {
        const struct r1_st_entry *cur = &f->entries[i];
        assert_int_equal(cur->offset, off);
        assert_int_equal(cur->offset % r1_dtype_size(cur->dtype), 0);
        if (i > 0) {
            const struct r1_st_entry *prev = &f->entries[i - 1];
            size_t sp = r1_dtype_size(prev->dtype), sc2 = r1_dtype_size(cur->dtype);
            assert_true(sp > sc2 || (sp == sc2 && strcmp(prev->name, cur->name) < 0));
        }
        off += cur->nbytes;
    }
    assert_int_equal(f->data_start % 8, 0);
    assert_int_equal(f->file_size, f->data_start + off);
    assert_int_equal(f->n_meta, 2);
    assert_string_equal(r1_st_meta(f, "format"), "pt");
    assert_string_equal(r1_st_meta(f, "note"), "ünïcode \"quoted\"\n");
    assert_null(r1_st_meta(f, "absent"));
    assert_null(r1_st_find(f, "absent"));

    const struct r1_st_entry *e = r1_st_find(f, "z.f32");
    assert_non_null(e);
    assert_int_equal(e->dtype, R1_F32);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 2);
    assert_int_equal(e->shape[1], 3);
    float fb[6];
    assert_int_equal(r1_st_read_f32(f, e, fb, 6), R1_OK);
    assert_memory_equal(fb, a, sizeof(a));

    e = r1_st_find(f, "b.bf16");
    assert_int_equal(e->dtype, R1_BF16);
    uint16_t raw[4];
    assert_int_equal(r1_st_read_raw(f, e, raw, sizeof(raw)), R1_OK);
    assert_memory_equal(raw, b16, sizeof(b16));
    assert_int_equal(r1_st_read_f32(f, e, fb, 4), R1_OK);
    for (int i = 0; i < 4; i++)
        assert_true(memcmp(&fb[i], &(float){r1_bf16_to_f32(b16[i])}, 4) == 0);

    e = r1_st_find(f, "h.f16");
    assert_int_equal(e->dtype, R1_F16);
    assert_int_equal(r1_st_read_raw(f, e, raw, sizeof(raw)), R1_OK);
    assert_memory_equal(raw, h16, sizeof(h16));
    assert_int_equal(r1_st_read_f32(f, e, fb, 4), R1_OK);
    assert_true(fb[0] == 1.0f && fb[1] == -65504.0f && fb[2] == ldexpf(1.0f, -24) &&
                fb[3] == -ldexpf(1.0f, -14));

    e = r1_st_find(f, "i.i32");
    assert_int_equal(e->dtype, R1_I32);
    int32_t ib[3];
    assert_int_equal(r1_st_read_raw(f, e, ib, sizeof(ib)), R1_OK);
    assert_memory_equal(ib, iv, sizeof(iv));
    r1_err_clear();
    assert_int_equal(r1_st_read_f32(f, e, fb, 3), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "i.i32"));

    e = r1_st_find(f, "a.scalar");
    assert_int_equal(e->ndim, 0);
    assert_int_equal(e->nbytes, 4);
    assert_int_equal(r1_st_read_f32(f, e, fb, 1), R1_OK);
    assert_true(fb[0] == 42.5f);

    e = r1_st_find(f, "e.empty");
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[1], 4);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(r1_st_read_f32(f, e, NULL, 0), R1_OK);
    assert_int_equal(r1_st_read_raw(f, e, NULL, 0), R1_OK);

    /* f32 written as bf16 / f16 reads back as the rounded value */
    e = r1_st_find(f, "c.as_bf16");
    assert_int_equal(e->dtype, R1_BF16);
    assert_int_equal(r1_st_read_f32(f, e, fb, 5), R1_OK);
    for (int i = 0; i < 5; i++)
        assert_true(fb[i] == r1_bf16_to_f32(r1_f32_to_bf16(conv[i])));
    e = r1_st_find(f, "d.as_f16");
    assert_int_equal(e->dtype, R1_F16);
    assert_int_equal(r1_st_read_f32(f, e, fb, 5), R1_OK);
    for (int i = 0; i < 5; i++)
        assert_true(fb[i] == r1_f16_to_f32(r1_f32_to_f16(conv[i])));
    assert_true(isinf(fb[3]));
    e = r1_st_find(f, "f.as_f32");
    assert_int_equal(r1_st_read_f32(f, e, fb, 5), R1_OK);
    assert_memory_equal(fb, conv, sizeof(conv));

    /* wrong sizes are the caller's error */
    assert_int_equal(r1_st_read_f32(f, e, fb, 4), R1_EINVAL);
    assert_int_equal(r1_st_read_raw(f, e, fb, 19), R1_EINVAL);
    r1_st_close(f);
}

/* Larger than the internal conversion chunk, in both directions. */
static void test_large_chunked(void **state)
{
    (void)state;
    const char *path = tpath("large.safetensors");
    enum { N = 200003 };
    float *src = malloc(N * sizeof(float)), *dst = malloc(N * sizeof(float));
    assert_non_null(src);
    assert_non_null(dst);
    for (int i = 0; i < N; i++)
        src[i] = sinf((float)i * 0.001f) * 100.0f;
    struct r1_st_writer *w;
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    const int64_t s[] = {N};
    assert_int_equal(r1_st_writer_add_f32(w, "bf", R1_BF16, 1, s, src), R1_OK);
    assert_int_equal(r1_st_writer_add_f32(w, "hf", R1_F16, 1, s, src), R1_OK);
    assert_int_equal(r1_st_writer_write(w, path), R1_OK);
    r1_st_writer_free(w);

    struct r1_st_file *f;
    assert_int_equal(r1_st_open(&f, path), R1_OK);
    assert_int_equal(r1_st_read_f32(f, r1_st_find(f, "bf"), dst, N), R1_OK);
    for (int i = 0; i < N; i++)
        assert_true(dst[i] == r1_bf16_to_f32(r1_f32_to_bf16(src[i])));
    assert_int_equal(r1_st_read_f32(f, r1_st_find(f, "hf"), dst, N), R1_OK);
    for (int i = 0; i < N; i++)
        assert_true(dst[i] == r1_f16_to_f32(r1_f32_to_f16(src[i])));
    r1_st_close(f);
    free(src);
    free(dst);
}

/* The bytes themselves: length prefix, padding, compact header, data layout. */
static void test_file_bytes(void **state)
{
    (void)state;
    const char *path = tpath("bytes.safetensors");
    struct r1_st_writer *w;
    const float x[2] = {1.0f, 2.0f};
    const uint16_t y[3] = {0x3f80, 0x4000, 0x4040};
    const int64_t s2[] = {2}, s3[] = {1, 3};
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "y", R1_BF16, 2, s3, y), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "x", R1_F32, 1, s2, x), R1_OK);
    assert_int_equal(r1_st_writer_meta(w, "k", "v"), R1_OK);
    assert_int_equal(r1_st_writer_write(w, path), R1_OK);
    r1_st_writer_free(w);

    size_t n;
    unsigned char *p = read_bytes(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(n, 8 + hlen + 8 + 6);
    const char *want = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"y\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]}}";
    size_t wl = strlen(want);
    assert_true(hlen >= wl && hlen < wl + 8);
    assert_memory_equal(p + 8, want, wl);
    for (size_t i = wl; i < hlen; i++)
        assert_int_equal(p[8 + i], ' ');
    /* the header parses as JSON on its own */
    json_error_t jerr;
    json_t *j = json_loadb((const char *)p + 8, (size_t)hlen, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_object(json_object_get(j, "__metadata__")));
    json_decref(j);
    assert_memory_equal(p + 8 + hlen, x, 8);
    assert_memory_equal(p + 8 + hlen + 8, y, 6);
    free(p);

    /* an empty writer gives the smallest valid file: "{}" padded to 8 */
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    assert_int_equal(r1_st_writer_write(w, path), R1_OK);
    r1_st_writer_free(w);
    p = read_bytes(path, &n);
    assert_int_equal(n, 16);
    assert_int_equal(p[0], 8);
    assert_memory_equal(p + 8, "{}      ", 8);
    free(p);
    struct r1_st_file *f;
    assert_int_equal(r1_st_open(&f, path), R1_OK);
    assert_int_equal(f->n, 0);
    assert_int_equal(f->n_meta, 0);
    r1_st_close(f);
}

/* --- the writer's failure paths ---------------------------------------------------- */

static void test_writer_errors(void **state)
{
    (void)state;
    struct r1_st_writer *w;
    const float x[4] = {1, 2, 3, 4};
    const int64_t s[] = {4}, neg[] = {-4};
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "x", R1_F32, 1, s, x), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "x", R1_F32, 1, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, "__metadata__", R1_F32, 1, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, "n", R1_F32, 1, neg, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, "d", R1_F32, 5, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, "t", R1_DTYPE_COUNT, 1, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, "m", R1_F32, 1, s, NULL), R1_EINVAL);
    assert_int_equal(r1_st_writer_add_f32(w, "i", R1_I32, 1, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_add(w, NULL, R1_F32, 1, s, x), R1_EINVAL);
    assert_int_equal(r1_st_writer_meta(w, "k", NULL), R1_EINVAL);

    /* the directory does not exist: EIO, nothing created */
    const char *nodir = tpath("no-such-dir/out.safetensors");
    r1_err_clear();
    assert_int_equal(r1_st_writer_write(w, nodir), R1_EIO);
    assert_non_null(strstr(r1_err_last(), "no-such-dir"));

    /* the rename fails (target is a non-empty directory): old target kept, tmp removed */
    const char *target = tpath("target-dir");
    assert_int_equal(mkdir(target, 0700), 0);
    write_bytes(tpath("target-dir/keep"), "k", 1);
    r1_err_clear();
    assert_int_equal(r1_st_writer_write(w, target), R1_EIO);
    assert_non_null(strstr(r1_err_last(), target));
    assert_false(file_exists(tpath("target-dir.tmp")));
    assert_true(file_exists(tpath("target-dir/keep")));

    /* invalid UTF-8 in a name is refused before anything is written */
    assert_int_equal(r1_st_writer_add(w, "bad\xff", R1_F32, 1, s, x), R1_OK);
    assert_int_equal(r1_st_writer_write(w, tpath("utf8.safetensors")), R1_EINVAL);
    assert_false(file_exists(tpath("utf8.safetensors")));
    assert_false(file_exists(tpath("utf8.safetensors.tmp")));
    r1_st_writer_free(w);

    /* overwriting an existing file replaces it whole */
    const char *path = tpath("over.safetensors");
    write_bytes(path, "old contents", 12);
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "x", R1_F32, 1, s, x), R1_OK);
    assert_int_equal(r1_st_writer_write(w, path), R1_OK);
    r1_st_writer_free(w);
    struct r1_st_file *f;
    assert_int_equal(r1_st_open(&f, path), R1_OK);
    assert_int_equal(f->n, 1);
    r1_st_close(f);
}

/* --- corrupt files -------------------------------------------------------------------- */

static void test_missing_file(void **state)
{
    (void)state;
    expect_open_fails(tpath("does-not-exist.safetensors"), R1_EIO, "cannot open");
    expect_open_fails(tmp_dir, R1_EIO, "not a regular file");
}

/* Every proper prefix of a valid file is refused. */
static void test_truncated(void **state)
{
    (void)state;
    const char *good = tpath("good.safetensors"), *cut = tpath("cut.safetensors");
    struct r1_st_writer *w;
    const float x[5] = {1, 2, 3, 4, 5};
    const uint16_t y[3] = {1, 2, 3};
    const int64_t s5[] = {5}, s3[] = {3};
    assert_int_equal(r1_st_writer_create(&w), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "a", R1_F32, 1, s5, x), R1_OK);
    assert_int_equal(r1_st_writer_add(w, "b", R1_F16, 1, s3, y), R1_OK);
    assert_int_equal(r1_st_writer_meta(w, "m", "v"), R1_OK);
    assert_int_equal(r1_st_writer_write(w, good), R1_OK);
    r1_st_writer_free(w);
    size_t n;
    unsigned char *p = read_bytes(good, &n);
    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, p, len);
        expect_open_fails(cut, R1_EFORMAT, NULL);
    }
    free(p);
}

static void test_corrupt_header(void **state)
{
    (void)state;
    const char *p = tpath("bad.safetensors");
    const char *ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

    /* sanity: the template is valid */
    struct r1_st_file *f;
    write_st(p, ok, 8);
    assert_int_equal(r1_st_open(&f, p), R1_OK);
    r1_st_close(f);

    /* header length */
    write_st_raw(p, 0, "", 16);
    expect_open_fails(p, R1_EFORMAT, "header length 0");
    write_st_raw(p, 1, "{", 0);
    expect_open_fails(p, R1_EFORMAT, "header length 1");
    write_st_raw(p, strlen(ok) + 100, ok, 8);
    expect_open_fails(p, R1_EFORMAT, "header length");
    write_st_raw(p, UINT64_MAX, ok, 8);
    expect_open_fails(p, R1_EFORMAT, "header length");
    write_st_raw(p, 200000000, ok, 8);
    expect_open_fails(p, R1_EFORMAT, "header length");

    /* JSON */
    write_st(p, "{\"t\":{\"dtype\":", 8);
    expect_open_fails(p, R1_EFORMAT, "JSON is invalid");
    write_st(p, "not json at all", 0);
    expect_open_fails(p, R1_EFORMAT, "JSON is invalid");
    write_st(p, "[1, 2, 3]", 0);
    expect_open_fails(p, R1_EFORMAT, "expected an object");
    write_st(p, "\"str\"", 0); /* jansson itself wants an object or array on top */
    expect_open_fails(p, R1_EFORMAT, "header JSON");
    write_st(p, "{} trailing", 0);
    expect_open_fails(p, R1_EFORMAT, "JSON is invalid");
    write_st(p,
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8);
    expect_open_fails(p, R1_EFORMAT, "duplicate");
    write_st(p, "{\"t\":[1]}", 0);
    expect_open_fails(p, R1_EFORMAT, "tensor 't'");

    /* dtype */
    write_st(p, "{\"t\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "unknown dtype 'Q7'");
    write_st(p, "{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "unsupported dtype F64 for tensor 't'");
    write_st(p, "{\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "unsupported dtype U8");
    write_st(p, "{\"t\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'dtype'");
    write_st(p, "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'dtype' is missing");

    /* shape */
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12);
    expect_open_fails(p, R1_EFORMAT, "need 12");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "shape[0] is negative");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "shape[0] is a real number");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "5 dims");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'shape'");
    write_st(p,
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
             "\"data_offsets\":[0,8]}}",
             8);
    expect_open_fails(p, R1_EFORMAT, "overflows");
    write_st(p,
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,2,0],"
             "\"data_offsets\":[0,8]}}",
             8);
    expect_open_fails(p, R1_EFORMAT, "need 0");

    /* data_offsets */
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7);
    expect_open_fails(p, R1_EFORMAT, "end past the data region (7 bytes)");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "not a valid range");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "not a valid range");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'data_offsets'");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'data_offsets'");
    write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    expect_open_fails(p, R1_EFORMAT, "'data_offsets' is missing");
    write_st(p,
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[9223372036854775800,9223372036854775807]}}",
             8);
    expect_open_fails(p, R1_EFORMAT, "end past the data region");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12);
    expect_open_fails(p, R1_EFORMAT, "overlapping");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             4);
    expect_open_fails(p, R1_EFORMAT, "overlapping");

    /* empty ranges overlap nothing; ranges out of order and holes are fine */
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
             "\"e\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[9,9]},"
             "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             16);
    assert_int_equal(r1_st_open(&f, p), R1_OK);
    assert_int_equal(f->n, 3);
    assert_string_equal(f->entries[0].name, "a"); /* file order kept */
    int32_t v;
    assert_int_equal(r1_st_read_raw(f, r1_st_find(f, "b"), &v, 4), R1_OK);
    assert_int_equal(v, 0x03020100);
    r1_st_close(f);

    /* __metadata__ */
    write_st(p, "{\"__metadata__\":{\"k\":1}}", 0);
    expect_open_fails(p, R1_EFORMAT, "__metadata__ key 'k'");
    write_st(p, "{\"__metadata__\":{\"k\":\"v\",\"j\":{\"x\":\"y\"}}}", 0);
    expect_open_fails(p, R1_EFORMAT, "__metadata__ key 'j'");
    write_st(p, "{\"__metadata__\":[\"k\"]}", 0);
    expect_open_fails(p, R1_EFORMAT, "'__metadata__'");
    write_st(p, "{\"__metadata__\":null}", 0);
    assert_int_equal(r1_st_open(&f, p), R1_OK);
    assert_int_equal(f->n, 0);
    r1_st_close(f);

    /* garbage bytes of every kind never crash */
    unsigned char junk[256];
    for (int round = 0; round < 200; round++) {
        uint32_t s = 2166136261u ^ (uint32_t)round;
        for (size_t i = 0; i < sizeof(junk); i++) {
            s = s * 16777619u + 1013904223u;
            junk[i] = (unsigned char)(s >> 24);
        }
        /* a plausible header length so that the JSON parser sees the junk */
        junk[0] = (unsigned char)(round % 240 + 2);
        memset(junk + 1, 0, 7);
        write_bytes(p, junk, sizeof(junk));
        expect_open_fails(p, R1_EFORMAT, NULL);
    }
}

/* A file that shrinks after it was opened: the read fails cleanly. */
static void test_shrunk_after_open(void **state)
{
    (void)state;
    const char *p = tpath("shrink.safetensors");
    write_st(p, "{\"t\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8);
    struct r1_st_file *f;
    assert_int_equal(r1_st_open(&f, p), R1_OK);
    assert_int_equal(truncate(p, (off_t)f->data_start + 3), 0);
    float out[4];
    r1_err_clear();
    assert_int_equal(r1_st_read_f32(f, r1_st_find(f, "t"), out, 4), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), p));
    r1_st_close(f);
}

/* --- the reference implementation's output ---------------------------------------------- */

static int find_fixture(char *out, size_t cap)
{
    const char *rel = "tests/fixtures/ref.safetensors";
    const char *root = getenv("R1_SRC");
    if (root && *root) {
        snprintf(out, cap, "%s/%s", root, rel);
        if (file_exists(out))
            return 1;
    }
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    snprintf(out, cap, "%.*sfixtures/ref.safetensors", slash ? (int)(slash - src + 1) : 0, src);
    if (file_exists(out))
        return 1;
    snprintf(out, cap, "%s", rel);
    return file_exists(out);
}

static void test_reference_fixture(void **state)
{
    (void)state;
    char path[1024];
    if (!find_fixture(path, sizeof(path)))
        fail_msg("tests/fixtures/ref.safetensors not found (set R1_SRC to the source root)");
    struct r1_st_file *f;
    if (r1_st_open(&f, path) != R1_OK)
        fail_msg("%s", r1_err_last());
    assert_int_equal(f->n, 7);
    assert_string_equal(r1_st_meta(f, "format"), "pt");
    assert_string_equal(r1_st_meta(f, "r1_fixture"), "v1");

    float buf[8];
    const struct r1_st_entry *e = r1_st_find(f, "f32");
    assert_non_null(e);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(r1_st_read_f32(f, e, buf, 6), R1_OK);
    const float want32[6] = {0.0f, 1.0f, -2.5f, 3.14159274f, 1e-3f, -65504.0f};
    assert_memory_equal(buf, want32, sizeof(want32));

    /* numpy's f16 rounding of f16_src matches r1_f32_to_f16 bit for bit */
    float src[8];
    uint16_t h[8];
    e = r1_st_find(f, "f16_src");
    assert_int_equal(r1_st_read_f32(f, e, src, 8), R1_OK);
    e = r1_st_find(f, "f16");
    assert_int_equal(e->dtype, R1_F16);
    assert_int_equal(r1_st_read_raw(f, e, h, sizeof(h)), R1_OK);
    const uint16_t want16[8] = {0x2e66, 0x3555, 0x7bff, 0x7c00, 0x0002, 0x0000, 0xc000, 0x03ff};
    assert_memory_equal(h, want16, sizeof(want16));
    for (int i = 0; i < 8; i++)
        assert_int_equal(r1_f32_to_f16(src[i]), h[i]);
    assert_int_equal(r1_st_read_f32(f, e, buf, 8), R1_OK);
    assert_true(buf[2] == 65504.0f && isinf(buf[3]) && buf[6] == -2.0f);

    e = r1_st_find(f, "bf16");
    assert_int_equal(e->dtype, R1_BF16);
    assert_int_equal(r1_st_read_f32(f, e, buf, 4), R1_OK);
    assert_true(buf[0] == 1.0f && buf[1] == -0.5f && buf[2] == 3.0f &&
                buf[3] == ldexpf(1.0f, -133));

    e = r1_st_find(f, "i32");
    assert_int_equal(e->dtype, R1_I32);
    int32_t iv[3];
    assert_int_equal(r1_st_read_raw(f, e, iv, sizeof(iv)), R1_OK);
    assert_true(iv[0] == -7 && iv[1] == 0 && iv[2] == INT32_MAX);

    e = r1_st_find(f, "scalar");
    assert_int_equal(e->ndim, 0);
    assert_int_equal(r1_st_read_f32(f, e, buf, 1), R1_OK);
    assert_true(buf[0] == 42.5f);

    e = r1_st_find(f, "empty");
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 0);
    assert_int_equal(e->shape[1], 3);
    assert_int_equal(e->nbytes, 0);
    r1_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_large_chunked),
        cmocka_unit_test(test_file_bytes),        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_missing_file),      cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt_header),    cmocka_unit_test(test_shrunk_after_open),
        cmocka_unit_test(test_reference_fixture),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
