/* opt.h - declarative command-line options (git parse-options style).
 *
 * A command lists its options in an array ending with R1_OPT_END; r1_opt_parse
 * fills the variables, collects positional arguments, prints --help from the
 * same table, and reports a bad flag as one line on stderr.  Long options only
 * (`--name VALUE` or `--name=VALUE`), plus `-h` for help and the short aliases a
 * table gives explicitly (e.g. -n). */
#ifndef R1_CMD_OPT_H
#define R1_CMD_OPT_H

#include <stdint.h>

enum r1_opt_type { R1_OPT_END = 0, R1_OPT_FLAG, R1_OPT_INT, R1_OPT_U64, R1_OPT_FLOAT, R1_OPT_STRING };

struct r1_option {
    enum r1_opt_type type;
    const char *name;  /* long name without dashes */
    char short_name;   /* 0 for none */
    void *value;       /* bool *, int *, uint64_t *, float *, const char ** */
    const char *arg;   /* the value's name in help, e.g. "DIR" */
    const char *help;
};

#define R1_OPT_HELP 1   /* r1_opt_parse printed help: exit 0 */
#define R1_EXIT_USAGE 2

/* Parses argv[1..argc) (argv[0] is the command name).  Returns 0, R1_OPT_HELP, or
 * R1_EXIT_USAGE after printing "r1 CMD: ..." to stderr.  Positional arguments are
 * stored in pos (up to max_pos); *n_pos counts them (more than max_pos is an error). */
int r1_opt_parse(const char *cmd, const char *usage, const char *summary,
                 const struct r1_option *opts, int argc, char **argv, const char **pos,
                 int max_pos, int *n_pos);
void r1_opt_usage(const char *cmd, const char *usage, const char *summary,
                  const struct r1_option *opts);

#endif
