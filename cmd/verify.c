/* verify.c - `r1 verify DIR`: re-hash a run's checkpoints against its ledger. */
#include <stdio.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/checkpoint.h"
#include "core/err.h"

int cmd_verify(int argc, char **argv)
{
    const struct r1_option opts[] = {
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("verify", "DIR",
                          "Re-hashes every object that a checkpoint manifest in DIR's ledger lists,\n"
                          "checks each checkpoint's manifest.json against the ledger commit that\n"
                          "recorded it, and each R1-Parent against the checkpoints before it.\n"
                          "Exit 0 when intact, 1 naming the first file that differs, 2 when DIR\n"
                          "is not a run directory.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (npos != 1) {
        fprintf(stderr, "r1 verify: give the run directory (r1 verify DIR)\n");
        return 2;
    }
    struct r1_verify_report rep;
    if ((rc = r1_checkpoint_verify(pos[0], &rep))) {
        fprintf(stderr, "r1 verify: %s\n", r1_err_last());
        return rc == R1_EINVAL ? 2 : 1;
    }
    printf("%s: %d checkpoint%s, %d object%s verified\n", pos[0], rep.n_checkpoints,
           rep.n_checkpoints == 1 ? "" : "s", rep.n_objects, rep.n_objects == 1 ? "" : "s");
    return 0;
}
