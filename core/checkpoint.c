/* checkpoint.c - atomic, content-addressed checkpoints (see checkpoint.h).
 *
 * Durability order of a commit: every object file and the manifest are fsynced,
 * then the temp dir; the rename into checkpoints/<stage>/ is made durable by
 * fsyncing both parent directories; only then is the ledger committed, and only
 * after that is `latest` replaced (write latest.tmp, fsync, rename, fsync DIR). */
#include "core/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/checkpoint-internal.h"
#include "core/err.h"
#include "core/file.h"

#ifndef R1_VERSION
#define R1_VERSION "0.0.0"
#endif

#define FORMAT_NAME "r1-checkpoint"
#define FORMAT_VERSION 1

char *r1_checkpoint_fmt_path(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s)
        r1_err_set(R1_ENOMEM, "out of memory building a path");
    return s;
}

static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int rc = r1_err_set(R1_EIO, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes path and everything under it; a missing path is fine. */
static int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return r1_err_set(R1_EIO, "%s: cannot remove: %s; remove it by hand", path,
                          strerror(errno));
    return 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return r1_err_set(R1_EIO, "%s: cannot open to sync: %s", path, strerror(errno));
    int ok = fsync(fd) == 0 || errno == EINVAL; /* some file systems cannot sync directories */
    int e = errno;
    close(fd);
    return ok ? 0 : r1_err_set(R1_EIO, "%s: fsync failed: %s", path, strerror(e));
}

/* Writes len bytes to path (created or truncated) and fsyncs it. */
static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return r1_err_set(R1_EIO, "%s: cannot create: %s", path, strerror(errno));
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            return r1_err_set(R1_EIO, "%s: write failed: %s; check free space", path, strerror(e));
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return r1_err_set(R1_EIO, "%s: fsync failed: %s", path, strerror(e));
    }
    return close(fd) == 0 ? 0 : r1_err_set(R1_EIO, "%s: close failed: %s", path, strerror(errno));
}

static int check_file_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    int ok = n >= 1 && n <= 128 && name[0] != '.' && strcmp(name, R1_CHECKPOINT_MANIFEST) != 0;
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok)
        return r1_err_set(R1_EINVAL,
                          "checkpoint file name '%s' is not allowed; use a plain file name of "
                          "letters, digits, '.', '_' or '-' (not %s, not starting with '.')",
                          name ? name : "(null)", R1_CHECKPOINT_MANIFEST);
    return 0;
}

char *r1_checkpoint_object_path(const char *run_dir, const char *hex)
{
    return r1_checkpoint_fmt_path("%s/objects/sha256/%.2s/%s", run_dir, hex, hex + 2);
}

char *r1_checkpoint_rel_path(const char *stage, int64_t step)
{
    return r1_checkpoint_fmt_path("checkpoints/%s/%08" PRId64, stage, step);
}

void r1_checkpoint_free(struct r1_checkpoint *ck)
{
    if (!ck)
        return;
    if (ck->writing && ck->dir)
        rm_rf(ck->dir);
    r1_ledger_free(ck->ledger);
    for (int i = 0; i < ck->n_files; i++) {
        free(ck->files[i].name);
        free(ck->files[i].path);
    }
    free(ck->files);
    for (int i = 0; i < ck->n_data; i++) {
        free((char *)ck->data[i].name);
        free((char *)ck->data[i].sha256);
    }
    free(ck->data);
    free(ck->run_dir);
    free(ck->rel);
    free(ck->dir);
    free(ck->stage);
    free(ck->kind);
    free(ck->parent);
    free(ck->recipe_hash);
    free(ck);
}

