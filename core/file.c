/* file.c - whole-file reads and atomic writes (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"

int r1_file_read(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return r1_err_set(R1_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(fp);
            return r1_err_set(R1_ENOMEM, "%s: out of memory reading", path);
        }
        n += fread(buf + n, 1, cap - n - 1, fp);
        if (n < cap - 1)
            break;
        cap *= 2;
        char *t = realloc(buf, cap);
        if (!t)
            free(buf);
        buf = t;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return r1_err_set(R1_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

int r1_file_write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return r1_err_set(R1_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return r1_err_set(R1_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int r1_file_write_json(const char *path, const struct json_t *o, size_t flags)
{
    char *text = o ? json_dumps(o, flags) : NULL;
    if (!text)
        return r1_err_set(R1_EFORMAT, "%s: cannot format the JSON (out of memory, or a string "
                          "that is not valid UTF-8)", path);
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2);
    if (!buf) {
        free(text);
        return r1_err_set(R1_ENOMEM, "%s: out of memory", path);
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    int rc = r1_file_write_atomic(path, buf, n + 1);
    free(buf);
    return rc;
}

int r1_file_copy(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return r1_err_set(R1_EIO, "%s: cannot open: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return r1_err_set(R1_EIO, "%s: cannot create: %s", dst, strerror(e));
    }
    int rc = 0;
    char *buf = malloc(1 << 20);
    if (!buf) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory copying", src);
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = r1_err_set(R1_EIO, "%s: read failed: %s", src, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = r1_err_set(R1_EIO, "%s: write failed: %s; check free space", dst,
                                strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    if (fsync(out) != 0)
        rc = r1_err_set(R1_EIO, "%s: fsync failed: %s", dst, strerror(errno));
out:
    free(buf);
    close(in);
    if (close(out) != 0 && !rc)
        rc = r1_err_set(R1_EIO, "%s: close failed: %s", dst, strerror(errno));
    if (rc)
        unlink(dst);
    return rc;
}
