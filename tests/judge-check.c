/* judge-check.c - tests/judge.sh's reader: loads a judge model (a checkpoint or HF dir),
 * scores examples of the judge generator's held-out split with stages/judge.h and prints
 *   accuracy A auc U n N repeat_hits H repeat_misses M
 * where accuracy counts P(yes) > 0.5 exactly when the prediction is right.  The examples
 * are scored twice: repeat_hits and repeat_misses count the second pass, which must come
 * from the cache.
 * usage: judge-check MODEL_DIR SPEC N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/modelfile.h"
#include "stages/data/gen.h"
#include "stages/judge.h"
#include "stages/reward_model.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR SPEC N\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]);
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    struct r1_datagen *g = NULL;
    struct r1_judge *j = NULL;
    const char **q = calloc((size_t)n, sizeof(*q)), **ref = calloc((size_t)n, sizeof(*ref));
    const char **pred = calloc((size_t)n, sizeof(*pred));
    json_t **ex = calloc((size_t)n, sizeof(*ex));
    float *p = calloc((size_t)n, sizeof(*p)), *p2 = calloc((size_t)n, sizeof(*p2));
    int8_t *right = calloc((size_t)n, 1);
    int rc = !q || !ref || !pred || !ex || !p || !p2 || !right
                 ? r1_err_set(R1_ENOMEM, "out of memory")
                 : 0;
    if (!rc)
        rc = r1_backend_create(&be, R1_BACKEND_CPU, 0);
    if (!rc)
        rc = r1_model_open(&m, &tok, be, argv[1]);
    if (!rc)
        rc = r1_datagen_parse(&g, argv[2]);
    for (int i = 0; i < n && !rc; i++) {
        if ((rc = r1_datagen_example(g, 7, R1_SPLIT_EVAL, i, &ex[i])))
            break;
        q[i] = json_string_value(json_object_get(ex[i], "question"));
        ref[i] = json_string_value(json_object_get(ex[i], "reference"));
        pred[i] = json_string_value(json_object_get(ex[i], "prediction"));
        right[i] = strcmp(json_string_value(json_object_get(ex[i], "verdict")), "yes") == 0;
    }
    if (!rc)
        rc = r1_judge_create(&j, m, tok, NULL, NULL, NULL, 0);
    int64_t hits1 = 0, misses1 = 0;
    if (!rc)
        rc = r1_judge_score(j, n, q, ref, pred, p);
    if (!rc) {
        r1_judge_stats(j, &hits1, &misses1);
        rc = r1_judge_score(j, n, q, ref, pred, p2);
    }
    if (rc) {
        fprintf(stderr, "judge-check: %s\n", r1_err_last());
        return 1;
    }
    int correct = 0;
    for (int i = 0; i < n; i++) {
        correct += (p[i] > 0.5f) == (right[i] != 0);
        if (p[i] != p2[i]) {
            fprintf(stderr, "judge-check: item %d scored %g then %g\n", i, p[i], p2[i]);
            return 1;
        }
    }
    int64_t hits, misses;
    r1_judge_stats(j, &hits, &misses);
    /* the second pass: every verdict from the cache, none computed */
    printf("accuracy %.4f auc %.4f n %d repeat_hits %lld repeat_misses %lld\n",
           (double)correct / n, r1_rm_auc(n, p, right), n, (long long)(hits - hits1),
           (long long)(misses - misses1));
    for (int i = 0; i < n; i++)
        json_decref(ex[i]);
    r1_judge_free(j);
    r1_datagen_free(g);
    r1_model_free(m);
    r1_tokenizer_free(tok);
    r1_backend_free(be);
    free(q), free(ref), free(pred), free(ex), free(p), free(p2), free(right);
    return 0;
}