static char *dup_or_null(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

/* Fills the descriptive fields of ck from d (copies). */
static int set_desc(struct r1_checkpoint *ck, const struct r1_checkpoint_desc *d)
{
    int fail = 0;
    ck->stage = dup_or_null(d->stage, &fail);
    ck->kind = dup_or_null(d->kind, &fail);
    ck->parent = dup_or_null(d->parent, &fail);
    ck->recipe_hash = dup_or_null(d->recipe_hash, &fail);
    ck->step = d->step;
    ck->seed = d->seed;
    if (d->n_data > 0) {
        ck->data = calloc((size_t)d->n_data, sizeof(*ck->data));
        fail |= !ck->data;
        for (int i = 0; !fail && i < d->n_data; i++) {
            ck->n_data = i + 1;
            ck->data[i].name = dup_or_null(d->data[i].name, &fail);
            ck->data[i].sha256 = dup_or_null(d->data[i].sha256, &fail);
        }
    }
    return fail ? r1_err_set(R1_ENOMEM, "checkpoint: out of memory") : 0;
}

struct newest {
    const char *stage;
    char id[R1_LEDGER_ID_HEX];
    char manifest[R1_SHA256_HEX];
    char stage_found[72];
    int64_t step;
    int found;
};

static int newest_cb(const struct r1_ledger_commit *c, void *ud)
{
    struct newest *nw = ud;
    if (!c->stage || (nw->stage && strcmp(nw->stage, c->stage) != 0))
        return 0;
    snprintf(nw->id, sizeof(nw->id), "%s", c->id);
    snprintf(nw->manifest, sizeof(nw->manifest), "%s", c->manifest_sha256 ? c->manifest_sha256 : "");
    snprintf(nw->stage_found, sizeof(nw->stage_found), "%s", c->stage);
    nw->step = c->step;
    nw->found = 1;
    return 1; /* stop: newest first */
}

static int find_newest(struct r1_ledger *lg, const char *stage, struct newest *nw)
{
    memset(nw, 0, sizeof(*nw));
    nw->stage = stage;
    int rc = r1_ledger_walk(lg, 0, newest_cb, nw);
    return rc == 1 ? 0 : rc;
}

/* Replaces run_dir/latest with "rel\n" atomically. */
static int write_latest(const char *run_dir, const char *rel)
{
    char *tmp = r1_checkpoint_fmt_path("%s/latest.tmp", run_dir),
         *dst = r1_checkpoint_fmt_path("%s/latest", run_dir);
    char *text = r1_checkpoint_fmt_path("%s\n", rel);
    int rc = 0;
    if (!tmp || !dst || !text) {
        rc = R1_ENOMEM;
        goto out;
    }
    if ((rc = write_file(tmp, text, strlen(text))))
        goto out;
    if (rename(tmp, dst) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot replace: %s", dst, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = fsync_path(run_dir);
out:
    free(tmp);
    free(dst);
    free(text);
    return rc;
}

/* Points `latest` at the ledger's newest checkpoint when a kill left it behind. */
static int repair_latest(const char *run_dir, struct r1_ledger *lg)
{
    struct newest nw;
    int rc = find_newest(lg, NULL, &nw);
    if (rc || !nw.found)
        return rc;
    char *rel = r1_checkpoint_rel_path(nw.stage_found, nw.step),
         *path = r1_checkpoint_fmt_path("%s/latest", run_dir);
    char *cur = NULL;
    size_t len = 0;
    if (!rel || !path) {
        rc = R1_ENOMEM;
        goto out;
    }
    if (r1_file_read(path, &cur, &len) != 0) {
        r1_err_clear(); /* no `latest` yet: write it */
        rc = write_latest(run_dir, rel);
    } else if (len != strlen(rel) + 1 || strncmp(cur, rel, strlen(rel)) != 0) {
        rc = write_latest(run_dir, rel);
    }
out:
    free(cur);
    free(rel);
    free(path);
    return rc;
}

int r1_checkpoint_begin(struct r1_checkpoint **out, const char *run_dir,
                        const struct r1_checkpoint_desc *d)
{
    *out = NULL;
    int rc;
    if ((rc = r1_ledger_check_name("stage", d->stage)) ||
        (rc = r1_ledger_check_name("kind", d->kind)))
        return rc;
    if (d->step < 0 || d->seed > (uint64_t)INT64_MAX)
        return r1_err_set(R1_EINVAL, "checkpoint %s: step %" PRId64 " or seed %" PRIu64
                                     " out of range (0..2^63-1)",
                          d->stage, d->step, d->seed);
    if (d->parent && !r1_sha256_is_hex(d->parent))
        return r1_err_set(R1_EINVAL, "checkpoint %s: parent '%s' is not a manifest sha256",
                          d->stage, d->parent);
    if (d->recipe_hash && (strchr(d->recipe_hash, '\n') || strchr(d->recipe_hash, '\r')))
        return r1_err_set(R1_EINVAL, "checkpoint %s: recipe hash holds a line break", d->stage);
    for (int i = 0; i < d->n_data; i++)
        if (!d->data[i].name || !*d->data[i].name || strpbrk(d->data[i].name, " \t\r\n") ||
            !r1_sha256_is_hex(d->data[i].sha256))
            return r1_err_set(R1_EINVAL,
                              "checkpoint %s: dataset %d needs a name without spaces and a "
                              "64-digit sha256",
                              d->stage, i);
    struct r1_checkpoint *ck = calloc(1, sizeof(*ck));
    char *p = NULL;
    if (!ck)
        return r1_err_set(R1_ENOMEM, "checkpoint: out of memory");
    if (!(ck->run_dir = strdup(run_dir)) ||
        !(ck->rel = r1_checkpoint_rel_path(d->stage, d->step))) {
        rc = r1_err_set(R1_ENOMEM, "checkpoint: out of memory");
        goto fail;
    }
    if ((rc = set_desc(ck, d)) || (rc = r1_ledger_open_or_init(&ck->ledger, run_dir)))
        goto fail;
    /* a temp dir left by a killed writer is garbage: the ledger never saw it */
    if (!(p = r1_checkpoint_fmt_path("%s/tmp", run_dir))) {
        rc = R1_ENOMEM;
        goto fail;
    }
    if ((rc = rm_rf(p)) || (rc = mkdir_p(p)))
        goto fail;
    free(p);
    if (!(p = r1_checkpoint_fmt_path("%s/objects/sha256", run_dir))) {
        rc = R1_ENOMEM;
        goto fail;
    }
    if ((rc = mkdir_p(p)))
        goto fail;
    free(p);
    if (!(p = r1_checkpoint_fmt_path("%s/" R1_CHECKPOINT_MANIFEST, ck->rel))) {
        rc = R1_ENOMEM;
        goto fail;
    }
    if (r1_ledger_has_path(ck->ledger, p)) {
        rc = r1_err_set(R1_ESTATE,
                        "%s/%s: this checkpoint is already in the ledger; a stage writes each "
                        "step once (resume from it instead)",
                        run_dir, ck->rel);
        goto fail;
    }
    free(p);
    /* a final dir the ledger lacks: killed between rename and ledger commit */
    if (!(p = r1_checkpoint_fmt_path("%s/%s", run_dir, ck->rel))) {
        rc = R1_ENOMEM;
        goto fail;
    }
    if ((rc = rm_rf(p)) || (rc = repair_latest(run_dir, ck->ledger)))
        goto fail;
    free(p);
    p = NULL;
    if (!(ck->dir = r1_checkpoint_fmt_path("%s/tmp/%s-%08" PRId64 "-%ld", run_dir, d->stage,
                                           d->step, (long)getpid()))) {
        rc = R1_ENOMEM;
        goto fail;
    }
    if (mkdir(ck->dir, 0777) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot create the checkpoint's temp dir: %s", ck->dir,
                        strerror(errno));
        goto fail;
    }
    ck->writing = 1;
    *out = ck;
    return 0;
fail:
    free(p);
    r1_checkpoint_free(ck);
    return rc;
}

const char *r1_checkpoint_tmp_dir(const struct r1_checkpoint *ck)
{
    return ck->writing ? ck->dir : NULL;
}

static int find_file(const struct r1_checkpoint *ck, const char *name)
{
    for (int i = 0; i < ck->n_files; i++)
        if (strcmp(ck->files[i].name, name) == 0)
            return i;
    return -1;
}

int r1_checkpoint_add_file(struct r1_checkpoint *ck, const char *name, const char *src)
{
    int rc;
    if (!ck->writing)
        return r1_err_set(R1_ESTATE, "checkpoint %s: add_file after commit", ck->rel);
    if ((rc = check_file_name(name)))
        return rc;
    if (find_file(ck, name) >= 0)
        return r1_err_set(R1_EINVAL, "checkpoint %s: file %s added twice", ck->rel, name);
    char hex[R1_SHA256_HEX];
    uint64_t size = 0;
    if ((rc = r1_sha256_file(hex, &size, src)))
        return rc;
    size_t dl = strlen(ck->dir);
    int in_tmp = strncmp(src, ck->dir, dl) == 0 && src[dl] == '/' && !strstr(src + dl, "/../");
    char *obj = r1_checkpoint_object_path(ck->run_dir, hex),
         *odir = r1_checkpoint_fmt_path("%s/objects/sha256/%.2s", ck->run_dir, hex);
    char *dest = r1_checkpoint_fmt_path("%s/%s", ck->dir, name), *otmp = NULL;
    struct stat st;
    if (!obj || !odir || !dest) {
        rc = R1_ENOMEM;
        goto out;
    }
    if (stat(obj, &st) != 0) {
        if ((rc = mkdir_p(odir)))
            goto out;
        if (in_tmp) {
            if ((rc = fsync_path(src)))
                goto out;
            if (rename(src, obj) != 0) {
                rc = r1_err_set(R1_EIO, "%s: cannot move into %s: %s", src, obj, strerror(errno));
                goto out;
            }
        } else {
            if (!(otmp = r1_checkpoint_fmt_path("%s.tmp-%ld", obj, (long)getpid()))) {
                rc = R1_ENOMEM;
                goto out;
            }
            if ((rc = r1_file_copy(src, otmp)))
                goto out;
            if (rename(otmp, obj) != 0) {
                rc = r1_err_set(R1_EIO, "%s: cannot rename into place: %s", obj, strerror(errno));
                unlink(otmp);
                goto out;
            }
        }
        chmod(obj, 0444); /* objects are shared by checkpoints: never edited in place */
        if ((rc = fsync_path(odir)))
            goto out;
    } else if (in_tmp && unlink(src) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot remove the duplicate: %s", src, strerror(errno));
        goto out;
    }
    if (link(obj, dest) != 0) {
        if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP) {
            rc = r1_err_set(R1_EIO, "%s: cannot link %s: %s", dest, obj, strerror(errno));
            goto out;
        }
        if ((rc = r1_file_copy(obj, dest)))
            goto out;
    }
    struct r1_checkpoint_file *f = realloc(ck->files, (size_t)(ck->n_files + 1) * sizeof(*f));
    if (!f) {
        rc = r1_err_set(R1_ENOMEM, "checkpoint: out of memory");
        goto out;
    }
    ck->files = f;
    f = &ck->files[ck->n_files];
    memset(f, 0, sizeof(*f));
    if (!(f->name = strdup(name))) {
        rc = r1_err_set(R1_ENOMEM, "checkpoint: out of memory");
        goto out;
    }
    memcpy(f->sha256, hex, sizeof(hex));
    f->size = size;
    f->path = dest;
    dest = NULL;
    ck->n_files++;
out:
    free(obj);
    free(odir);
    free(dest);
    free(otmp);
    return rc;
}

