/* make-run.c - test helper: `make-run DIR` writes a run directory with two sft
 * checkpoints (steps 1 and 2; config.json shared, weights differ) through the
 * checkpoint API, for tests/verify-cli.sh.  Prints nothing on success. */
#include <stdio.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/err.h"

static int write_step(const char *dir, int64_t step, const char *parent, char manifest[65])
{
    static const char config[] = "{\"model_type\": \"llama\", \"hidden_size\": 8}\n";
    unsigned char weights[4096];
    for (size_t i = 0; i < sizeof(weights); i++)
        weights[i] = (unsigned char)(i * 31 + (size_t)step * 7);
    char state[64];
    snprintf(state, sizeof(state), "{\"step\": %lld}\n", (long long)step);
    const struct r1_data_hash data[1] = {
        {"train.jsonl", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}};
    struct r1_checkpoint_desc d = {.stage = "sft", .kind = "sft", .step = step, .parent = parent,
                                   .recipe_hash = "r1-test", .seed = 7, .data = data, .n_data = 1};
    struct r1_checkpoint_commit_info info = {.summary = "sft: test checkpoint",
                                             .metrics = "{\"stage\":\"sft\",\"step\":1}\n",
                                             .metrics_len = 26};
    struct r1_checkpoint *ck = NULL;
    int rc;
    if ((rc = r1_checkpoint_begin(&ck, dir, &d)) ||
        (rc = r1_checkpoint_add_bytes(ck, "config.json", config, sizeof(config) - 1)) ||
        (rc = r1_checkpoint_add_bytes(ck, "model.safetensors", weights, sizeof(weights))) ||
        (rc = r1_checkpoint_add_bytes(ck, "trainer_state.json", state, strlen(state))) ||
        (rc = r1_checkpoint_commit(ck, &info))) {
        r1_checkpoint_free(ck);
        return rc;
    }
    memcpy(manifest, ck->manifest_sha256, 65);
    r1_checkpoint_free(ck);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make-run DIR\n");
        return 2;
    }
    char m1[65], m2[65];
    int rc;
    if ((rc = write_step(argv[1], 1, NULL, m1)) || (rc = write_step(argv[1], 2, m1, m2))) {
        fprintf(stderr, "make-run: %s\n", r1_err_last());
        return 1;
    }
    return 0;
}
