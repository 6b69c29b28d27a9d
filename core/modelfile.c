/* modelfile.c - opening a model by path (see modelfile.h). */
#include "core/modelfile.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/gguf.h"
#include "core/hfdir.h"

bool r1_modelfile_is_gguf(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[4];
    bool yes = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return yes;
}

/* *gguf: path is a GGUF file (else a directory, read as a Hugging Face one). */
static int check_path(const char *path, bool *gguf)
{
    struct stat st;
    *gguf = false;
    if (stat(path, &st) != 0)
        return r1_err_set(R1_EINVAL,
                          "%s: no such model file or directory; give a .gguf file or a "
                          "Hugging Face model directory",
                          path);
    if (S_ISREG(st.st_mode) && !(*gguf = r1_modelfile_is_gguf(path)))
        return r1_err_set(R1_EFORMAT,
                          "%s: not a GGUF file (bad magic) and not a directory; "
                          "give a .gguf file or a Hugging Face model directory",
                          path);
    return 0;
}

int r1_model_open(struct r1_model **m, struct r1_tokenizer **tok, struct r1_backend *be,
                  const char *path)
{
    *m = NULL;
    *tok = NULL;
    bool gguf;
    int rc = check_path(path, &gguf);
    if (rc)
        return rc;
    if (gguf) {
        struct r1_gguf *g = NULL;
        if (!(rc = r1_gguf_open(&g, path)) && !(rc = r1_tokenizer_gguf_load(tok, g))) {
            struct r1_model_config c;
            if (!(rc = r1_gguf_model_config(&c, g)) && !(rc = r1_model_create(m, &c, be)))
                rc = r1_gguf_load_weights(*m, g);
        }
        r1_gguf_close(g);
    } else if (!(rc = r1_hfdir_load(m, be, path))) {
        rc = r1_hfdir_load_tokenizer(tok, path);
    }
    if (!rc && (*tok)->vocab_size > (*m)->cfg.vocab_size)
        rc = r1_err_set(R1_EFORMAT,
                        "%s: the tokenizer has %d tokens but the model's vocabulary "
                        "is %d; the tokenizer does not belong to this model",
                        path, (*tok)->vocab_size, (*m)->cfg.vocab_size);
    if (rc) {
        r1_model_free(*m);
        r1_tokenizer_free(*tok);
        *m = NULL;
        *tok = NULL;
    }
    return rc;
}

int r1_model_config_open(struct r1_model_config *out, const char *path)
{
    bool gguf;
    int rc = check_path(path, &gguf);
    if (rc)
        return rc;
    if (gguf) {
        struct r1_gguf *g = NULL;
        if (!(rc = r1_gguf_open(&g, path)))
            rc = r1_gguf_model_config(out, g);
        r1_gguf_close(g);
        return rc;
    }
    char cfg[4200];
    if (snprintf(cfg, sizeof(cfg), "%s/config.json", path) >= (int)sizeof(cfg))
        return r1_err_set(R1_EINVAL, "%s: path too long", path);
    return r1_model_config_load_json(out, cfg);
}

int r1_tokenizer_open(struct r1_tokenizer **tok, const char *path)
{
    *tok = NULL;
    bool gguf;
    int rc = check_path(path, &gguf);
    if (rc)
        return rc;
    if (!gguf)
        return r1_hfdir_load_tokenizer(tok, path);
    struct r1_gguf *g = NULL;
    if (!(rc = r1_gguf_open(&g, path)))
        rc = r1_tokenizer_gguf_load(tok, g);
    r1_gguf_close(g);
    return rc;
}

int r1_tokenizer_save_dir(const struct r1_tokenizer *tok, const char *dir)
{
    struct r1_bpe_spec spec;
    if (r1_tokenizer_bpe_spec(tok, &spec) != 0) {
        r1_err_clear();
        return 0; /* the byte-level tokenizer: config.json's marker says it all */
    }
    return r1_tokenizer_json_save(tok, dir);
}
