/* mix.c - the rows mixed into a rejection-sampling dataset (see mix.h). */
#include "stages/data/mix.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/sha256.h"

void r1_mix_free(struct r1_mix_set *m)
{
    if (!m)
        return;
    for (int64_t i = 0; i < m->n; i++) {
        free(m->rows[i].prompt);
        free(m->rows[i].response);
    }
    free(m->rows);
    free(m);
}

/* Appends one row of the strings of o; 1 when a field is missing or not a string. */
static int add_row(struct r1_mix_set *m, int64_t *cap, json_t *o, const char *pf, const char *rf)
{
    json_t *pr = json_object_get(o, pf), *re = json_object_get(o, rf);
    if (!json_is_string(pr) || !json_is_string(re))
        return 1;
    if (m->n == *cap) {
        int64_t nc = *cap ? 2 * *cap : 64;
        struct r1_mix_row *nr = realloc(m->rows, (size_t)nc * sizeof(*nr));
        if (!nr)
            return -1;
        m->rows = nr;
        *cap = nc;
    }
    struct r1_mix_row *r = &m->rows[m->n];
    r->prompt = strdup(json_string_value(pr));
    r->response = strdup(json_string_value(re));
    m->n++;
    return r->prompt && r->response ? 0 : -1;
}

int r1_mix_load(struct r1_mix_set **out, const char *path, const char *prompt_field,
                const char *response_field)
{
    *out = NULL;
    struct r1_mix_set *m = calloc(1, sizeof(*m));
    char *data = NULL;
    size_t len = 0;
    if (!m)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", path);
    int rc = r1_file_read(path, &data, &len);
    if (rc)
        rc = r1_err_wrap(R1_EINVAL, "rejection.mix_path");
    else
        rc = r1_sha256_bytes(m->sha256, data, len);
    if (rc) {
        free(data);
        r1_mix_free(m);
        return rc;
    }
    int64_t cap = 0, lineno = 0;
    for (char *p = data, *end = data + len; p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p), k = 0;
        lineno++;
        while (k < ll && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k < ll) {
            json_error_t e;
            json_t *o = json_loadb(p, ll, 0, &e);
            int bad = o ? add_row(m, &cap, o, prompt_field, response_field) : 1;
            if (bad > 0)
                rc = r1_err_set(R1_EINVAL, "%s:%lld: %s; each line of rejection.mix_path must "
                                "be a JSON object with string fields \"%s\" and \"%s\"", path,
                                (long long)lineno,
                                !o ? e.text : "a field is missing or not a string", prompt_field,
                                response_field);
            else if (bad < 0)
                rc = r1_err_set(R1_ENOMEM, "%s: out of memory", path);
            json_decref(o);
        }
        p = le + 1;
    }
    free(data);
    if (!rc && m->n == 0)
        rc = r1_err_set(R1_EINVAL, "%s: rejection.mix_path holds no rows", path);
    if (rc) {
        r1_mix_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int64_t r1_mix_wanted(double ratio, int64_t gen_rows)
{
    if (ratio <= 0 || ratio >= 1)
        return 0;
    return llround(ratio * (double)gen_rows / (1.0 - ratio));
}

int r1_mix_choose(const struct r1_mix_set *m, int64_t k, uint64_t seed, uint64_t stream,
                  char *take)
{
    int64_t *order = malloc((size_t)(m->n > 0 ? m->n : 1) * sizeof(int64_t));
    if (!order)
        return r1_err_set(R1_ENOMEM, "out of memory choosing %lld mix rows", (long long)k);
    for (int64_t i = 0; i < m->n; i++) {
        order[i] = i;
        take[i] = 0;
    }
    struct r1_rng r = r1_rng_make(seed, stream);
    r1_rng_shuffle(&r, order, m->n);
    for (int64_t i = 0; i < k && i < m->n; i++)
        take[order[i]] = 1;
    free(order);
    return 0;
}
