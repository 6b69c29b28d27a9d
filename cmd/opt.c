/* opt.c - declarative option parsing and help (see opt.h). */
#include "cmd/opt.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void r1_opt_usage(const char *cmd, const char *usage, const char *summary,
                  const struct r1_option *opts)
{
    printf("usage: r1 %s %s\n\n%s\n", cmd, usage, summary);
    printf("\noptions:\n");
    for (const struct r1_option *o = opts; o && o->type != R1_OPT_END; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        printf("  %-28s %s\n", left, o->help);
    }
    printf("  %-28s %s\n", "-h, --help", "show this help and exit");
}

static int set_value(const char *cmd, const struct r1_option *o, const char *val)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case R1_OPT_INT: {
        long v = strtol(val, &end, 10);
        if (*val == '\0' || *end || errno || v < -2147483647L || v > 2147483647L) {
            fprintf(stderr, "r1 %s: --%s expects an integer, got '%s'\n", cmd, o->name, val);
            return R1_EXIT_USAGE;
        }
        *(int *)o->value = (int)v;
        return 0;
    }
    case R1_OPT_U64: {
        unsigned long long v = strtoull(val, &end, 10);
        if (*val == '\0' || *val == '-' || *end || errno) {
            fprintf(stderr, "r1 %s: --%s expects a non-negative integer, got '%s'\n", cmd,
                    o->name, val);
            return R1_EXIT_USAGE;
        }
        *(uint64_t *)o->value = (uint64_t)v;
        return 0;
    }
    case R1_OPT_FLOAT: {
        double v = strtod(val, &end);
        if (*val == '\0' || *end || errno || !isfinite(v)) {
            fprintf(stderr, "r1 %s: --%s expects a number, got '%s'\n", cmd, o->name, val);
            return R1_EXIT_USAGE;
        }
        *(float *)o->value = (float)v;
        return 0;
    }
    case R1_OPT_STRING:
        *(const char **)o->value = val;
        return 0;
    default:
        return 0;
    }
}

int r1_opt_parse(const char *cmd, const char *usage, const char *summary,
                 const struct r1_option *opts, int argc, char **argv, const char **pos,
                 int max_pos, int *n_pos)
{
    int np = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np >= max_pos) {
                fprintf(stderr, "r1 %s: unexpected argument '%s' (see 'r1 %s --help')\n", cmd, a,
                        cmd);
                return R1_EXIT_USAGE;
            }
            pos[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            r1_opt_usage(cmd, usage, summary, opts);
            return R1_OPT_HELP;
        }
        const struct r1_option *o = NULL;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (const struct r1_option *p = opts; p && p->type != R1_OPT_END; p++)
                if (strlen(p->name) == len && strncmp(p->name, name, len) == 0)
                    o = p;
            if (eq)
                inline_val = eq + 1;
        } else if (a[2] == '\0') {
            for (const struct r1_option *p = opts; p && p->type != R1_OPT_END; p++)
                if (p->short_name == a[1])
                    o = p;
        }
        if (!o) {
            fprintf(stderr, "r1 %s: unknown option '%s' (see 'r1 %s --help')\n", cmd, a, cmd);
            return R1_EXIT_USAGE;
        }
        if (o->type == R1_OPT_FLAG) {
            if (inline_val) {
                fprintf(stderr, "r1 %s: --%s takes no value\n", cmd, o->name);
                return R1_EXIT_USAGE;
            }
            *(bool *)o->value = true;
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "r1 %s: option '%s' needs a value (%s)\n", cmd, a,
                        o->arg ? o->arg : "VALUE");
                return R1_EXIT_USAGE;
            }
            val = argv[++i];
        }
        int rc = set_value(cmd, o, val);
        if (rc)
            return rc;
    }
    *n_pos = np;
    return 0;
}
