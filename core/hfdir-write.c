/* hfdir-write.c - a complete Hugging Face model directory: config, weights (one file or
 * shards with an index), generation config and the source's tokenizer files (see
 * hfdir.h).  Each file is written atomically; callers that need the whole directory
 * to appear at once write into a temporary directory and rename it. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/file.h"
#include "core/hfdir.h"
#include "core/safetensors.h"

const char *const r1_hfdir_extra_files[] = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    NULL,
};

static int write_json(json_t *o, const char *path)
{
    return r1_file_write_json(path, o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

static int write_generation_config(const struct r1_model_config *c, const char *path)
{
    json_t *o = json_object();
    json_object_set_new(o, "_from_model_config", json_true());
    if (c->bos_id >= 0)
        json_object_set_new(o, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0)
        json_object_set_new(o, "eos_token_id", json_integer(c->eos_id));
    if (c->pad_id >= 0)
        json_object_set_new(o, "pad_token_id", json_integer(c->pad_id));
    int rc = write_json(o, path);
    json_decref(o);
    return rc;
}

/* Tensors [lo, hi) of m (host copy in host) as one safetensors file. */
static int write_shard(const struct r1_model *m, const float *host, int lo, int hi,
                       enum r1_dtype dt, const char *path)
{
    struct r1_st_writer *w = NULL;
    int rc;
    if ((rc = r1_st_writer_create(&w)) || (rc = r1_st_writer_meta(w, "format", "pt")))
        goto out;
    for (int i = lo; i < hi; i++) {
        const struct r1_param *p = &m->tensors[i];
        const float *src = host + ((float *)p->w.data - m->param_mem);
        if ((rc = r1_st_writer_add_f32(w, p->name, dt, p->w.ndim, p->w.shape, src)))
            goto out;
    }
    rc = r1_st_writer_write(w, path);
out:
    r1_st_writer_free(w);
    return rc;
}

static int write_weights(const struct r1_model *m, const char *dir, enum r1_dtype dt,
                         uint64_t max_bytes)
{
    char path[4400];
    int n = m->n_tensors, rc = 0;
    int *start = calloc((size_t)n + 2, sizeof(int)); /* shard k holds [start[k], start[k+1]) */
    float *host = malloc(m->params.cap);
    json_t *index = NULL;
    if (!start || !host) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of host memory", dir);
        goto out;
    }
    m->be->ops->download(m->be->ctx, host, m->param_mem, m->params.cap);
    int shards = 0;
    uint64_t cur = 0, total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = (uint64_t)r1_tensor_numel(&m->tensors[i].w) * r1_dtype_size(dt);
        if (i == 0 || (max_bytes && cur > 0 && cur + b > max_bytes)) {
            start[shards++] = i;
            cur = 0;
        }
        cur += b;
        total += b;
    }
    start[shards] = n;
    if (shards <= 1) {
        snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        rc = write_shard(m, host, 0, n, dt, path);
        goto out;
    }
    index = json_object();
    json_t *map = json_object();
    json_object_set_new(index, "metadata", json_pack("{s:I}", "total_size", (json_int_t)total));
    json_object_set_new(index, "weight_map", map);
    for (int k = 0; k < shards; k++) {
        char name[64];
        snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", k + 1, shards);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if ((rc = write_shard(m, host, start[k], start[k + 1], dt, path)))
            goto out;
        for (int i = start[k]; i < start[k + 1]; i++)
            json_object_set_new(map, m->tensors[i].name, json_string(name));
    }
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    rc = write_json(index, path);
out:
    json_decref(index);
    free(host);
    free(start);
    return rc;
}

int r1_hfdir_write(const struct r1_model *m, const char *dir, const struct r1_hfdir_write_opts *o)
{
    char path[4400], src[4400];
    if (o->dtype != R1_F32 && o->dtype != R1_BF16 && o->dtype != R1_F16)
        return r1_err_set(R1_EINVAL, "%s: weights can be saved as F32, BF16 or F16", dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return r1_err_set(R1_EIO, "%s: cannot create directory (%s)", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int rc = r1_model_config_save_json(&m->cfg, path, o->dtype);
    if (rc || (rc = write_weights(m, dir, o->dtype, o->max_shard_bytes)))
        return rc;
    bool have_gen = false;
    for (int i = 0; o->src_dir && r1_hfdir_extra_files[i]; i++) {
        snprintf(src, sizeof(src), "%s/%s", o->src_dir, r1_hfdir_extra_files[i]);
        if (access(src, F_OK) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, r1_hfdir_extra_files[i]);
        if ((rc = r1_file_copy(src, path)))
            return rc;
        have_gen = have_gen || strcmp(r1_hfdir_extra_files[i], "generation_config.json") == 0;
    }
    if (!have_gen) {
        snprintf(path, sizeof(path), "%s/generation_config.json", dir);
        rc = write_generation_config(&m->cfg, path);
    }
    return rc;
}

void r1_hfdir_remove(const char *dir)
{
    char path[4400];
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}
