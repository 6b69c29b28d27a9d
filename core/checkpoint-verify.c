/* checkpoint-verify.c - r1_checkpoint_verify (see checkpoint.h): walks the ledger and
 * checks every checkpoint it records against the run directory.
 *
 * For each commit: the manifest in the ledger tree hashes to the commit's R1-Manifest,
 * the manifest in the working tree matches it byte for byte, R1-Parent names an earlier
 * manifest, and every file the manifest lists has its object (hashed once per run) and a
 * link or copy with the same sha256.  Finally `latest` must name a recorded checkpoint. */
#include "core/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checkpoint-internal.h"
#include "core/err.h"
#include "core/file.h"

struct strset {
    char **s;
    int n, cap;
};

static int strset_has(const struct strset *set, const char *s)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->s[i], s) == 0)
            return 1;
    return 0;
}

static int strset_add(struct strset *set, const char *s)
{
    if (set->n == set->cap) {
        int cap = set->cap ? set->cap * 2 : 64;
        char **t = realloc(set->s, (size_t)cap * sizeof(*t));
        if (!t)
            return r1_err_set(R1_ENOMEM, "verify: out of memory");
        set->s = t;
        set->cap = cap;
    }
    if (!(set->s[set->n] = strdup(s)))
        return r1_err_set(R1_ENOMEM, "verify: out of memory");
    set->n++;
    return 0;
}

static void strset_free(struct strset *set)
{
    for (int i = 0; i < set->n; i++)
        free(set->s[i]);
    free(set->s);
}

struct verify {
    const char *run_dir;
    struct r1_ledger *lg;
    struct strset manifests, rels, objects;
    struct r1_verify_report rep;
};

static int differs(const char *path, const char *expected, const char *actual, const char *why)
{
    return r1_err_set(R1_EFORMAT, "%s: sha256 expected %s, actual %s (%s)", path, expected,
                      actual, why);
}

/* Checks one file the manifest of checkpoint rel lists: its object and its link. */
static int verify_file(struct verify *v, const char *rel, const struct r1_checkpoint_file *f)
{
    char *obj = r1_checkpoint_object_path(v->run_dir, f->sha256);
    char *why = r1_checkpoint_fmt_path("%s of %s", f->name, rel);
    char hex[R1_SHA256_HEX];
    uint64_t size = 0;
    struct stat so, sl;
    int rc = 0;
    if (!obj || !why) {
        rc = R1_ENOMEM;
        goto out;
    }
    if (!strset_has(&v->objects, f->sha256)) {
        if (stat(obj, &so) != 0) {
            rc = r1_err_set(R1_EFORMAT, "%s: missing (%s, sha256 %s)", obj, why, f->sha256);
            goto out;
        }
        if ((rc = r1_sha256_file(hex, &size, obj)))
            goto out;
        if (strcmp(hex, f->sha256) != 0) {
            rc = differs(obj, f->sha256, hex, why);
            goto out;
        }
        if ((rc = strset_add(&v->objects, f->sha256)))
            goto out;
    } else if (stat(obj, &so) != 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: missing (%s)", obj, why);
        goto out;
    }
    if (stat(f->path, &sl) != 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: missing (listed in the manifest with sha256 %s)",
                        f->path, f->sha256);
        goto out;
    }
    if (sl.st_dev == so.st_dev && sl.st_ino == so.st_ino)
        goto out; /* the hard link is the object itself */
    if ((rc = r1_sha256_file(hex, &size, f->path)))
        goto out;
    if (strcmp(hex, f->sha256) != 0)
        rc = differs(f->path, f->sha256, hex, "a copy in the checkpoint, not a link");
out:
    free(obj);
    free(why);
    return rc;
}

