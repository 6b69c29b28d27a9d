/* init.c - `r1 init`: a freshly initialised model directory from a preset shape. */
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/backend.h"
#include "core/err.h"
#include "core/hfdir.h"
#include "core/model.h"

int cmd_init(int argc, char **argv)
{
    const char *preset = "tiny", *out = NULL, *dtype = "f32";
    uint64_t seed = 1234;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "preset", 0, &preset, "NAME",
         "model shape: " R1_MODEL_PRESETS " (default tiny)"},
        {R1_OPT_STRING, "out", 0, &out, "DIR", "directory to write (required; must not exist)"},
        {R1_OPT_U64, "seed", 0, &seed, "N", "initialisation seed (default 1234)"},
        {R1_OPT_STRING, "dtype", 0, &dtype, "T", "weight dtype on disk: f32 or bf16 (default f32)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("init", "--out DIR [--preset NAME] [--seed N] [--dtype T]",
                          "Creates a Hugging Face model directory (config.json, model.safetensors)\n"
                          "with freshly initialised weights.",
                          opts, argc, argv, pos, 0, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (!out) {
        fprintf(stderr, "r1 init: --out DIR is required\n");
        return 2;
    }
    enum r1_dtype dt;
    if (strcmp(dtype, "f32") == 0)
        dt = R1_F32;
    else if (strcmp(dtype, "bf16") == 0)
        dt = R1_BF16;
    else {
        fprintf(stderr, "r1 init: --dtype '%s' is not f32 or bf16\n", dtype);
        return 2;
    }
    FILE *probe = fopen(out, "r");
    if (probe) {
        fclose(probe);
        fprintf(stderr, "r1 init: %s already exists; choose a new directory\n", out);
        return 2;
    }
    struct r1_model_config cfg;
    if ((rc = r1_model_config_preset(&cfg, preset)))
        return cmd_fail("init", rc);
    /* written into a temporary sibling and renamed: no half-written directory on failure */
    char tmp[4096], file[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", out, (long)getpid());
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    if ((rc = r1_backend_create(&be, R1_BACKEND_CPU, 0)) || (rc = r1_model_create(&m, &cfg, be)) ||
        (rc = r1_model_init_weights(m, seed)) || (rc = r1_hfdir_save(m, tmp, dt)) ||
        (rename(tmp, out) != 0 &&
         (rc = r1_err_set(R1_EIO, "%s: cannot rename into place (%s)", out, strerror(errno))))) {
        const char *files[] = {"config.json", "model.safetensors"};
        for (int i = 0; i < 2; i++) {
            snprintf(file, sizeof(file), "%s/%s", tmp, files[i]);
            unlink(file);
        }
        rmdir(tmp);
        r1_model_free(m);
        r1_backend_free(be);
        return cmd_fail("init", rc);
    }
    printf("%s: %s model, %lld parameters, seed %llu\n", out, preset, (long long)m->n_params,
           (unsigned long long)seed);
    r1_model_free(m);
    r1_backend_free(be);
    return 0;
}
