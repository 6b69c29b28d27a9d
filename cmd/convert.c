/* convert.c - `r1 convert IN OUT`: a GGUF file or a Hugging Face model directory to a
 * Hugging Face model directory (config.json, safetensors weights, generation_config.json,
 * and the tokenizer files of an IN directory).
 *
 * OUT must not exist; it is written as OUT.tmp-XXXXXX and renamed, so a failure (a
 * malformed IN is exit 2) leaves nothing behind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/backend.h"
#include "core/err.h"
#include "core/gguf.h"
#include "core/hfdir.h"
#include "core/model.h"
#include "core/tokenizer.h"

/* "5GB", "500MB", "10KiB", "123" (bytes) → *out; decimal units as transformers uses. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return -1;
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1},         {"B", 1},           {"KB", 1e3},
                 {"MB", 1e6},     {"GB", 1e9},        {"TB", 1e12},
                 {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(end, units[i].unit) == 0) {
            double b = v * units[i].mult;
            if (b < 1 || b > 1e18)
                return -1;
            *out = (uint64_t)b;
            return 0;
        }
    return -1;
}

int cmd_convert(int argc, char **argv)
{
    const char *dtype = "f32", *shard = "5GB";
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "dtype", 0, &dtype, "T",
         "weight dtype written: f32, bf16 or f16 "
         "(default f32)"},
        {R1_OPT_STRING, "max-shard-size", 0, &shard, "SIZE",
         "shard the weights into files of at most SIZE (e.g. 2GB, 500MB; default 5GB)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[2];
    int npos = 0;
    int rc = r1_opt_parse("convert", "IN OUT [--dtype T] [--max-shard-size SIZE]",
                          "Converts IN, a GGUF file (llama or qwen2; quantized weights are\n"
                          "dequantized) or a Hugging Face model directory, into the Hugging Face\n"
                          "model directory OUT: config.json, model.safetensors (or shards with\n"
                          "model.safetensors.index.json), generation_config.json and the\n"
                          "tokenizer files of an IN directory.  OUT must not exist; it appears\n"
                          "complete or not at all.",
                          opts, argc, argv, pos, 2, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (npos != 2) {
        fprintf(stderr, "r1 convert: needs IN and OUT (see 'r1 convert --help')\n");
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    struct r1_hfdir_write_opts wo = {R1_F32, 0, NULL};
    if (strcmp(dtype, "f32") == 0)
        wo.dtype = R1_F32;
    else if (strcmp(dtype, "bf16") == 0)
        wo.dtype = R1_BF16;
    else if (strcmp(dtype, "f16") == 0)
        wo.dtype = R1_F16;
    else {
        fprintf(stderr, "r1 convert: --dtype '%s' is not f32, bf16 or f16\n", dtype);
        return 2;
    }
    if (parse_size(shard, &wo.max_shard_bytes) != 0) {
        fprintf(stderr,
                "r1 convert: --max-shard-size '%s' is not a size such as 5GB or "
                "500MB\n",
                shard);
        return 2;
    }
    struct stat st;
    if (lstat(out, &st) == 0) {
        fprintf(stderr, "r1 convert: %s already exists; give a new OUT or remove it\n", out);
        return 2;
    }
    if (stat(in, &st) != 0) {
        fprintf(stderr, "r1 convert: %s: cannot read (%s)\n", in, strerror(errno));
        return 2;
    }
    bool is_dir = S_ISDIR(st.st_mode); /* else GGUF: its magic check names a wrong file */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", out);
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_gguf *g = NULL;
    bool made = false;
    if ((rc = r1_backend_create(&be, R1_BACKEND_CPU, 0)))
        goto out;
    if (is_dir) {
        wo.src_dir = in;
        if ((rc = r1_hfdir_load(&m, be, in)))
            goto out;
    } else {
        struct r1_model_config c;
        if ((rc = r1_gguf_open(&g, in)) || (rc = r1_gguf_model_config(&c, g)) ||
            (rc = r1_model_create(&m, &c, be)) || (rc = r1_gguf_load_weights(m, g)))
            goto out;
    }
    if (!mkdtemp(tmp)) {
        rc = r1_err_set(R1_EIO,
                        "%s: cannot create (%s); OUT's parent directory must exist and "
                        "be writable",
                        tmp, strerror(errno));
        goto out;
    }
    made = true;
    if ((rc = r1_hfdir_write(m, tmp, &wo)))
        goto out;
    if (g) { /* the GGUF's tokenizer as tokenizer.json + tokenizer_config.json */
        struct r1_tokenizer *tok = NULL;
        if (r1_tokenizer_gguf_load(&tok, g) == 0) {
            rc = r1_tokenizer_json_save(tok, tmp);
            r1_tokenizer_free(tok);
            if (rc)
                goto out;
        } else {
            fprintf(stderr, "r1 convert: warning: no tokenizer files written: %s\n",
                    r1_err_last());
            r1_err_clear();
        }
    }
    if (chmod(tmp, 0755) != 0 || rename(tmp, out) != 0) {
        rc = r1_err_set(R1_EIO, "%s: cannot rename %s to it (%s)", out, tmp, strerror(errno));
        goto out;
    }
    made = false;
    printf("%s: %s model, %d layers, %lld parameters, %s weights\n", out,
           m->cfg.arch == R1_ARCH_QWEN2     ? "qwen2"
           : m->cfg.arch == R1_ARCH_MISTRAL ? "mistral"
                                            : "llama",
           m->cfg.n_layers, (long long)m->n_params, dtype);
out:
    if (made)
        r1_hfdir_remove(tmp);
    r1_gguf_close(g);
    r1_model_free(m);
    r1_backend_free(be);
    return rc ? cmd_fail("convert", rc) : 0;
}
