/* mix.h - the non-reasoning rows a rejection_sft stage mixes into its dataset
 * (rejection.mix_path: JSONL with a prompt and a response field, with or without a chain
 * of thought in the response). */
#ifndef R1_STAGES_MIX_H
#define R1_STAGES_MIX_H

#include <stdint.h>

struct r1_mix_row {
    char *prompt, *response;
};

struct r1_mix_set {
    struct r1_mix_row *rows;
    int64_t n;
    char sha256[65]; /* of the file's bytes */
};

/* Reads every row of path (both fields strings); errors name the file and line, an
 * empty file is an error (R1_EINVAL). */
int r1_mix_load(struct r1_mix_set **out, const char *path, const char *prompt_field,
                const char *response_field);
void r1_mix_free(struct r1_mix_set *m);

/* Rows that make ratio (0 <= ratio < 1) of a dataset that has gen_rows other rows. */
int64_t r1_mix_wanted(double ratio, int64_t gen_rows);

/* take (m->n) gets 1 for k rows (k <= m->n) chosen by a shuffle of Philox stream
 * (seed, stream), 0 for the others.  R1_ENOMEM. */
int r1_mix_choose(const struct r1_mix_set *m, int64_t k, uint64_t seed, uint64_t stream,
                  char *take);

#endif
