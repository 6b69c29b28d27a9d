/* checkpoint.h - atomic, content-addressed checkpoints in a run directory.
 *
 * Layout of a run directory DIR (itself a git repository, see ledger.h):
 *   DIR/objects/sha256/<2 hex>/<62 hex>   every stored file, once, by content (read-only)
 *   DIR/checkpoints/<stage>/<step %08>/   one checkpoint: manifest.json plus a hard link
 *                                         into objects/ for each file it lists, so the
 *                                         directory is a loadable Hugging Face model dir
 *   DIR/latest                            "checkpoints/<stage>/<step>\n" of the newest one
 *   DIR/tmp/                              checkpoints being written (removed on the next begin)
 * Where hard links are refused (EXDEV, EPERM), the file is copied instead; r1 verify
 * checks such copies as well.
 *
 * manifest.json (2-space indent, keys sorted, so equal checkpoints give equal bytes):
 *   {"format": "r1-checkpoint", "format_version": 1, "stage", "kind", "step",
 *    "parent": manifest sha256 | null, "recipe_hash": str | null, "seed",
 *    "data": {name: sha256}, "r1_version",
 *    "files": [{"name", "sha256", "size"}] sorted by name}
 * A checkpoint is named by the sha256 of its manifest's bytes.
 *
 * Writing: r1_checkpoint_begin → add files (or write them into r1_checkpoint_tmp_dir
 * and add those) → r1_checkpoint_commit, which fsyncs, renames the temp dir to its
 * final name, commits the ledger, then replaces `latest`.  The ledger is the truth:
 * a checkpoint dir the ledger does not record (a kill between rename and commit) is
 * removed by the next begin, and r1_checkpoint_latest reads the ledger, not `latest`.
 * One process writes a run directory at a time. */
#ifndef R1_CHECKPOINT_H
#define R1_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/ledger.h"
#include "core/sha256.h"

/* What a checkpoint is; strings borrowed by begin (copied). */
struct r1_checkpoint_desc {
    const char *stage; /* see r1_ledger_check_name */
    const char *kind;  /* the stage kind: sft, grpo, ... */
    int64_t step;
    const char *parent;      /* manifest sha256 of the checkpoint this one continues; NULL: none */
    const char *recipe_hash; /* NULL: none */
    uint64_t seed;
    const struct r1_data_hash *data;
    int n_data;
};

/* What only the ledger records; all borrowed, all optional (see r1_ledger_entry). */
struct r1_checkpoint_commit_info {
    const char *summary;
    const void *recipe_lock;
    size_t recipe_lock_len;
    const void *metrics;
    size_t metrics_len;
    const char *recipe_path;
    int forced;
};

struct r1_checkpoint_file {
    char *name;
    char sha256[R1_SHA256_HEX];
    uint64_t size;
    char *path; /* the file in the checkpoint dir (the temp dir until committed) */
};

struct r1_checkpoint {
    char *run_dir;
    char *rel;     /* "checkpoints/<stage>/<step %08>" */
    char *dir;     /* run_dir/rel once committed or opened; the temp dir while writing */
    char *stage, *kind, *parent, *recipe_hash;
    int64_t step;
    uint64_t seed;
    int n_data;
    struct r1_data_hash *data; /* owned strings */
    int n_files;
    struct r1_checkpoint_file *files; /* sorted by name once committed or opened */
    char manifest_sha256[R1_SHA256_HEX]; /* set by commit or open */
    char commit_id[R1_LEDGER_ID_HEX];    /* ledger commit; set by commit and latest */
    int writing;
    struct r1_ledger *ledger; /* while writing */
};

/* Starts a checkpoint in a fresh temp dir, creating the run directory and its ledger
 * when missing and cleaning up after an interrupted earlier write.  R1_ESTATE when the
 * ledger already holds this stage and step. */
int r1_checkpoint_begin(struct r1_checkpoint **out, const char *run_dir,
                        const struct r1_checkpoint_desc *d);
/* The temp dir a caller may write files into before adding them. */
const char *r1_checkpoint_tmp_dir(const struct r1_checkpoint *ck);
/* Stores the file at src as name (a plain file name): hashes it, places it in objects/
 * unless there already (moved when src lies in the temp dir, copied otherwise) and
 * links it into the checkpoint.  src outside the temp dir is left untouched. */
int r1_checkpoint_add_file(struct r1_checkpoint *ck, const char *name, const char *src);
/* Stores len bytes as name (for small files such as trainer_state.json). */
int r1_checkpoint_add_bytes(struct r1_checkpoint *ck, const char *name, const void *data,
                            size_t len);
/* Writes the manifest and makes the checkpoint durable and visible (see above).
 * info may be NULL.  On success ck describes the committed checkpoint. */
int r1_checkpoint_commit(struct r1_checkpoint *ck, const struct r1_checkpoint_commit_info *info);

/* Reads DIR/rel/manifest.json (rel as in `latest`: "checkpoints/<stage>/<step>"). */
int r1_checkpoint_open(struct r1_checkpoint **out, const char *run_dir, const char *rel);
/* The newest checkpoint in the ledger (of stage, when not NULL); *out NULL when none. */
int r1_checkpoint_latest(struct r1_checkpoint **out, const char *run_dir, const char *stage);
/* The path of the stored file name (borrowed), or NULL when the checkpoint lacks it. */
const char *r1_checkpoint_file_path(const struct r1_checkpoint *ck, const char *name);
/* Frees ck; a checkpoint still being written is abandoned and its temp dir removed. */
void r1_checkpoint_free(struct r1_checkpoint *ck);

/* The result of r1_checkpoint_verify. */
struct r1_verify_report {
    int n_checkpoints;
    int n_objects;
};

/* Re-hashes every object every manifest in DIR's ledger lists, checks each checkpoint
 * dir's manifest.json against the ledger's copy and R1-Manifest, each R1-Parent against
 * the manifests before it, and `latest`.  0 when intact; R1_EFORMAT naming the first
 * file that differs (path, expected and actual sha256); R1_EINVAL when DIR is not a run
 * directory. */
int r1_checkpoint_verify(const char *run_dir, struct r1_verify_report *rep);

#endif
