/* ledger.c - the run directory's git history over libgit2 (see ledger.h).
 *
 * Commits are built from an index: HEAD's tree is read into the repository's
 * index, the checkpoint's files are added from memory, the index is written as
 * a tree and committed on refs/heads/main (libgit2 moves the ref under a lock
 * file, so a kill leaves either the old or the new HEAD), then the index is
 * written so that `git status` in the run directory stays clean. */
#include "core/ledger.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "core/err.h"
#include "core/sha256.h"

#ifndef R1_VERSION
#define R1_VERSION "0.0.0"
#endif

#define MAIN_REF "refs/heads/main"

static const char gitignore[] =
    "# r1 run directory: weights and optimizer state live in objects/ (content\n"
    "# addressed, checked by `r1 verify`), not in git; a checkpoint dir's files are\n"
    "# links into objects/ except manifest.json, which the ledger records.\n"
    "/objects/\n"
    "/tmp/\n"
    "/latest\n"
    "/checkpoints/*/*/*\n"
    "!/checkpoints/*/*/manifest.json\n";

struct r1_ledger {
    git_repository *repo;
    char *dir;
};

static int git_fail(int code, const char *what, const char *dir)
{
    const git_error *e = git_error_last();
    return r1_err_set(code, "%s: %s: %s", dir, what, e && e->message ? e->message : "libgit2 error");
}

int r1_ledger_check_name(const char *what, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        ok = alnum || (i > 0 && (c == '_' || c == '-'));
    }
    if (!ok)
        return r1_err_set(R1_EINVAL,
                          "%s '%s' is not a valid name; use 1-64 letters, digits, '_' or '-', "
                          "starting with a letter or digit",
                          what, name ? name : "(null)");
    return 0;
}

static int one_line(const char *what, const char *s)
{
    if (s && (strchr(s, '\n') || strchr(s, '\r')))
        return r1_err_set(R1_EINVAL, "ledger: %s '%s' holds a line break; it must be one line",
                          what, s);
    return 0;
}

/* Commit time: R1_COMMIT_TIME (unix seconds) when set, else now. */
static int make_signature(git_signature **sig)
{
    const char *env = getenv("R1_COMMIT_TIME");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        long long t = strtoll(env, &end, 10);
        if (errno || *end || t < 0)
            return r1_err_set(R1_EINVAL,
                              "R1_COMMIT_TIME='%s' is not a time in unix seconds; unset it or "
                              "give a whole number",
                              env);
        if (git_signature_new(sig, "r1", "r1@localhost", (git_time_t)t, 0))
            return git_fail(R1_EIO, "cannot make the commit signature", "ledger");
        return 0;
    }
    if (git_signature_now(sig, "r1", "r1@localhost"))
        return git_fail(R1_EIO, "cannot make the commit signature", "ledger");
    return 0;
}

static int head_commit(struct r1_ledger *lg, git_commit **out)
{
    git_oid oid;
    *out = NULL;
    int e = git_reference_name_to_id(&oid, lg->repo, MAIN_REF);
    if (e == GIT_ENOTFOUND)
        return 0;
    if (e || git_commit_lookup(out, lg->repo, &oid))
        return git_fail(R1_EIO, "cannot read the ledger head (refs/heads/main)", lg->dir);
    return 0;
}

struct blob_file {
    const char *path;
    const void *data;
    size_t len;
};

