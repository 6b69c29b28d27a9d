/* logits-check.h - compares r1's forward with a tools/gguf-ref.py logits fixture
 * ({magic "r1-gguf-logits", version 1, sample_ids, prompts: [{ids, top10, samples}]}). */
#ifndef R1_TESTS_LOGITS_CHECK_H
#define R1_TESTS_LOGITS_CHECK_H

#include "core/model.h"

/* For every prompt: the logits of sample_ids at every position within tol of the
 * reference, and the last position's top 10 ids in the reference's order (cmocka
 * failure otherwise).  *max_diff gets the largest absolute difference seen. */
void check_logits(struct r1_model *m, const char *fx_path, double tol, double *max_diff);

#endif
