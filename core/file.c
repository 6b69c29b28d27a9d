/* file.c - whole-file reads and atomic writes (see file.h). */
#include "core/file.h"

#include <errno.h>
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
