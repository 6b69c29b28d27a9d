/* logits-check.c - r1's forward against a logits fixture of tools/gguf-ref.py (see
 * logits-check.h); shared by test-gguf and test-gguf-smollm2. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <jansson.h>

#include "tests/logits-check.h"

/* Logits of every prompt of the fixture against r1's forward: all V logits of every
 * position within tol, and the last position's top 10 ids in order.  *max_diff gets the
 * largest absolute difference. */
void check_logits(struct r1_model *m, const char *fx_path, double tol, double *max_diff)
{
    json_error_t jerr;
    json_t *fx = json_load_file(fx_path, 0, &jerr);
    assert_non_null(fx);
    assert_string_equal(json_string_value(json_object_get(fx, "magic")), "r1-gguf-logits");
    assert_int_equal(json_integer_value(json_object_get(fx, "version")), 1);
    json_t *sample_ids = json_object_get(fx, "sample_ids"), *prompts;
    prompts = json_object_get(fx, "prompts");
    int V = m->cfg.vocab_size;
    *max_diff = 0;
    size_t pi;
    json_t *p;
    json_array_foreach (prompts, pi, p) {
        json_t *ids = json_object_get(p, "ids");
        int T = (int)json_array_size(ids);
        int32_t *tok = calloc((size_t)T, 4), *pos = calloc((size_t)T, 4);
        int32_t *seg = calloc((size_t)T, 4), *tg = calloc((size_t)T, 4),
                *rows = calloc((size_t)T, 4);
        for (int t = 0; t < T; t++) {
            tok[t] = (int32_t)json_integer_value(json_array_get(ids, (size_t)t));
            pos[t] = rows[t] = t;
            tg[t] = -1;
        }
        float *lg = malloc(sizeof(float) * (size_t)T * (size_t)V);
        struct r1_batch b = {1, T, tok, pos, seg, tg};
        assert_int_equal(r1_model_reserve(m, 1, T), 0);
        assert_int_equal(r1_model_logits(m, &b, rows, T, lg), 0);
        json_t *samples = json_object_get(p, "samples");
        for (int t = 0; t < T; t++) {
            json_t *row = json_array_get(samples, (size_t)t);
            for (size_t k = 0; k < json_array_size(sample_ids); k++) {
                int id = (int)json_integer_value(json_array_get(sample_ids, k));
                double want = json_real_value(json_array_get(row, k));
                double d = fabs(lg[(size_t)t * V + id] - want);
                if (d > *max_diff)
                    *max_diff = d;
            }
        }
        /* top 10 of the last position, in order */
        const float *last = lg + (size_t)(T - 1) * V;
        json_t *top = json_object_get(p, "top10");
        bool *used = calloc((size_t)V, 1);
        for (size_t k = 0; k < json_array_size(top); k++) {
            int best = -1;
            for (int v = 0; v < V; v++)
                if (!used[v] && (best < 0 || last[v] > last[best]))
                    best = v;
            used[best] = true;
            int want = (int)json_integer_value(json_array_get(json_array_get(top, k), 0));
            double wl = json_real_value(json_array_get(json_array_get(top, k), 1));
            if (best != want)
                fail_msg("%s prompt %zu: top-%zu id %d (logit %g), reference %d (logit %g)",
                         fx_path, pi, k + 1, best, last[best], want, wl);
            if (fabs(last[best] - wl) > *max_diff)
                *max_diff = fabs(last[best] - wl);
        }
        free(used);
        free(lg);
        free(tok);
        free(pos);
        free(seg);
        free(tg);
        free(rows);
    }
    json_decref(fx);
    printf("%s: max |logit - reference| = %.3g (tolerance %g)\n", fx_path, *max_diff, tol);
    assert_true(*max_diff <= tol);
}