int r1_checkpoint_add_bytes(struct r1_checkpoint *ck, const char *name, const void *data,
                            size_t len)
{
    int rc;
    if (!ck->writing)
        return r1_err_set(R1_ESTATE, "checkpoint %s: add_bytes after commit", ck->rel);
    if ((rc = check_file_name(name)))
        return rc;
    if (find_file(ck, name) >= 0)
        return r1_err_set(R1_EINVAL, "checkpoint %s: file %s added twice", ck->rel, name);
    char *path = r1_checkpoint_fmt_path("%s/%s", ck->dir, name);
    if (!path)
        return R1_ENOMEM;
    if (!(rc = write_file(path, data, len)))
        rc = r1_checkpoint_add_file(ck, name, path);
    free(path);
    return rc;
}

static int cmp_files(const void *a, const void *b)
{
    return strcmp(((const struct r1_checkpoint_file *)a)->name,
                  ((const struct r1_checkpoint_file *)b)->name);
}

/* The manifest bytes of ck (malloc'd, ends in a newline). */
static int manifest_bytes(const struct r1_checkpoint *ck, char **out, size_t *len)
{
    json_t *m = json_object(), *files = json_array(), *data = json_object();
    int fail = !m || !files || !data;
    fail |= json_object_set_new(m, "format", json_string(FORMAT_NAME));
    fail |= json_object_set_new(m, "format_version", json_integer(FORMAT_VERSION));
    fail |= json_object_set_new(m, "stage", json_string(ck->stage));
    fail |= json_object_set_new(m, "kind", json_string(ck->kind));
    fail |= json_object_set_new(m, "step", json_integer(ck->step));
    fail |= json_object_set_new(m, "parent", ck->parent ? json_string(ck->parent) : json_null());
    fail |= json_object_set_new(m, "recipe_hash",
                                ck->recipe_hash ? json_string(ck->recipe_hash) : json_null());
    fail |= json_object_set_new(m, "seed", json_integer((json_int_t)ck->seed));
    fail |= json_object_set_new(m, "r1_version", json_string(R1_VERSION));
    for (int i = 0; i < ck->n_data; i++)
        fail |= json_object_set_new(data, ck->data[i].name, json_string(ck->data[i].sha256));
    for (int i = 0; i < ck->n_files; i++) {
        json_t *f = json_object();
        fail |= !f;
        fail |= json_object_set_new(f, "name", json_string(ck->files[i].name));
        fail |= json_object_set_new(f, "sha256", json_string(ck->files[i].sha256));
        fail |= json_object_set_new(f, "size", json_integer((json_int_t)ck->files[i].size));
        fail |= json_array_append_new(files, f);
    }
    fail |= json_object_set(m, "data", data);
    fail |= json_object_set(m, "files", files);
    char *s = fail ? NULL : json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(files);
    json_decref(data);
    json_decref(m);
    if (!s)
        return r1_err_set(R1_ENOMEM, "checkpoint %s: cannot build the manifest", ck->rel);
    size_t n = strlen(s);
    char *buf = malloc(n + 2);
    if (!buf) {
        free(s);
        return r1_err_set(R1_ENOMEM, "checkpoint %s: out of memory", ck->rel);
    }
    memcpy(buf, s, n);
    buf[n] = '\n';
    buf[n + 1] = '\0';
    free(s);
    *out = buf;
    *len = n + 1;
    return 0;
}

