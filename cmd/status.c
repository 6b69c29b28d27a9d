/* status.c - `r1 status [DIR] [--json]`: where each stage of a run stands.
 *
 * Everything is read, nothing written: the recipe from DIR/recipe.lock.yaml, the
 * checkpoints and stage tags from the ledger (the truth), the last metrics line of
 * each stage from DIR/metrics.jsonl and how the last r1 run/resume ended from
 * DIR/status.json.  A stage is
 *   done         the ledger has the tag stage/<name>
 *   running      status.json says "running", its pid is alive, and this is the
 *                first stage not done
 *   failed       status.json says the last process failed in this stage
 *   interrupted  status.json says so, or the stage was started (it has checkpoints
 *                or metrics lines) but is not done and nothing is running
 *   pending      not started.
 * Also holds the helpers status, export and report share (declared in cmd/cmds.h). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/checkpoint.h"
#include "core/err.h"
#include "core/ledger.h"
#include "core/recipe.h"

int cmd_run_dir_load(struct r1_recipe **out, const char *dir)
{
    struct r1_ledger *lg = NULL;
    int rc = r1_ledger_open(&lg, dir);
    r1_ledger_free(lg);
    if (rc)
        return rc;
    char path[4200];
    snprintf(path, sizeof(path), "%s/recipe.lock.yaml", dir);
    struct r1_recipe_diag diag = {0};
    rc = r1_recipe_load(out, path, NULL, 0, &diag);
    if (rc && diag.n > 0)
        rc = r1_err_set(rc, "%s: the run's resolved recipe no longer loads: %s%s", path,
                        diag.msgs[0], diag.n > 1 ? " (and more; see r1 recipe check)" : "");
    else if (rc)
        rc = r1_err_wrap(rc, "%s", path);
    r1_recipe_diag_release(&diag);
    return rc;
}

/* 1 when the stage finished (its stage/<name> tag exists), 0 when not, or < 0. */
int cmd_stage_finished(const char *dir, const char *stage)
{
    struct r1_ledger *lg = NULL;
    int rc = r1_ledger_open(&lg, dir);
    if (!rc)
        rc = r1_ledger_has_stage_tag(lg, stage);
    r1_ledger_free(lg);
    return rc;
}

/* One stage as the table shows it. */
struct stage_row {
    const struct r1_stage_cfg *cfg;
    int64_t step;      /* newest checkpoint's step; 0 without one */
    int64_t steps;     /* the stage's length; -1 when not known yet (epochs, no checkpoint) */
    char manifest[65]; /* newest checkpoint's manifest sha256; "" without one */
    int64_t t_start;   /* committer time of the commit before the first checkpoint; -1 */
    int64_t t_end;     /* committer time of the newest checkpoint */
    json_t *metrics;   /* the stage's last metrics line (owned), or NULL */
    int done;
    const char *state;
};

struct ledger_scan {
    struct stage_row *rows;
    int n;
    int64_t prev_time;
};

static struct stage_row *find_row(struct stage_row *rows, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(rows[i].cfg->name, name) == 0)
            return &rows[i];
    return NULL;
}

/* Oldest first: the last commit seen for a stage is its newest checkpoint. */
static int scan_commit(const struct r1_ledger_commit *c, void *ud)
{
    struct ledger_scan *s = ud;
    struct stage_row *row = find_row(s->rows, s->n, c->stage);
    if (row) {
        if (row->t_start < 0)
            row->t_start = s->prev_time;
        row->t_end = c->time;
        row->step = c->step;
        snprintf(row->manifest, sizeof(row->manifest), "%s",
                 c->manifest_sha256 ? c->manifest_sha256 : "");
    }
    s->prev_time = c->time;
    return 0;
}

static bool is_eval_line(json_t *o)
{
    const char *key;
    json_t *v;
    bool eval = false;
    json_object_foreach (o, key, v) {
        if (strcmp(key, "stage") == 0 || strcmp(key, "step") == 0)
            continue;
        if (strncmp(key, "eval/", 5) != 0)
            return false;
        eval = true;
    }
    return eval;
}