/* Commits HEAD's tree plus files on main with message; id receives the new commit. */
static int commit_files(struct r1_ledger *lg, const struct blob_file *files, int n,
                        const char *message, char id[R1_LEDGER_ID_HEX])
{
    int rc = 0;
    git_commit *parent = NULL;
    git_tree *ptree = NULL, *tree = NULL;
    git_index *idx = NULL;
    git_signature *sig = NULL;
    git_oid tree_oid, oid;
    if ((rc = head_commit(lg, &parent)) || (rc = make_signature(&sig)))
        goto out;
    if (git_repository_index(&idx, lg->repo)) {
        rc = git_fail(R1_EIO, "cannot open the ledger index", lg->dir);
        goto out;
    }
    if (parent) {
        if (git_commit_tree(&ptree, parent) || git_index_read_tree(idx, ptree)) {
            rc = git_fail(R1_EIO, "cannot read the ledger head's tree", lg->dir);
            goto out;
        }
    } else if (git_index_clear(idx)) {
        rc = git_fail(R1_EIO, "cannot clear the ledger index", lg->dir);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        git_index_entry ent;
        memset(&ent, 0, sizeof(ent));
        ent.mode = GIT_FILEMODE_BLOB;
        ent.path = files[i].path;
        if (git_index_add_from_buffer(idx, &ent, files[i].data, files[i].len)) {
            rc = git_fail(R1_EIO, "cannot add a file to the ledger", files[i].path);
            goto out;
        }
    }
    if (git_index_write_tree(&tree_oid, idx) || git_tree_lookup(&tree, lg->repo, &tree_oid)) {
        rc = git_fail(R1_EIO, "cannot write the ledger tree", lg->dir);
        goto out;
    }
    const git_commit *parents[1] = {parent};
    if (git_commit_create(&oid, lg->repo, MAIN_REF, sig, sig, NULL, message, tree, parent ? 1 : 0,
                          parents)) {
        rc = git_fail(R1_EIO, "cannot write the ledger commit", lg->dir);
        goto out;
    }
    if (git_index_write(idx)) {
        rc = git_fail(R1_EIO, "cannot write the ledger index", lg->dir);
        goto out;
    }
    if (id)
        git_oid_tostr(id, R1_LEDGER_ID_HEX, &oid);
out:
    git_signature_free(sig);
    git_index_free(idx);
    git_tree_free(tree);
    git_tree_free(ptree);
    git_commit_free(parent);
    return rc;
}

static int write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return r1_err_set(R1_EIO, "%s: cannot write: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, fp) == n;
    ok = (fclose(fp) == 0) && ok;
    return ok ? 0 : r1_err_set(R1_EIO, "%s: write failed: %s", path, strerror(errno));
}

/* The root commit: .gitignore in the tree and the working directory. */
static int make_root(struct r1_ledger *lg)
{
    git_commit *head = NULL;
    int rc = head_commit(lg, &head);
    if (rc || head) {
        git_commit_free(head);
        return rc;
    }
    size_t n = strlen(lg->dir) + 16;
    char *path = malloc(n);
    if (!path)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", lg->dir);
    snprintf(path, n, "%s/.gitignore", lg->dir);
    rc = write_text(path, gitignore);
    free(path);
    if (rc)
        return rc;
    const struct blob_file f = {".gitignore", gitignore, sizeof(gitignore) - 1};
    return commit_files(lg, &f, 1,
                        "r1 run directory\n\n"
                        "Each later commit records one checkpoint; weights live in objects/.\n\n"
                        "R1-Version: " R1_VERSION "\n",
                        NULL);
}

static int is_marked(git_repository *repo)
{
    git_config *cfg = NULL;
    int v = 0;
    if (git_repository_config_snapshot(&cfg, repo) == 0) {
        if (git_config_get_bool(&v, cfg, "r1.ledger"))
            v = 0;
        git_config_free(cfg);
    }
    return v;
}