int r1_checkpoint_commit(struct r1_checkpoint *ck, const struct r1_checkpoint_commit_info *info)
{
    static const struct r1_checkpoint_commit_info none;
    if (!info)
        info = &none;
    if (!ck->writing)
        return r1_err_set(R1_ESTATE, "checkpoint %s: committed twice", ck->rel);
    qsort(ck->files, (size_t)ck->n_files, sizeof(*ck->files), cmp_files);
    char *man = NULL, *mpath = NULL, *final = NULL, *sdir = NULL, *tdir = NULL;
    size_t mlen = 0;
    int rc;
    if ((rc = manifest_bytes(ck, &man, &mlen)))
        return rc;
    if ((rc = r1_sha256_bytes(ck->manifest_sha256, man, mlen)))
        goto out;
    mpath = r1_checkpoint_fmt_path("%s/" R1_CHECKPOINT_MANIFEST, ck->dir);
    final = r1_checkpoint_fmt_path("%s/%s", ck->run_dir, ck->rel);
    sdir = r1_checkpoint_fmt_path("%s/checkpoints/%s", ck->run_dir, ck->stage);
    tdir = r1_checkpoint_fmt_path("%s/tmp", ck->run_dir);
    if (!mpath || !final || !sdir || !tdir) {
        rc = R1_ENOMEM;
        goto out;
    }
    for (int i = 0; i < ck->n_files; i++) /* hard links share the object's synced inode */
        if ((rc = fsync_path(ck->files[i].path)))
            goto out;
    if ((rc = write_file(mpath, man, mlen)) || (rc = fsync_path(ck->dir)) ||
        (rc = mkdir_p(sdir)))
        goto out;
    if (rename(ck->dir, final) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot rename the finished checkpoint into place: %s", final,
                        strerror(errno));
        goto out;
    }
    /* from here the temp dir is gone: free() must not remove the final dir */
    ck->writing = 0;
    free(ck->dir);
    ck->dir = final;
    final = NULL;
    for (int i = 0; i < ck->n_files; i++) {
        char *p = r1_checkpoint_fmt_path("%s/%s", ck->dir, ck->files[i].name);
        if (!p) {
            rc = R1_ENOMEM;
            goto out;
        }
        free(ck->files[i].path);
        ck->files[i].path = p;
    }
    char *cdir = r1_checkpoint_fmt_path("%s/checkpoints", ck->run_dir);
    if (!cdir) {
        rc = R1_ENOMEM;
        goto out;
    }
    rc = fsync_path(sdir);
    if (!rc)
        rc = fsync_path(cdir);
    free(cdir);
    if (rc || (rc = fsync_path(tdir)))
        goto out;
    struct r1_ledger_entry e = {
        .stage = ck->stage,
        .kind = ck->kind,
        .step = ck->step,
        .parent = ck->parent,
        .manifest_sha256 = ck->manifest_sha256,
        .manifest = man,
        .manifest_len = mlen,
        .recipe_hash = ck->recipe_hash,
        .seed = ck->seed,
        .data = ck->data,
        .n_data = ck->n_data,
        .summary = info->summary,
        .recipe_lock = info->recipe_lock,
        .recipe_lock_len = info->recipe_lock_len,
        .metrics = info->metrics,
        .metrics_len = info->metrics_len,
        .recipe_path = info->recipe_path,
        .forced = info->forced,
    };
    if ((rc = r1_ledger_commit_checkpoint(ck->ledger, &e, ck->commit_id))) {
        rm_rf(ck->dir); /* not in the ledger: not a checkpoint */
        goto out;
    }
    rc = write_latest(ck->run_dir, ck->rel);