static int verify_cb(const struct r1_ledger_commit *c, void *ud)
{
    struct verify *v = ud;
    if (!c->stage)
        return 0;
    char *rel = r1_checkpoint_rel_path(c->stage, c->step < 0 ? 0 : c->step);
    char *tree_path = rel ? r1_checkpoint_fmt_path("%s/" R1_CHECKPOINT_MANIFEST, rel) : NULL;
    char *dir = rel ? r1_checkpoint_fmt_path("%s/%s", v->run_dir, rel) : NULL;
    char *wpath = dir ? r1_checkpoint_fmt_path("%s/" R1_CHECKPOINT_MANIFEST, dir) : NULL;
    char *blob = NULL;
    size_t blen = 0;
    char bhex[R1_SHA256_HEX], whex[R1_SHA256_HEX];
    struct r1_checkpoint *ck = calloc(1, sizeof(*ck));
    int rc = 0;
    if (!rel || !tree_path || !dir || !wpath || !ck) {
        rc = r1_err_set(R1_ENOMEM, "verify: out of memory");
        goto out;
    }
    if (c->step < 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: ledger commit %.12s lacks an R1-Step trailer",
                        v->run_dir, c->id);
        goto out;
    }
    if ((rc = r1_ledger_read_file(v->lg, c->id, tree_path, &blob, &blen)) ||
        (rc = r1_sha256_bytes(bhex, blob, blen)))
        goto out;
    if (c->manifest_sha256 && strcmp(c->manifest_sha256, bhex) != 0) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s: ledger commit %.12s: %s has sha256 %s but R1-Manifest says %s",
                        v->run_dir, c->id, tree_path, bhex, c->manifest_sha256);
        goto out;
    }
    if (access(wpath, F_OK) != 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: missing (ledger commit %.12s records sha256 %s)", wpath,
                        c->id, bhex);
        goto out;
    }
    if ((rc = r1_sha256_file(whex, NULL, wpath)))
        goto out;
    if (strcmp(whex, bhex) != 0) {
        char why[64];
        snprintf(why, sizeof(why), "as recorded by ledger commit %.12s", c->id);
        rc = differs(wpath, bhex, whex, why);
        goto out;
    }
    if (c->parent && !strset_has(&v->manifests, c->parent)) {
        rc = r1_err_set(R1_EFORMAT,
                        "%s: ledger commit %.12s (%s): R1-Parent %s names no earlier checkpoint "
                        "manifest in the ledger",
                        v->run_dir, c->id, rel, c->parent);
        goto out;
    }
    if ((rc = r1_checkpoint_parse_manifest(ck, blob, blen, wpath, dir)))
        goto out;
    for (int i = 0; i < ck->n_files; i++)
        if ((rc = verify_file(v, rel, &ck->files[i])))
            goto out;
    if ((rc = strset_add(&v->manifests, bhex)) || (rc = strset_add(&v->rels, rel)))
        goto out;
    v->rep.n_checkpoints++;
out:
    r1_checkpoint_free(ck);
    free(blob);
    free(rel);
    free(tree_path);
    free(dir);
    free(wpath);
    return rc;
}

int r1_checkpoint_verify(const char *run_dir, struct r1_verify_report *rep)
{
    struct verify v;
    memset(&v, 0, sizeof(v));
    v.run_dir = run_dir;
    memset(rep, 0, sizeof(*rep));
    char *lpath = NULL, *latest = NULL;
    size_t llen = 0;
    int rc;
    if ((rc = r1_ledger_open(&v.lg, run_dir)) || (rc = r1_ledger_walk(v.lg, 1, verify_cb, &v)))
        goto out;
    if (!(lpath = r1_checkpoint_fmt_path("%s/latest", run_dir))) {
        rc = R1_ENOMEM;
        goto out;
    }
    if (access(lpath, F_OK) == 0) {
        if ((rc = r1_file_read(lpath, &latest, &llen)))
            goto out;
        latest[strcspn(latest, "\n")] = '\0';
        if (!strset_has(&v.rels, latest)) {
            rc = r1_err_set(R1_EFORMAT, "%s: names '%s', a checkpoint the ledger does not record",
                            lpath, latest);
            goto out;
        }
    }
    v.rep.n_objects = v.objects.n;
    *rep = v.rep;
out:
    free(lpath);
    free(latest);
    strset_free(&v.manifests);
    strset_free(&v.rels);
    strset_free(&v.objects);
    r1_ledger_free(v.lg);
    return rc;
}