static int is_unborn(git_repository *repo)
{
    git_oid oid;
    return git_reference_name_to_id(&oid, repo, MAIN_REF) == GIT_ENOTFOUND &&
           git_repository_head_unborn(repo) == 1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int open_common(struct r1_ledger **out, const char *run_dir, int create)
{
    *out = NULL;
    git_libgit2_init();
    struct r1_ledger *lg = calloc(1, sizeof(*lg));
    int rc = 0;
    if (!lg || !(lg->dir = strdup(run_dir))) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory", run_dir);
        goto out;
    }
    struct stat st;
    char gitdir[PATH_MAX];
    snprintf(gitdir, sizeof(gitdir), "%s/.git", run_dir);
    int have_git = stat(gitdir, &st) == 0;
    if (!have_git && !create) {
        rc = r1_err_set(R1_EINVAL, "%s: not an r1 run directory (no ledger at %s/.git); "
                                   "give the directory `r1 run` created", run_dir, run_dir);
        goto out;
    }
    if (have_git && git_repository_open_ext(&lg->repo, run_dir, GIT_REPOSITORY_OPEN_NO_SEARCH,
                                            NULL)) {
        /* a .git that does not open is an init cut short by a kill; with no checkpoint
         * written yet nothing is lost by starting it again */
        char ckdir[PATH_MAX];
        snprintf(ckdir, sizeof(ckdir), "%s/checkpoints", run_dir);
        if (!create || stat(ckdir, &st) == 0 ||
            nftw(gitdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            rc = git_fail(R1_EINVAL, "not an r1 run directory (cannot open its git repository)",
                          run_dir);
            goto out;
        }
        have_git = 0;
    }
    if (have_git) {
        /* a repository without the mark is a run only when an init was cut short */
        if (!is_marked(lg->repo) && !(create && is_unborn(lg->repo))) {
            rc = r1_err_set(R1_EINVAL,
                            "%s: a git repository but not an r1 run directory (no r1.ledger in "
                            "its .git/config); give the directory `r1 run` created",
                            run_dir);
            goto out;
        }
    } else {
        git_repository_init_options o;
        git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
        o.flags = GIT_REPOSITORY_INIT_MKPATH;
        o.initial_head = "main";
        if (git_repository_init_ext(&lg->repo, run_dir, &o)) {
            rc = git_fail(R1_EIO, "cannot create the ledger repository", run_dir);
            goto out;
        }
    }
    if (create) {
        git_config *cfg = NULL;
        if (!is_marked(lg->repo)) {
            if (git_repository_config(&cfg, lg->repo) ||
                git_config_set_bool(cfg, "r1.ledger", 1)) {
                git_config_free(cfg);
                rc = git_fail(R1_EIO, "cannot mark the repository as an r1 ledger", run_dir);
                goto out;
            }
            git_config_free(cfg);
        }
        if ((rc = make_root(lg)))
            goto out;
    }
    *out = lg;
    return 0;
out:
    r1_ledger_free(lg);
    return rc;
}

int r1_ledger_open(struct r1_ledger **out, const char *run_dir)
{
    return open_common(out, run_dir, 0);
}

int r1_ledger_open_or_init(struct r1_ledger **out, const char *run_dir)
{
    return open_common(out, run_dir, 1);
}

void r1_ledger_free(struct r1_ledger *lg)
{
    if (!lg)
        return;
    git_repository_free(lg->repo);
    free(lg->dir);
    free(lg);
    git_libgit2_shutdown();
}

int r1_ledger_source(char out[64], const char *recipe_path)
{
    out[0] = '\0';
    char real[PATH_MAX];
    if (!realpath(recipe_path, real))
        return r1_err_set(R1_EIO, "%s: cannot resolve the recipe path: %s", recipe_path,
                          strerror(errno));
    char *slash = strrchr(real, '/');
    if (slash == real)
        real[1] = '\0';
    else if (slash)
        *slash = '\0';
    git_libgit2_init();
    git_repository *repo = NULL;
    git_status_list *st = NULL;
    int rc = 0;
    int e = git_repository_open_ext(&repo, real, 0, NULL);
    if (e == GIT_ENOTFOUND)
        goto out;
    if (e) {
        rc = git_fail(R1_EIO, "cannot open the recipe's git repository", real);
        goto out;
    }
    git_oid oid;
    e = git_reference_name_to_id(&oid, repo, "HEAD");
    if (e == GIT_ENOTFOUND || e == GIT_EUNBORNBRANCH)
        goto out;
    if (e) {
        rc = git_fail(R1_EIO, "cannot read HEAD of the recipe's git repository", real);
        goto out;
    }
    git_oid_tostr(out, R1_LEDGER_ID_HEX, &oid);
    if (!git_repository_is_bare(repo)) {
        git_status_options so;
        git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
        so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
        so.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES; /* untracked files do not count */
        if (git_status_list_new(&st, repo, &so)) {
            out[0] = '\0';
            rc = git_fail(R1_EIO, "cannot read the status of the recipe's git repository", real);
            goto out;
        }
        if (git_status_list_entrycount(st) > 0)
            strcat(out, "-dirty");
    }
out:
    git_status_list_free(st);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return rc;
}

/* Appends printf output to a growing string; *s NULL after a failed allocation. */
static void append(char **s, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    if (!*s)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (*len + (size_t)n + 1 > *cap) {
        size_t c = (*cap * 2 > *len + (size_t)n + 1) ? *cap * 2 : *len + (size_t)n + 64;
        char *t = realloc(*s, c);
        if (!t) {
            free(*s);
            *s = NULL;
            return;
        }
        *s = t;
        *cap = c;
    }
    va_start(ap, fmt);
    vsnprintf(*s + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

static int check_entry(const struct r1_ledger_entry *e)
{
    int rc;
    if ((rc = r1_ledger_check_name("stage", e->stage)) ||
        (rc = r1_ledger_check_name("kind", e->kind)))
        return rc;
    if (e->step < 0)
        return r1_err_set(R1_EINVAL, "ledger: step %" PRId64 " of stage %s is negative", e->step,
                          e->stage);
    if (!r1_sha256_is_hex(e->manifest_sha256) || (e->parent && !r1_sha256_is_hex(e->parent)))
        return r1_err_set(R1_EINVAL, "ledger: stage %s step %" PRId64
                                     ": manifest and parent must be 64-digit sha256 hex",
                          e->stage, e->step);
    if ((rc = one_line("summary", e->summary)) || (rc = one_line("recipe hash", e->recipe_hash)))
        return rc;
    for (int i = 0; i < e->n_data; i++) {
        const char *nm = e->data[i].name;
        if (!nm || !*nm || strpbrk(nm, " \t\r\n") || !r1_sha256_is_hex(e->data[i].sha256))
            return r1_err_set(R1_EINVAL,
                              "ledger: dataset %d ('%s') needs a name without spaces and a "
                              "64-digit sha256",
                              i, nm ? nm : "(null)");
    }
    return 0;
}

int r1_ledger_commit_checkpoint(struct r1_ledger *lg, const struct r1_ledger_entry *e,
                                char id[R1_LEDGER_ID_HEX])
{
    int rc;
    if ((rc = check_entry(e)))
        return rc;
    char source[64] = "";
    if (e->recipe_path && (rc = r1_ledger_source(source, e->recipe_path)))
        return rc;
    size_t len = 0, cap = 1024;
    char *msg = malloc(cap);
    if (e->summary)
        append(&msg, &len, &cap, "%s\n\n", e->summary);
    else
        append(&msg, &len, &cap, "%s: step %" PRId64 "\n\n", e->stage, e->step);
    append(&msg, &len, &cap, "R1-Stage: %s\nR1-Kind: %s\nR1-Step: %" PRId64 "\n", e->stage,
           e->kind, e->step);
    append(&msg, &len, &cap, "R1-Parent: %s\nR1-Manifest: %s\n", e->parent ? e->parent : "none",
           e->manifest_sha256);
    append(&msg, &len, &cap, "R1-Recipe-Hash: %s\nR1-Seed: %" PRIu64 "\n",
           e->recipe_hash && *e->recipe_hash ? e->recipe_hash : "none", e->seed);
    for (int i = 0; i < e->n_data; i++)
        append(&msg, &len, &cap, "R1-Data: %s %s\n", e->data[i].name, e->data[i].sha256);
    append(&msg, &len, &cap, "R1-Version: %s\n", R1_VERSION);
    if (source[0])
        append(&msg, &len, &cap, "R1-Source: %s\n", source);
    if (e->forced)
        append(&msg, &len, &cap, "R1-Forced: yes\n");
    if (!msg)
        return r1_err_set(R1_ENOMEM, "%s: out of memory for the commit message", lg->dir);
    char path[160];
    snprintf(path, sizeof(path), "checkpoints/%s/%08" PRId64 "/manifest.json", e->stage, e->step);
    struct blob_file files[3];
    int n = 0;
    files[n++] = (struct blob_file){path, e->manifest, e->manifest_len};
    if (e->recipe_lock)
        files[n++] = (struct blob_file){"recipe.lock.yaml", e->recipe_lock, e->recipe_lock_len};
    if (e->metrics)
        files[n++] = (struct blob_file){"metrics.jsonl", e->metrics, e->metrics_len};
    rc = commit_files(lg, files, n, msg, id);
    free(msg);
    return rc;
}

int r1_ledger_tag_stage(struct r1_ledger *lg, const char *stage)
{
    int rc;
    if ((rc = r1_ledger_check_name("stage", stage)))
        return rc;
    git_commit *head = NULL;
    git_reference *ref = NULL;
    if ((rc = head_commit(lg, &head)))
        return rc;
    if (!head)
        return r1_err_set(R1_ESTATE, "%s: cannot tag stage/%s: the ledger has no commit yet",
                          lg->dir, stage);
    char name[96], refname[112];
    snprintf(name, sizeof(name), "stage/%s", stage);
    snprintf(refname, sizeof(refname), "refs/tags/%s", name);
    git_oid oid;
    int e = git_tag_create_lightweight(&oid, lg->repo, name, (const git_object *)head, 0);
    if (e == GIT_EEXISTS) {
        if (git_reference_lookup(&ref, lg->repo, refname)) {
            rc = git_fail(R1_EIO, "cannot read an existing stage tag", lg->dir);
        } else if (!git_reference_target(ref) ||
                   !git_oid_equal(git_reference_target(ref), git_commit_id(head))) {
            rc = r1_err_set(R1_ESTATE,
                            "%s: tag %s already marks another commit; the stage finished before "
                            "(see `git -C %s tag`)",
                            lg->dir, name, lg->dir);
        }
    } else if (e) {
        rc = git_fail(R1_EIO, "cannot create the stage tag", lg->dir);
    }
    git_reference_free(ref);
    git_commit_free(head);
    return rc;
}

const char *r1_ledger_trailer(const struct r1_ledger_commit *c, const char *key)
{
    for (int i = 0; i < c->n_trailers; i++)
        if (strcmp(c->keys[i], key) == 0)
            return c->values[i];
    return NULL;
}

int r1_ledger_walk(struct r1_ledger *lg, int oldest_first,
                   int (*fn)(const struct r1_ledger_commit *c, void *ud), void *ud)
{
    git_revwalk *w = NULL;
    int rc = 0;
    if (git_revwalk_new(&w, lg->repo))
        return git_fail(R1_EIO, "cannot walk the ledger", lg->dir);
    git_revwalk_sorting(w, GIT_SORT_TOPOLOGICAL | (oldest_first ? GIT_SORT_REVERSE : 0));
    int e = git_revwalk_push_ref(w, MAIN_REF);
    if (e == GIT_ENOTFOUND)
        goto out;
    if (e) {
        rc = git_fail(R1_EIO, "cannot walk the ledger", lg->dir);
        goto out;
    }
    git_oid oid;
    while ((e = git_revwalk_next(&oid, w)) == 0) {
        git_commit *cm = NULL;
        if (git_commit_lookup(&cm, lg->repo, &oid)) {
            rc = git_fail(R1_EIO, "cannot read a ledger commit", lg->dir);
            goto out;
        }
        git_message_trailer_array arr;
        memset(&arr, 0, sizeof(arr));
        const char *msg = git_commit_message(cm);
        if (git_message_trailers(&arr, msg)) {
            git_commit_free(cm);
            rc = git_fail(R1_EFORMAT, "cannot parse a ledger commit's trailers", lg->dir);
            goto out;
        }
        int n = (int)arr.count;
        const char **kv = calloc(2 * (size_t)n + 2, sizeof(*kv));
        if (!kv) {
            git_message_trailer_array_free(&arr);
            git_commit_free(cm);
            rc = r1_err_set(R1_ENOMEM, "%s: out of memory walking the ledger", lg->dir);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            kv[i] = arr.trailers[i].key;
            kv[n + 1 + i] = arr.trailers[i].value;
        }
        struct r1_ledger_commit c;
        memset(&c, 0, sizeof(c));
        git_oid_tostr(c.id, sizeof(c.id), &oid);
        c.time = (int64_t)git_commit_time(cm);
        c.summary = git_commit_summary(cm);
        c.message = msg;
        c.n_trailers = n;
        c.keys = kv;
        c.values = kv + n + 1;
        c.stage = r1_ledger_trailer(&c, "R1-Stage");
        c.kind = r1_ledger_trailer(&c, "R1-Kind");
        c.manifest_sha256 = r1_ledger_trailer(&c, "R1-Manifest");
        c.parent = r1_ledger_trailer(&c, "R1-Parent");
        if (c.parent && strcmp(c.parent, "none") == 0)
            c.parent = NULL;
        const char *step = r1_ledger_trailer(&c, "R1-Step");
        c.step = step ? strtoll(step, NULL, 10) : -1;
        rc = fn(&c, ud);
        free(kv);
        git_message_trailer_array_free(&arr);
        git_commit_free(cm);
        if (rc)
            goto out;
    }
    if (e != GIT_ITEROVER)
        rc = git_fail(R1_EIO, "cannot walk the ledger", lg->dir);
out:
    git_revwalk_free(w);
    return rc;
}

int r1_ledger_read_file(struct r1_ledger *lg, const char *id, const char *path, char **data,
                        size_t *len)
{
    git_oid oid;
    git_commit *cm = NULL;
    git_tree *tree = NULL;
    git_tree_entry *ent = NULL;
    git_blob *blob = NULL;
    int rc = 0;
    *data = NULL;
    *len = 0;
    if (git_oid_fromstr(&oid, id) || git_commit_lookup(&cm, lg->repo, &oid) ||
        git_commit_tree(&tree, cm)) {
        rc = git_fail(R1_EFORMAT, "cannot read a ledger commit", lg->dir);
        goto out;
    }
    if (git_tree_entry_bypath(&ent, tree, path) ||
        git_blob_lookup(&blob, lg->repo, git_tree_entry_id(ent))) {
        rc = r1_err_set(R1_EFORMAT, "%s: ledger commit %.12s has no %s", lg->dir, id, path);
        goto out;
    }
    size_t n = (size_t)git_blob_rawsize(blob);
    char *buf = malloc(n + 1);
    if (!buf) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory reading %s", lg->dir, path);
        goto out;
    }
    memcpy(buf, git_blob_rawcontent(blob), n);
    buf[n] = '\0';
    *data = buf;
    *len = n;
out:
    git_blob_free(blob);
    git_tree_entry_free(ent);
    git_tree_free(tree);
    git_commit_free(cm);
    return rc;
}

int r1_ledger_has_path(struct r1_ledger *lg, const char *path)
{
    git_commit *head = NULL;
    git_tree *tree = NULL;
    git_tree_entry *ent = NULL;
    int found = 0;
    if (head_commit(lg, &head) == 0 && head && git_commit_tree(&tree, head) == 0)
        found = git_tree_entry_bypath(&ent, tree, path) == 0;
    git_tree_entry_free(ent);
    git_tree_free(tree);
    git_commit_free(head);
    return found;
}

int r1_ledger_has_stage_tag(struct r1_ledger *lg, const char *stage)
{
    char name[128];
    git_reference *ref = NULL;
    snprintf(name, sizeof(name), "refs/tags/stage/%s", stage);
    int e = git_reference_lookup(&ref, lg->repo, name);
    git_reference_free(ref);
    if (e == 0)
        return 1;
    if (e == GIT_ENOTFOUND)
        return 0;
    return r1_err_set(R1_EIO, "%s: cannot read tag stage/%s from the ledger", lg->dir, stage);
}

static int remove_lock_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 5 && strcmp(path + n - 5, ".lock") == 0)
        unlink(path);
    return 0;
}

int r1_ledger_clear_stale_locks(const char *run_dir)
{
    static const char *const files[] = {"index.lock", "HEAD.lock", "config.lock",
                                        "packed-refs.lock"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/.git/%s", run_dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            return r1_err_set(R1_EIO, "%s: cannot remove a stale git lock: %s", path,
                              strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/.git/refs", run_dir);
    struct stat st;
    if (stat(path, &st) == 0)
        nftw(path, remove_lock_file, 16, FTW_PHYS);
    return 0;
}