out:
    r1_ledger_free(ck->ledger);
    ck->ledger = NULL;
    free(man);
    free(mpath);
    free(final);
    free(sdir);
    free(tdir);
    return rc;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Parses manifest bytes into ck (stage, kind, step, parent, recipe hash, seed, data,
 * files with paths under dir).  where names the manifest in messages. */
int r1_checkpoint_parse_manifest(struct r1_checkpoint *ck, const char *buf, size_t len,
                                 const char *where, const char *dir)
{
    json_error_t jerr;
    json_t *m = json_loadb(buf, len, 0, &jerr);
    int rc = 0;
    if (!m)
        return r1_err_set(R1_EFORMAT, "%s:%d:%d: not valid JSON: %s; run `r1 verify`", where,
                          jerr.line, jerr.column, jerr.text);
    const char *fmt = jstr(m, "format"), *stage = jstr(m, "stage"), *kind = jstr(m, "kind");
    json_t *step = json_object_get(m, "step"), *seed = json_object_get(m, "seed");
    json_t *files = json_object_get(m, "files"), *data = json_object_get(m, "data");
    json_t *parent = json_object_get(m, "parent"), *rh = json_object_get(m, "recipe_hash");
    if (!fmt || strcmp(fmt, FORMAT_NAME) != 0 || !stage || !kind || !json_is_integer(step) ||
        !json_is_integer(seed) || !json_is_array(files) || !json_is_object(data) ||
        !(json_is_null(parent) || json_is_string(parent)) ||
        !(json_is_null(rh) || json_is_string(rh))) {
        rc = r1_err_set(R1_EFORMAT, "%s: not an r1 checkpoint manifest (format, stage, kind, "
                                    "step, seed, parent, recipe_hash, data or files missing)",
                        where);
        goto out;
    }
    struct r1_data_hash dh[64];
    int nd = 0;
    const char *k;
    json_t *v;
    json_object_foreach(data, k, v)
    {
        if (nd == 64 || !json_is_string(v)) {
            rc = r1_err_set(R1_EFORMAT, "%s: \"data\" must map at most 64 names to sha256", where);
            goto out;
        }
        dh[nd].name = k;
        dh[nd++].sha256 = json_string_value(v);
    }
    struct r1_checkpoint_desc d = {
        .stage = stage,
        .kind = kind,
        .step = (int64_t)json_integer_value(step),
        .parent = json_is_string(parent) ? json_string_value(parent) : NULL,
        .recipe_hash = json_is_string(rh) ? json_string_value(rh) : NULL,
        .seed = (uint64_t)json_integer_value(seed),
        .data = dh,
        .n_data = nd,
    };
    if ((rc = set_desc(ck, &d)))
        goto out;
    size_t n = json_array_size(files);
    ck->files = calloc(n ? n : 1, sizeof(*ck->files));
    if (!ck->files) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory", where);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(files, i);
        const char *name = jstr(f, "name"), *sha = jstr(f, "sha256");
        json_t *size = json_object_get(f, "size");
        if (!name || check_file_name(name) || !r1_sha256_is_hex(sha) || !json_is_integer(size) ||
            json_integer_value(size) < 0) {
            rc = r1_err_set(R1_EFORMAT, "%s: files[%zu] needs a plain name, a sha256 and a size",
                            where, i);
            goto out;
        }
        struct r1_checkpoint_file *cf = &ck->files[ck->n_files++];
        if (!(cf->name = strdup(name)) ||
            !(cf->path = r1_checkpoint_fmt_path("%s/%s", dir, name))) {
            rc = r1_err_set(R1_ENOMEM, "%s: out of memory", where);
            goto out;
        }
        memcpy(cf->sha256, sha, R1_SHA256_HEX);
        cf->size = (uint64_t)json_integer_value(size);
    }
