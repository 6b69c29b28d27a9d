/* bench-tokenize.c - BPE encode throughput on one thread.
 * usage: r1-bench-tokenize TOKENIZER_DIR CORPUS [REPEATS] [SAVE_DIR]
 * Loads TOKENIZER_DIR/tokenizer.json (+ tokenizer_config.json), encodes the whole CORPUS file
 * in one call REPEATS times (default 5) and prints one line: tokens, MB/s, tokens/s (best
 * run).  With SAVE_DIR it also writes the tokenizer there (r1_tokenizer_json_save), so
 * bench/tokenize-cpu can check that Hugging Face tokenizers reads what r1 writes. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/err.h"
#include "core/file.h"
#include "core/tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR CORPUS [REPEATS] [SAVE_DIR]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    char tj[4096], tc[4096];
    snprintf(tj, sizeof(tj), "%s/tokenizer.json", argv[1]);
    snprintf(tc, sizeof(tc), "%s/tokenizer_config.json", argv[1]);
    struct r1_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    double t0 = now();
    int rc = r1_tokenizer_json_load(&tok, tj, tc);
    double t_load = now() - t0;
    if (!rc)
        rc = r1_file_read(argv[2], &text, &len);
    if (!rc && argc > 4)
        rc = r1_tokenizer_json_save(tok, argv[4]);
    double best = 1e30;
    int n = 0;
    for (int r = 0; r < repeats && !rc; r++) {
        int32_t *ids;
        double t = now();
        rc = r1_tokenizer_encode(tok, text, len, &ids, &n);
        t = now() - t;
        best = t < best ? t : best;
        if (!rc)
            free(ids);
    }
    if (!rc)
        printf("r1 encode: bytes=%zu tokens=%d load s=%.3f MB/s=%.2f tok/s=%.0f\n", len, n, t_load,
               len / best / 1e6, n / best);
    else
        fprintf(stderr, "r1-bench-tokenize: %s\n", r1_err_last());
    free(text);
    r1_tokenizer_free(tok);
    return rc ? 1 : 0;
}
