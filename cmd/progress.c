/* progress.c - the header, per-stage progress and summary table of `r1 run` and
 * `r1 resume` (see progress.h).  Times are monotonic seconds.  tokens/s is the stage's
 * "tokens" metric over the time spent in steps (evals and checkpoints left out), or its
 * own gen_tokens_per_s; the ETA is the stage's wall time per step so far times the steps
 * left. */
#include "cmd/progress.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1234567 -> "1.23M" */
static void fmt_count(char *buf, size_t cap, double v)
{
    const char *unit[] = {"", "k", "M", "G", "T"};
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(buf, cap, u ? "%.3g%s" : "%.0f%s", v, unit[u]);
}

static void fmt_bytes(char *buf, size_t cap, double v)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.3g %s" : "%.0f %s", v, unit[u]);
}

/* seconds -> "12.3s", "4m05s", "2h07m" */
static void fmt_time(char *buf, size_t cap, double s)
{
    if (s < 0)
        snprintf(buf, cap, "-");
    else if (s < 60)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

static struct cmd_stage_row *row_of(struct cmd_progress *p, const char *stage)
{
    for (int i = 0; i < p->n_rows; i++)
        if (strcmp(p->rows[i].name, stage) == 0)
            return &p->rows[i];
    return NULL;
}

static double metric(const struct r1_stage_metrics *m, const char *key, double dflt)
{
    for (int i = 0; m && i < m->n; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->values[i];
    return dflt;
}

void cmd_progress_init(struct cmd_progress *p, FILE *out, bool tty, bool quiet, double every)
{
    memset(p, 0, sizeof(*p));
    p->out = out;
    p->tty = tty;
    p->quiet = quiet;
    p->every = every < 0 ? 0 : every;
}

void cmd_progress_release(struct cmd_progress *p)
{
    free(p->rows);
    p->rows = NULL;
    p->n_rows = 0;
}

/* Ends the in-place line so that a full line can print. */
static void close_line(struct cmd_progress *p)
{
    if (p->line_open) {
        fputs("\r\033[K", p->out);
        p->line_open = false;
    }
}

void cmd_progress_header(void *user, const struct r1_pipeline_header *h)
{
    struct cmd_progress *p = user;
    free(p->rows);
    p->rows = calloc((size_t)(h->n_stages ? h->n_stages : 1), sizeof(*p->rows));
    p->n_rows = p->rows ? h->n_stages : 0;
    for (int i = 0; i < p->n_rows; i++) {
        struct cmd_stage_row *r = &p->rows[i];
        snprintf(r->name, sizeof(r->name), "%s", h->stages[i].name);
        snprintf(r->kind, sizeof(r->kind), "%s", h->stages[i].kind);
        r->cfg_steps = h->stages[i].steps;
        r->cfg_epochs = h->stages[i].epochs;
        r->acc = -1;
        r->direct_tps = -1;
    }
    if (p->quiet)
        return;
    FILE *f = p->out;
    char threads[32];
    if (h->threads > 0)
        snprintf(threads, sizeof(threads), "%d", h->threads);
    else
        snprintf(threads, sizeof(threads), "all");
    fprintf(f, "recipe %s (%s), sha256 %.12s\n", h->recipe_name, h->recipe_path, h->hash);
    char procs[256] = "";
    if (h->world > 1) /* data parallel: docs/distributed.md */
        snprintf(procs, sizeof(procs), ", %d processes (sums over %s)", h->world, h->transport);
    fprintf(f, "run dir %s (%s); backend %s, threads %s%s\n", h->run_dir,
            h->resume ? "resuming" : "new run", h->backend, threads, procs);
    fprintf(f, "  %-16s %-14s %-10s %-8s %s\n", "stage", "kind", "length", "params", "init");
    for (int i = 0; i < h->n_stages; i++) {
        const struct r1_pipeline_stage_info *s = &h->stages[i];
        char len[32], params[32];
        if (s->steps > 0)
            snprintf(len, sizeof(len), "%" PRId64 " steps", s->steps);
        else
            snprintf(len, sizeof(len), "%" PRId64 " epochs", s->epochs);
        if (s->n_params >= 0)
            fmt_count(params, sizeof(params), (double)s->n_params);
        else
            snprintf(params, sizeof(params), "?");
        fprintf(f, "  %-16s %-14s %-10s %-8s %s\n", s->name, s->kind, len, params, s->init);
    }
    fflush(f);
}

void cmd_progress_plan(void *user, const struct r1_pipeline_stage_plan *plan)
{
    struct cmd_progress *p = user;
    struct cmd_stage_row *r = row_of(p, plan->stage);
    if (!r)
        return;
    r->plan = *plan;
    r->have_plan = true;
}

/* "start"/"resume": the stage's plan line. */
static void print_start(struct cmd_progress *p, struct cmd_stage_row *r, bool resume)
{
    const struct r1_pipeline_stage_plan *pl = &r->plan;
    char n[32], a[32], b[32], c[32], d[32], e[32], t[32], h[48], w[32];
    close_line(p);
    if (!r->have_plan) {
        fprintf(p->out, "%s %s\n", r->name, resume ? "resume" : "start");
        return;
    }
    fmt_count(n, sizeof(n), (double)pl->n_params);
    fmt_bytes(a, sizeof(a), (double)pl->param_bytes);
    fmt_bytes(b, sizeof(b), (double)pl->grad_bytes);
    fmt_bytes(c, sizeof(c), (double)pl->optim_bytes);
    fmt_bytes(d, sizeof(d), (double)pl->activation_bytes);
    fmt_bytes(e, sizeof(e), (double)pl->other_bytes);
    fmt_bytes(w, sizeof(w), (double)pl->workspace_bytes);
    fmt_bytes(t, sizeof(t),
              (double)(pl->param_bytes + pl->grad_bytes + pl->optim_bytes + pl->activation_bytes +
                       pl->param16_bytes + pl->workspace_bytes + pl->other_bytes));
    h[0] = '\0';
    if (pl->param16_bytes) {
        char x[32];
        fmt_bytes(x, sizeof(x), (double)pl->param16_bytes);
        snprintf(h, sizeof(h), " (+ %s bf16 copy)", x);
    }
    fprintf(p->out,
            "%s %s at step %" PRId64 " of %" PRId64 ": %s params; memory %s params%s + %s "
            "grads + %s optimizer + %s activations + %s workspace%s%s%s = %s\n",
            r->name, resume ? "resumes" : "starts", pl->done, pl->total, n, a, h, b, c, d, w,
            pl->other_bytes ? " + " : "", pl->other_bytes ? e : "",
            pl->other_bytes ? " KV caches and other models" : "", t);
}

/* The progress text of a stage: "[ 37/120]  reward 0.61  acc 0.55  12.3k tok/s  ETA 1m12s". */
static void progress_text(const struct cmd_stage_row *r, char *buf, size_t cap, bool plain)
{
    int w = snprintf(NULL, 0, "%" PRId64, r->total);
    int n =
        plain
            ? snprintf(buf, cap, "%s step %" PRId64 " of %" PRId64, r->name, r->step, r->total)
            : snprintf(buf, cap, "%-10s [%*" PRId64 "/%" PRId64 "]", r->name, w, r->step, r->total);
    size_t used = n < 0 ? 0 : (size_t)n;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int k_ = used < cap ? snprintf(buf + used, cap - used, __VA_ARGS__) : 0;                   \
        used += k_ > 0 ? (size_t)k_ : 0;                                                           \
    } while (0)
    if (r->head)
        ADD("  %s %.4g", r->head, r->head_v);
    if (r->acc >= 0)
        ADD("  acc %.3g", r->acc);
    char tps[32];
    double rate = r->tokens_s > 0 && r->tokens > 0 ? r->tokens / r->tokens_s : r->direct_tps;
    if (rate > 0) {
        fmt_count(tps, sizeof(tps), rate);
        ADD("  %s tok/s", tps);
    }
    int64_t done = r->step - r->first;
    if (done > 0 && r->step < r->total) {
        char eta[32];
        fmt_time(eta, sizeof(eta),
                 (r->t_prev - r->t_start) / (double)done * (double)(r->total - r->step));
        ADD("  ETA %s", eta);
    }
#undef ADD
}

static int term_cols(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 100;
}

static void draw(struct cmd_progress *p, struct cmd_stage_row *r)
{
    char buf[512];
    if (p->tty) {
        progress_text(r, buf, sizeof(buf), false);
        int cols = term_cols(p->out);
        if ((int)strlen(buf) >= cols) /* a wrapped line cannot be rewritten with \r */
            buf[cols - 1] = '\0';
        fprintf(p->out, "\r%s\033[K", buf);
        p->line_open = true;
    } else {
        progress_text(r, buf, sizeof(buf), true);
        fprintf(p->out, "%s\n", buf);
        r->last_print = now_s();
    }
}

static void on_step(struct cmd_progress *p, struct cmd_stage_row *r,
                    const struct r1_stage_metrics *m)
{
    double t = now_s();
    bool first = r->step == r->first;
    double tok = metric(m, "tokens", -1);
    if (tok >= 0) {
        r->tokens += tok;
        r->tokens_s += t - r->t_prev;
    }
    r->direct_tps = metric(m, "gen_tokens_per_s", -1);
    r->t_prev = t;
    r->step = m->step;
    if (r->total < r->step)
        r->total = r->step;
    double v = metric(m, "reward", NAN);
    r->head = v == v ? "reward" : "loss";
    r->head_v = v == v ? v : metric(m, "loss", 0);
    r->acc = metric(m, "accuracy", -1);
    if (p->quiet)
        return;
    if (p->tty || first || r->step >= r->total || p->every <= 0 || t - r->last_print >= p->every)
        draw(p, r);
}

static void on_eval(struct cmd_progress *p, struct cmd_stage_row *r,
                    const struct r1_stage_metrics *m)
{
    const char *key = NULL;
    for (int i = 0; i < m->n && !key; i++)
        if (strcmp(m->keys[i], "eval/accuracy") == 0)
            key = m->keys[i];
    if (!key && m->n > 0)
        key = m->keys[0];
    if (key) {
        if (r->n_eval == 0) {
            snprintf(r->eval_key, sizeof(r->eval_key), "%s", key);
            r->eval_first = metric(m, key, 0);
        }
        r->eval_last = metric(m, r->eval_key, 0);
        r->n_eval++;
    }
    if (p->quiet)
        return;
    close_line(p);
    fprintf(p->out, "%s eval %" PRId64, r->name, m->step);
    for (int i = 0; i < m->n; i++)
        fprintf(p->out, " %s %.4g", m->keys[i], m->values[i]);
    fputc('\n', p->out);
}

void cmd_progress_event(void *user, const char *stage, const char *what,
                        const struct r1_stage_metrics *m)
{
    struct cmd_progress *p = user;
    struct cmd_stage_row *r = row_of(p, stage);
    if (!r)
        return;
    bool redraw = p->tty && !p->quiet && r->status == CMD_STAGE_RUNNING;
    if (strcmp(what, "start") == 0 || strcmp(what, "resume") == 0) {
        r->status = CMD_STAGE_RUNNING;
        r->t_start = r->t_prev = now_s();
        r->first = r->step = r->have_plan ? r->plan.done : 0;
        r->total = r->have_plan ? r->plan.total : r->cfg_steps;
        if (!p->quiet)
            print_start(p, r, what[0] == 'r');
        redraw = false;
    } else if (strcmp(what, "step") == 0) {
        on_step(p, r, m);
        redraw = false;
    } else if (strcmp(what, "eval") == 0) {
        on_eval(p, r, m);
        r->t_prev = now_s(); /* tokens/s counts step time only */
    } else if (strcmp(what, "checkpoint") == 0) {
        r->t_prev = now_s();
        if (!p->quiet) {
            close_line(p);
            fprintf(p->out, "%s checkpoint at step %" PRId64 "\n", stage, m->step);
        }
    } else if (strcmp(what, "finished") == 0) {
        r->status = CMD_STAGE_DONE;
        r->t_end = now_s();
        if (!p->quiet) {
            if (p->tty && !p->line_open && r->step > r->first)
                draw(p, r);
            if (p->line_open) { /* keep the last progress line */
                fputc('\n', p->out);
                p->line_open = false;
            }
            char wall[32];
            fmt_time(wall, sizeof(wall), r->t_end - r->t_start);
            fprintf(p->out, "%s finished at step %" PRId64 " in %s\n", stage, r->step, wall);
        }
        redraw = false;
    } else if (strcmp(what, "done") == 0) {
        r->status = CMD_STAGE_FINISHED;
        if (!p->quiet) {
            close_line(p);
            fprintf(p->out, "%s already finished\n", stage);
        }
        redraw = false;
    } else if (!p->quiet) {
        close_line(p);
        fprintf(p->out, "%s %s\n", stage, what);
    }
    if (redraw && r->step > r->first)
        draw(p, r);
    fflush(p->out);
}

void cmd_progress_summary(struct cmd_progress *p, int rc)
{
    FILE *f = p->out;
    if (p->line_open) {
        fputc('\n', f);
        p->line_open = false;
    }
    if (p->n_rows == 0)
        return;
    fprintf(f, "\n  %-16s %-16s %-11s %-8s %-16s %s\n", "stage", "status", "steps", "wall", "final",
            "eval (first -> last)");
    for (int i = 0; i < p->n_rows; i++) {
        struct cmd_stage_row *r = &p->rows[i];
        const char *status = "not run";
        char steps[48] = "-", wall[32] = "-", fin[48] = "-", ev[96] = "-";
        switch (r->status) {
        case CMD_STAGE_PENDING:
            break;
        case CMD_STAGE_RUNNING:
            status = rc == R1_EINTR ? "interrupted" : "failed";
            break;
        case CMD_STAGE_DONE:
            status = "done";
            break;
        case CMD_STAGE_FINISHED:
            status = "already finished";
            break;
        }
        if (r->status == CMD_STAGE_RUNNING || r->status == CMD_STAGE_DONE) {
            snprintf(steps, sizeof(steps), "%" PRId64 "/%" PRId64, r->step, r->total);
            fmt_time(wall, sizeof(wall), (r->t_end > 0 ? r->t_end : now_s()) - r->t_start);
        } else if (r->status == CMD_STAGE_FINISHED && r->cfg_steps > 0) {
            snprintf(steps, sizeof(steps), "%" PRId64 "/%" PRId64, r->cfg_steps, r->cfg_steps);
        }
        if (r->head)
            snprintf(fin, sizeof(fin), "%s %.4g", r->head, r->head_v);
        if (r->n_eval > 0)
            snprintf(ev, sizeof(ev), "%s %.3g -> %.3g", r->eval_key, r->eval_first, r->eval_last);
        fprintf(f, "  %-16s %-16s %-11s %-8s %-16s %s\n", r->name, status, steps, wall, fin, ev);
    }
    fflush(f);
}
