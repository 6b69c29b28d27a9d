/* export.c - `r1 export DIR STAGE OUT`: a stage's newest checkpoint as a standalone
 * Hugging Face model directory.
 *
 * Copies the model files of the checkpoint (config.json, the safetensors weights and
 * whatever tokenizer files it holds; never the trainer state such as
 * optimizer.safetensors or trainer_state.json) into OUT.tmp-<pid>, checks each copy
 * against the sha256 its manifest records, fsyncs, and renames the directory to OUT,
 * so OUT is either complete or absent.  OUT must not exist.  A stage that has not
 * finished is exported with a warning. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/checkpoint.h"
#include "core/err.h"
#include "core/file.h"
#include "core/recipe.h"
#include "core/sha256.h"

/* Files of a Hugging Face model directory that an export carries. */
static bool is_model_file(const char *name)
{
    static const char *const exact[] = {
        "config.json",        "generation_config.json",
        "model.safetensors",  "model.safetensors.index.json",
        "tokenizer.json",     "tokenizer_config.json",
        "tokenizer.model",    "special_tokens_map.json",
        "added_tokens.json",  "vocab.json",
        "merges.txt",         "chat_template.jinja",
        "chat_template.json",
    };
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    size_t n = strlen(name);
    return strncmp(name, "model-", 6) == 0 && n > 18 && strcmp(name + n - 12, ".safetensors") == 0;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return r1_err_set(R1_EIO, "%s: cannot open (%s)", path, strerror(errno));
    int ok = fsync(fd) == 0;
    close(fd);
    return ok ? 0 : r1_err_set(R1_EIO, "%s: cannot sync (%s)", path, strerror(errno));
}

/* Removes the temp dir and the files copied into it so far. */
static void remove_tmp(const char *tmp, const struct r1_checkpoint *ck)
{
    char path[4400];
    for (int i = 0; i < ck->n_files; i++) {
        snprintf(path, sizeof(path), "%s/%s", tmp, ck->files[i].name);
        unlink(path);
    }
    rmdir(tmp);
}

/* Copies the model files of ck into the new directory out via out.tmp-<pid>. */
static int export_checkpoint(const struct r1_checkpoint *ck, const char *out, const char *dir)
{
    char tmp[4200], dst[4300], hex[R1_SHA256_HEX], parent[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", out, (long)getpid());
    if (!r1_checkpoint_file_path(ck, "config.json") ||
        !r1_checkpoint_file_path(ck, "model.safetensors"))
        return r1_err_set(R1_EFORMAT,
                          "%s: the checkpoint lacks config.json or "
                          "model.safetensors; check the run with r1 verify %s",
                          ck->dir, dir);
    if (mkdir(tmp, 0777) != 0)
        return r1_err_set(R1_EIO,
                          "%s: cannot create (%s); OUT's parent directory must exist "
                          "and be writable",
                          tmp, strerror(errno));
    int rc = 0;
    for (int i = 0; i < ck->n_files && !rc; i++) {
        const struct r1_checkpoint_file *f = &ck->files[i];
        if (!is_model_file(f->name))
            continue;
        snprintf(dst, sizeof(dst), "%s/%s", tmp, f->name);
        if ((rc = r1_file_copy(r1_checkpoint_file_path(ck, f->name), dst)) ||
            (rc = r1_sha256_file(hex, NULL, dst)))
            break;
        if (strcmp(hex, f->sha256) != 0)
            rc = r1_err_set(R1_EFORMAT,
                            "%s/%s: sha256 %s differs from %s in its manifest; the "
                            "run is damaged, see r1 verify %s",
                            ck->dir, f->name, hex, f->sha256, dir);
    }
    if (!rc)
        rc = sync_dir(tmp);
    if (!rc && rename(tmp, out) != 0)
        rc = r1_err_set(R1_EIO, "%s: cannot rename %s to it (%s)", out, tmp, strerror(errno));
    if (rc) {
        remove_tmp(tmp, ck);
        return rc;
    }
    /* the rename is durable once the directory holding OUT is synced */
    snprintf(parent, sizeof(parent), "%s", out);
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    return sync_dir(parent);
}

int cmd_export(int argc, char **argv)
{
    const struct r1_option opts[] = {
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[3];
    int npos = 0;
    int rc = r1_opt_parse("export", "DIR STAGE OUT",
                          "Writes the newest checkpoint of STAGE in the run DIR as a standalone\n"
                          "Hugging Face model directory OUT (config.json, model.safetensors and\n"
                          "any tokenizer files; no optimizer or trainer state).  OUT must not\n"
                          "exist; it appears complete or not at all.  A stage that has not\n"
                          "finished is exported with a warning.",
                          opts, argc, argv, pos, 3, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (npos != 3) {
        fprintf(stderr, "r1 export: needs DIR STAGE OUT (see 'r1 export --help')\n");
        return 2;
    }
    const char *dir = pos[0], *stage = pos[1], *out = pos[2];
    struct r1_recipe *r = NULL;
    struct r1_checkpoint *ck = NULL;
    const struct r1_stage_cfg *s = NULL;
    struct stat st;
    if ((rc = cmd_run_dir_load(&r, dir)))
        goto out;
    for (int i = 0; i < r->n_stages && !s; i++)
        if (strcmp(r->stages[i].name, stage) == 0)
            s = &r->stages[i];
    if (!s) {
        char names[512] = "";
        for (int i = 0, used = 0; i < r->n_stages; i++) {
            int k = snprintf(names + used, sizeof(names) - (size_t)used, "%s%s", i ? ", " : "",
                             r->stages[i].name);
            if (k < 0 || (size_t)(used + k) >= sizeof(names))
                break;
            used += k;
        }
        rc = r1_err_set(R1_EINVAL, "%s: the run has no stage '%s' (its stages: %s)", dir, stage,
                        names);
        goto out;
    }
    if (lstat(out, &st) == 0) {
        rc = r1_err_set(R1_EINVAL,
                        "%s already exists; export writes a new directory, give "
                        "another OUT or remove it",
                        out);
        goto out;
    }
    if ((rc = r1_checkpoint_latest(&ck, dir, stage)))
        goto out;
    if (!ck) {
        rc = r1_err_set(R1_EINVAL,
                        "%s: stage '%s' has no checkpoint yet; run it first "
                        "(r1 resume %s)",
                        dir, stage, dir);
        goto out;
    }
    int done = cmd_stage_finished(dir, stage);
    if (done < 0) {
        rc = done;
        goto out;
    }
    if (!done)
        fprintf(stderr,
                "r1 export: warning: stage '%s' has not finished; exporting its newest "
                "checkpoint, step %" PRId64 "\n",
                stage, ck->step);
    if ((rc = export_checkpoint(ck, out, dir)))
        goto out;
    printf("exported %s step %" PRId64 " (checkpoint %.12s) to %s\n", stage, ck->step,
           ck->manifest_sha256, out);
out:
    r1_checkpoint_free(ck);
    r1_recipe_free(r);
    return rc ? cmd_fail("export", rc) : 0;
}
