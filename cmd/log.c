/* log.c - `r1 log [DIR]`: the run's ledger history for people, newest first.
 *
 * One line per checkpoint commit: short commit id, committer date (UTC), stage,
 * step, the checkpoint it started from (short manifest sha256, or "none"), the
 * commit's summary line, and "(forced)" when a resume was forced past a changed
 * recipe.  The root commit (the empty run directory) is left out. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "core/ledger.h"

static int print_commit(const struct r1_ledger_commit *c, void *ud)
{
    int *n = ud;
    if (!c->stage)
        return 0;
    char date[32];
    time_t t = (time_t)c->time;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    else
        snprintf(date, sizeof(date), "%" PRId64, c->time);
    const char *forced = r1_ledger_trailer(c, "R1-Forced");
    char step[32];
    snprintf(step, sizeof(step), "step %" PRId64, c->step);
    printf("%.12s  %s  %-12s  %-10s  parent %-12.12s  %s%s\n", c->id, date, c->stage, step,
           c->parent ? c->parent : "none", c->summary ? c->summary : "",
           forced ? "  (forced)" : "");
    (*n)++;
    return 0;
}

int cmd_log(int argc, char **argv)
{
    const struct r1_option opts[] = {
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("log", "[DIR]",
                          "Lists the checkpoints in the ledger of the run in DIR (default: the\n"
                          "current directory), newest first: commit, date (UTC), stage, step, the\n"
                          "checkpoint it started from, the summary, and (forced) for a forced\n"
                          "resume.  `git -C DIR log` shows the same commits in full.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    const char *dir = npos ? pos[0] : ".";
    struct r1_ledger *lg = NULL;
    int n = 0;
    if (!(rc = r1_ledger_open(&lg, dir)))
        rc = r1_ledger_walk(lg, 0, print_commit, &n);
    r1_ledger_free(lg);
    if (rc)
        return cmd_fail("log", rc);
    if (n == 0)
        printf("%s: no checkpoints yet\n", dir);
    return 0;
}