/* The last step metrics line of each stage (evaluation lines, which hold only "eval/..."
 * keys, do not count); lines that do not parse (the tail of a killed process) are
 * skipped, and a missing file means no metrics yet. */
static void read_metrics(struct stage_row *rows, int n, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, JSON_DECODE_ANY, NULL);
        struct stage_row *row =
            json_is_object(o) && !is_eval_line(o)
                ? find_row(rows, n, json_string_value(json_object_get(o, "stage")))
                : NULL;
        if (row) {
            json_decref(row->metrics);
            row->metrics = o;
        } else {
            json_decref(o);
        }
    }
    free(line);
    fclose(f);
}

/* How the last r1 run/resume in dir ended (status.json); all empty when unknown. */
struct run_status {
    char state[32];
    char stage[80];
    char message[512];
    long long pid;
};

static void read_status(struct run_status *st, const char *dir)
{
    char path[4200];
    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/status.json", dir);
    json_t *o = json_load_file(path, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    const char *s;
    if ((s = json_string_value(json_object_get(o, "state"))))
        snprintf(st->state, sizeof(st->state), "%s", s);
    if ((s = json_string_value(json_object_get(o, "stage"))))
        snprintf(st->stage, sizeof(st->stage), "%s", s);
    if ((s = json_string_value(json_object_get(o, "message"))))
        snprintf(st->message, sizeof(st->message), "%s", s);
    st->pid = json_integer_value(json_object_get(o, "pid"));
    json_decref(o);
}

static bool pid_alive(long long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* steps_total of the stage's newest checkpoint (stages that run for epochs). */
static int64_t steps_from_checkpoint(const char *dir, const char *stage)
{
    struct r1_checkpoint *ck = NULL;
    int64_t steps = -1;
    if (r1_checkpoint_latest(&ck, dir, stage) == 0 && ck) {
        const char *p = r1_checkpoint_file_path(ck, "trainer_state.json");
        json_t *o = p ? json_load_file(p, 0, NULL) : NULL;
        json_t *v = json_object_get(o, "steps_total");
        if (json_is_integer(v))
            steps = json_integer_value(v);
        json_decref(o);
    }
    r1_checkpoint_free(ck);
    r1_err_clear();
    return steps;
}

static void set_states(struct stage_row *rows, int n, const struct run_status *st)
{
    bool running = strcmp(st->state, "running") == 0 && pid_alive(st->pid);
    int first_open = -1;
    for (int i = 0; i < n && first_open < 0; i++)
        if (!rows[i].done)
            first_open = i;
    for (int i = 0; i < n; i++) {
        struct stage_row *r = &rows[i];
        bool started = r->manifest[0] || r->metrics;
        if (r->done)
            r->state = "done";
        else if (running && i == first_open)
            r->state = "running";
        else if (!running && strcmp(st->stage, r->cfg->name) == 0 &&
                 (strcmp(st->state, "failed") == 0 || strcmp(st->state, "interrupted") == 0))
            r->state = strcmp(st->state, "failed") == 0 ? "failed" : "interrupted";
        else if (started && !running)
            r->state = "interrupted";
        else
            r->state = "pending";
        /* a running stage shows its live step, which runs ahead of its checkpoints */
        if (strcmp(r->state, "running") == 0 && r->metrics) {
            json_t *v = json_object_get(r->metrics, "step");
            if (json_is_integer(v) && json_integer_value(v) > r->step)
                r->step = json_integer_value(v);
        }
    }
}

static void rows_free(struct stage_row *rows, int n)
{
    for (int i = 0; rows && i < n; i++)
        json_decref(rows[i].metrics);
    free(rows);
}

/* Every stage of r as the table shows it (*out: r->n_stages rows, free with rows_free)
 * and how the last run ended. */
static int rows_load(struct stage_row **out, const struct r1_recipe *r, const char *dir,
                     struct run_status *st)
{
    struct r1_ledger *lg = NULL;
    struct stage_row *rows = calloc((size_t)r->n_stages + 1, sizeof(*rows));
    int rc = 0;
    if (!rows) {
        rc = r1_err_set(R1_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < r->n_stages; i++) {
        rows[i].cfg = &r->stages[i];
        rows[i].t_start = -1;
    }
    struct ledger_scan scan = {rows, r->n_stages, 0};
    if ((rc = r1_ledger_open(&lg, dir)) || (rc = r1_ledger_walk(lg, 1, scan_commit, &scan)))
        goto out;
    for (int i = 0; i < r->n_stages; i++) {
        struct stage_row *row = &rows[i];
        if ((rc = cmd_stage_finished(dir, row->cfg->name)) < 0)
            goto out;
        row->done = rc;
        rc = 0;
        /* a checkpoint knows the stage's length best (epochs; rejection_sft counts its
         * generation steps too); before one, steps from the recipe where they are the
         * whole length */
        row->steps = row->manifest[0] ? steps_from_checkpoint(dir, row->cfg->name) : -1;
        if (row->steps < 0 && row->cfg->steps > 0 && row->cfg->kind != R1_STAGE_REJECTION_SFT)
            row->steps = row->cfg->steps;
    }
    read_metrics(rows, r->n_stages, dir);
    read_status(st, dir);
    set_states(rows, r->n_stages, st);
out:
    r1_ledger_free(lg);
    if (rc) {
        rows_free(rows, r->n_stages);
        rows = NULL;
    }
    *out = rows;
    return rc;
}

int cmd_stage_states(struct cmd_stage_state *out, const struct r1_recipe *r, const char *dir)
{
    struct stage_row *rows = NULL;
    struct run_status st;
    int rc = rows_load(&rows, r, dir, &st);
    for (int i = 0; !rc && i < r->n_stages; i++) {
        out[i].step = rows[i].step;
        out[i].steps = rows[i].steps;
        out[i].state = rows[i].state; /* string literals */
    }
    rows_free(rows, r->n_stages);
    return rc;
}

static void format_elapsed(char *buf, size_t cap, const struct stage_row *r)
{
    if (r->t_start < 0) {
        snprintf(buf, cap, "-");
        return;
    }
    int64_t s = r->t_end - r->t_start;
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, cap, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, cap, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
}

static void print_table(const struct r1_recipe *r, const struct stage_row *rows, int n,
                        const char *dir, const struct run_status *st)
{
    int w = 5, wk = 4;
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(rows[i].cfg->name);
        int lk = (int)strlen(r1_stage_kind_name(rows[i].cfg->kind));
        w = len > w ? len : w;
        wk = lk > wk ? lk : wk;
    }
    printf("run %s (%s)\n", r->name, dir);
    printf("%-*s  %-*s  %-11s  %-11s  %-12s  %-9s  %s\n", w, "STAGE", wk, "KIND", "STATE", "STEP",
           "CHECKPOINT", "LOSS", "ELAPSED");
    for (int i = 0; i < n; i++) {
        const struct stage_row *row = &rows[i];
        char step[48], loss[32], elapsed[32];
        if (row->steps >= 0)
            snprintf(step, sizeof(step), "%" PRId64 "/%" PRId64, row->step, row->steps);
        else
            snprintf(step, sizeof(step), "%" PRId64 "/?", row->step);
        json_t *v = row->metrics ? json_object_get(row->metrics, "loss") : NULL;
        if (json_is_number(v))
            snprintf(loss, sizeof(loss), "%.4f", json_number_value(v));
        else
            snprintf(loss, sizeof(loss), "-");
        /* wall time between the ledger commits around the stage's checkpoints (from the
         * commit before its first checkpoint to its newest one), not exact training time:
         * it includes any pause before a resume and leaves out work after the last save */
        format_elapsed(elapsed, sizeof(elapsed), row);
        printf("%-*s  %-*s  %-11s  %-11s  %-12.12s  %-9s  %s\n", w, row->cfg->name, wk,
               r1_stage_kind_name(row->cfg->kind), row->state, step,
               row->manifest[0] ? row->manifest : "-", loss, elapsed);
    }
    if (strcmp(st->state, "running") == 0 && pid_alive(st->pid))
        printf("\nrunning as pid %lld\n", st->pid);
    else if (strcmp(st->state, "failed") == 0 || strcmp(st->state, "interrupted") == 0)
        /* an interruption's message already says how to continue */
        printf("\nthe last run %s%s%s%s%s%s%s\n", st->state, st->stage[0] ? " in stage " : "",
               st->stage, st->message[0] ? ": " : "", st->message,
               strstr(st->message, "r1 resume") ? "" : "; continue with r1 resume ",
               strstr(st->message, "r1 resume") ? "" : dir);
    else if (strcmp(st->state, "running") == 0)
        printf("\nthe last run (pid %lld) was killed; continue with r1 resume %s\n", st->pid, dir);
}

static int print_json(const struct r1_recipe *r, const struct stage_row *rows, int n)
{
    json_t *root = json_object(), *stages = json_array();
    if (!root || !stages) {
        json_decref(root);
        json_decref(stages);
        return r1_err_set(R1_ENOMEM, "out of memory");
    }
    json_object_set_new(root, "run", json_string(r->name));
    json_object_set_new(root, "stages", stages);
    for (int i = 0; i < n; i++) {
        const struct stage_row *row = &rows[i];
        json_t *m = json_object(), *s = json_object();
        const char *key;
        json_t *v;
        json_object_foreach (row->metrics, key, v)
            if (json_is_number(v))
                json_object_set(m, key, v);
        json_object_set_new(s, "name", json_string(row->cfg->name));
        json_object_set_new(s, "kind", json_string(r1_stage_kind_name(row->cfg->kind)));
        json_object_set_new(s, "state", json_string(row->state));
        json_object_set_new(s, "step", json_integer(row->step));
        json_object_set_new(s, "steps", row->steps >= 0 ? json_integer(row->steps) : json_null());
        json_object_set_new(s, "checkpoint",
                            row->manifest[0] ? json_string(row->manifest) : json_null());
        json_object_set_new(s, "metrics", m);
        json_array_append_new(stages, s);
    }
    /* 15 significant digits give back the metrics exactly as metrics.jsonl wrote them */
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (!text)
        return r1_err_set(R1_ENOMEM, "out of memory");
    printf("%s\n", text);
    free(text);
    return 0;
}

int cmd_status(int argc, char **argv)
{
    bool as_json = false;
    const struct r1_option opts[] = {
        {R1_OPT_FLAG, "json", 0, &as_json, NULL, "print one JSON object instead of the table"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("status", "[DIR] [--json]",
                          "Shows each stage of the run in DIR (default: the current directory):\n"
                          "state (done, running, failed, interrupted, pending), step/steps, the\n"
                          "newest checkpoint (manifest sha256), the last loss and the elapsed\n"
                          "wall time.  Reads only; exit 2 when DIR is not a run directory.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    const char *dir = npos ? pos[0] : ".";
    struct r1_recipe *r = NULL;
    struct stage_row *rows = NULL;
    struct run_status st;
    if ((rc = cmd_run_dir_load(&r, dir)) || (rc = rows_load(&rows, r, dir, &st)))
        goto out;
    if (as_json)
        rc = print_json(r, rows, r->n_stages);
    else
        print_table(r, rows, r->n_stages, dir, &st);
out:
    rows_free(rows, r ? r->n_stages : 0);
    r1_recipe_free(r);
    return rc ? cmd_fail("status", rc) : 0;
}
