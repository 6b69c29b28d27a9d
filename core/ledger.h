/* ledger.h - the run directory's git history: one commit per checkpoint (libgit2).
 *
 * The run directory is itself a git repository on branch main, readable with
 * plain git (`git -C DIR log`, `git -C DIR tag`).  r1_ledger_open_or_init makes
 * a root commit "r1 run directory" holding .gitignore (objects/, tmp/, latest and
 * every checkpoint file except manifest.json stay out of git) and marks the
 * repository with the config key r1.ledger = 1, which is what makes a git
 * repository a run directory.
 *
 * Each checkpoint commit's tree is the previous tree plus
 *   checkpoints/<stage>/<step, 8 digits>/manifest.json
 *   recipe.lock.yaml            (the resolved recipe, as given)
 *   metrics.jsonl               (the run's metrics lines so far, as given)
 * and its message is a one-line summary, a blank line and the trailers
 *   R1-Stage, R1-Kind, R1-Step, R1-Parent (manifest sha256 or "none"),
 *   R1-Manifest (this checkpoint's manifest sha256), R1-Recipe-Hash, R1-Seed,
 *   R1-Data (one per dataset: "name sha256"), R1-Version,
 *   R1-Source (commit of the git repository holding the recipe, "-dirty" when
 *   tracked files there have uncommitted changes; absent outside a repository
 *   or when it has no commit yet) and R1-Forced: yes (only when forced).
 * Author and committer are "r1 <r1@localhost>" at the current time, or at the
 * time in the environment variable R1_COMMIT_TIME (unix seconds, UTC) so that
 * two identical runs give identical commit ids.  The repository's index is
 * kept equal to HEAD's tree so `git status` in DIR is clean. */
#ifndef R1_LEDGER_H
#define R1_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#define R1_LEDGER_ID_HEX 41 /* 40 hex digits of a commit id + NUL */

struct r1_ledger;

/* A dataset a checkpoint read: its name in the recipe and the sha256 of its bytes. */
struct r1_data_hash {
    const char *name;
    const char *sha256;
};

/* What one checkpoint commit records.  Strings are borrowed; none may hold a newline. */
struct r1_ledger_entry {
    const char *stage, *kind;
    int64_t step;
    const char *parent;          /* manifest sha256 this checkpoint started from; NULL: none */
    const char *manifest_sha256; /* sha256 of manifest bytes */
    const void *manifest;
    size_t manifest_len;
    const char *recipe_hash; /* NULL: "none" */
    uint64_t seed;
    const struct r1_data_hash *data;
    int n_data;
    const char *summary;        /* one line in words; NULL: "<stage>: step <step>" */
    const void *recipe_lock;    /* recipe.lock.yaml bytes; NULL with len 0: not recorded */
    size_t recipe_lock_len;
    const void *metrics;        /* metrics.jsonl bytes so far; NULL with len 0: not recorded */
    size_t metrics_len;
    const char *recipe_path;    /* the recipe file, for R1-Source; NULL: no R1-Source */
    int forced;                 /* nonzero: R1-Forced: yes */
};

/* One commit as r1_ledger_walk hands it over; every pointer is valid only during the call. */
struct r1_ledger_commit {
    char id[R1_LEDGER_ID_HEX];
    int64_t time; /* committer time, unix seconds */
    const char *summary;
    const char *message;
    int n_trailers;
    const char *const *keys, *const *values; /* trailers in message order */
    /* Parsed from the trailers; stage is NULL for the root commit. */
    const char *stage, *kind, *parent, *manifest_sha256;
    int64_t step;
};

/* Opens DIR's ledger; R1_EINVAL "not an r1 run directory" when DIR is not one. */
int r1_ledger_open(struct r1_ledger **out, const char *run_dir);
/* Opens DIR's ledger, creating DIR, the repository and the root commit when missing.
 * R1_EINVAL when DIR is a git repository that is not a run directory. */
int r1_ledger_open_or_init(struct r1_ledger **out, const char *run_dir);
void r1_ledger_free(struct r1_ledger *lg);

/* Commits one checkpoint on refs/heads/main; id (when not NULL) receives the commit id. */
int r1_ledger_commit_checkpoint(struct r1_ledger *lg, const struct r1_ledger_entry *e,
                                char id[R1_LEDGER_ID_HEX]);
/* Creates the lightweight tag stage/<stage> at HEAD.  Already there at HEAD: 0;
 * there at another commit: R1_ESTATE. */
int r1_ledger_tag_stage(struct r1_ledger *lg, const char *stage);

/* Calls fn for each commit on main, newest first (oldest first when oldest_first);
 * a nonzero return from fn stops the walk and is returned. */
int r1_ledger_walk(struct r1_ledger *lg, int oldest_first,
                   int (*fn)(const struct r1_ledger_commit *c, void *ud), void *ud);
/* The first value of trailer key in c, or NULL. */
const char *r1_ledger_trailer(const struct r1_ledger_commit *c, const char *key);
/* Reads the file at path in commit id's tree into a malloc'd buffer (NUL-terminated,
 * *len excludes the NUL).  R1_EFORMAT naming commit and path when absent. */
int r1_ledger_read_file(struct r1_ledger *lg, const char *id, const char *path, char **data,
                        size_t *len);
/* Removes git lock files (index.lock, HEAD.lock, any .lock under refs/) that a process killed
 * mid-commit leaves behind.  Only for a caller that holds the run directory's exclusive
 * lock (stages/pipeline.c takes it), so no other writer can own them. */
int r1_ledger_clear_stale_locks(const char *run_dir);
/* 1 when the tag stage/<stage> exists (the stage finished), 0 when not, or a negative code. */
int r1_ledger_has_stage_tag(struct r1_ledger *lg, const char *stage);
/* 1 when HEAD's tree holds path, 0 when not (or no commit yet). */
int r1_ledger_has_path(struct r1_ledger *lg, const char *path);

/* R1_EINVAL naming what unless name is 1-64 of [A-Za-z0-9_-] starting with a letter or
 * digit (stage names become directory names and tag names). */
int r1_ledger_check_name(const char *what, const char *name);

/* R1-Source for a recipe file: the commit id of the repository found upward from its
 * directory, with "-dirty" when tracked files there differ from HEAD.  Returns 0 and
 * sets out[0] = '\0' when the file is not in a repository (or it has no commit). */
int r1_ledger_source(char out[64], const char *recipe_path);

#endif