out:
    json_decref(m);
    return rc;
}

int r1_checkpoint_open(struct r1_checkpoint **out, const char *run_dir, const char *rel)
{
    *out = NULL;
    struct r1_checkpoint *ck = calloc(1, sizeof(*ck));
    char *mpath = NULL, *buf = NULL;
    size_t len = 0;
    int rc = 0;
    if (!ck || !(ck->run_dir = strdup(run_dir)) || !(ck->rel = strdup(rel)) ||
        !(ck->dir = r1_checkpoint_fmt_path("%s/%s", run_dir, rel)) ||
        !(mpath = r1_checkpoint_fmt_path("%s/" R1_CHECKPOINT_MANIFEST, ck->dir))) {
        rc = r1_err_set(R1_ENOMEM, "checkpoint: out of memory");
        goto out;
    }
    if ((rc = r1_file_read(mpath, &buf, &len)) ||
        (rc = r1_sha256_bytes(ck->manifest_sha256, buf, len)) ||
        (rc = r1_checkpoint_parse_manifest(ck, buf, len, mpath, ck->dir)))
        goto out;
    *out = ck;
    ck = NULL;
out:
    free(mpath);
    free(buf);
    r1_checkpoint_free(ck);
    return rc;
}

int r1_checkpoint_latest(struct r1_checkpoint **out, const char *run_dir, const char *stage)
{
    *out = NULL;
    struct r1_ledger *lg = NULL;
    struct newest nw;
    char *rel = NULL;
    int rc;
    if ((rc = r1_ledger_open(&lg, run_dir)) || (rc = find_newest(lg, stage, &nw)))
        goto out;
    if (!nw.found)
        goto out;
    if (!(rel = r1_checkpoint_rel_path(nw.stage_found, nw.step))) {
        rc = R1_ENOMEM;
        goto out;
    }
    if ((rc = r1_checkpoint_open(out, run_dir, rel)))
        goto out;
    memcpy((*out)->commit_id, nw.id, sizeof(nw.id));
    if (strcmp((*out)->manifest_sha256, nw.manifest) != 0) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s/%s/" R1_CHECKPOINT_MANIFEST
                        ": sha256 %s differs from the ledger's %s; run "
                        "`r1 verify %s`",
                        run_dir, rel, (*out)->manifest_sha256, nw.manifest, run_dir);
        r1_checkpoint_free(*out);
        *out = NULL;
    }
out:
    free(rel);
    r1_ledger_free(lg);
    return rc;
}

const char *r1_checkpoint_file_path(const struct r1_checkpoint *ck, const char *name)
{
    int i = find_file(ck, name);
    return i < 0 ? NULL : ck->files[i].path;
}
