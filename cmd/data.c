/* data.c - `r1 data`: synthetic task datasets from the built-in generators.
 *
 *   r1 data gen SPEC [--n N] [--seed S] [--split train|eval] --out FILE
 *
 * writes examples 0..N-1 of (SPEC, seed, split) as JSONL; FILE is replaced atomically
 * (nothing is written on any error); "-" writes to stdout. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "core/file.h"
#include "stages/data/gen.h"

static void data_usage(FILE *f)
{
    fprintf(f,
            "usage: r1 data gen SPEC [--n N] [--seed S] [--split train|eval] --out FILE\n\n"
            "Writes synthetic reasoning tasks as JSONL (one object per line: \"prompt\",\n"
            "\"answer\", task fields; \"text\" with demo=1).  Example i depends only on\n"
            "(SPEC, seed, split, i); the train and eval splits never share a problem.\n"
            "'r1 data gen --help' lists the options.\n\n"
            "generators (SPEC is NAME or NAME:key=value,...):\n%s",
            r1_datagen_help());
}

static int data_gen(int argc, char **argv)
{
    const char *out = NULL, *split_s = "train";
    int n = 1000;
    uint64_t seed = 1;
    const struct r1_option opts[] = {
        {R1_OPT_INT, "n", 0, &n, "N", "examples to write (default 1000)"},
        {R1_OPT_U64, "seed", 0, &seed, "S", "generator seed (default 1)"},
        {R1_OPT_STRING, "split", 0, &split_s, "NAME", "train or eval (default train)"},
        {R1_OPT_STRING, "out", 0, &out, "FILE", "JSONL file to write (required; - for stdout)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    char summary[4096];
    snprintf(summary, sizeof(summary),
             "Writes examples 0..N-1 of generator SPEC, split and seed as JSONL.\n\n"
             "generators (SPEC is NAME or NAME:key=value,...):\n%s",
             r1_datagen_help());
    int rc = r1_opt_parse("data gen", "SPEC [--n N] [--seed S] [--split train|eval] --out FILE",
                          summary, opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (npos != 1) {
        fprintf(stderr, "r1 data gen: a generator SPEC is required (e.g. arith:digits=2; see "
                        "'r1 data gen --help')\n");
        return 2;
    }
    if (!out) {
        fprintf(stderr, "r1 data gen: --out FILE is required\n");
        return 2;
    }
    if (n < 1) {
        fprintf(stderr, "r1 data gen: --n %d must be at least 1\n", n);
        return 2;
    }
    enum r1_split split;
    if (strcmp(split_s, "train") == 0) {
        split = R1_SPLIT_TRAIN;
    } else if (strcmp(split_s, "eval") == 0) {
        split = R1_SPLIT_EVAL;
    } else {
        fprintf(stderr, "r1 data gen: --split '%s' is not train or eval\n", split_s);
        return 2;
    }
    struct r1_datagen *g = NULL;
    if ((rc = r1_datagen_parse(&g, pos[0])))
        return cmd_fail("data gen", rc);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) {
        r1_datagen_free(g);
        return cmd_fail("data gen", r1_err_set(R1_ENOMEM, "out of memory"));
    }
    rc = r1_datagen_write(g, seed, split, n, mem);
    if (fclose(mem) != 0 && !rc)
        rc = r1_err_set(R1_ENOMEM, "out of memory buffering the output");
    r1_datagen_free(g);
    if (!rc) {
        if (strcmp(out, "-") == 0) {
            if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0)
                rc = r1_err_set(R1_EIO, "cannot write to stdout");
        } else {
            rc = r1_file_write_atomic(out, buf, len);
        }
    }
    free(buf);
    if (rc)
        return cmd_fail("data gen", rc);
    if (strcmp(out, "-") != 0)
        printf("%s: %d examples of %s (%s split, seed %llu)\n", out, n, pos[0], split_s,
               (unsigned long long)seed);
    return 0;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2) {
        data_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        data_usage(stdout);
        return 0;
    }
    if (strcmp(sub, "gen") == 0)
        return data_gen(argc - 1, argv + 1);
    if (sub[0] == '-')
        fprintf(stderr, "r1 data: unknown option '%s' (see 'r1 data --help')\n", sub);
    else
        fprintf(stderr,
                "r1 data: unknown subcommand '%s'; subcommands: gen (see 'r1 data "
                "--help')\n",
                sub);
    return 2;
}
