/* report.c - `r1 report [DIR] [-o FILE]`: one self-contained HTML page about a run.
 *
 * Reads only (the same sources as r1 status): the recipe from DIR/recipe.lock.yaml,
 * stage states from the ledger and DIR/status.json, every line of DIR/metrics.jsonl,
 * the ledger's commits and the last lines of DIR/samples/<stage>.jsonl.  Writes FILE
 * (default DIR/report.html) through a temporary file in its directory and a rename, so
 * a reader sees the old file or the whole new one.  The page needs nothing from the
 * network: the style is inline and the charts are inline SVG (cmd/report-svg.c).  All
 * text taken from files is HTML-escaped.
 *
 * Charts: one per metric key of each stage, with some keys drawn together:
 * rewards/<name> with reward, completion_len_max with completion_len, clip_low with
 * clip_high (chart "clip").  The usual training numbers come first in a fixed order;
 * the rest (timings, counts) follow under "more metrics". */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "cmd/report.h"
#include "core/err.h"
#include "core/file.h"
#include "core/ledger.h"
#include "core/recipe.h"

#define SAMPLES_SHOWN 3 /* last lines of samples/<stage>.jsonl shown per stage */

/* Charts shown first, in this order, when the stage has them. */
static const char *const main_charts[] = {
    "loss",
    "lr",
    "grad_norm",
    "reward",
    "accuracy",
    "eval/accuracy",
    "eval/reward",
    "completion_len",
    "eval/completion_len",
    "kl",
    "entropy",
    "clip",
};
#define N_MAIN_CHARTS (int)(sizeof(main_charts) / sizeof(main_charts[0]))

struct stage_metrics {
    struct report_series *s;
    int n, cap;
};

static const char *chart_of(const char *key)
{
    if (strncmp(key, "rewards/", 8) == 0)
        return "reward";
    if (strcmp(key, "completion_len_max") == 0)
        return "completion_len";
    if (strcmp(key, "clip_low") == 0 || strcmp(key, "clip_high") == 0)
        return "clip";
    return key;
}

static int series_add(struct stage_metrics *m, const char *key, double x, double y)
{
    struct report_series *s = NULL;
    for (int i = 0; i < m->n && !s; i++)
        if (strcmp(m->s[i].key, key) == 0)
            s = &m->s[i];
    if (!s) {
        if (m->n == m->cap) {
            int cap = m->cap ? m->cap * 2 : 16;
            struct report_series *p = realloc(m->s, (size_t)cap * sizeof(*p));
            if (!p)
                return r1_err_set(R1_ENOMEM, "out of memory reading metrics.jsonl");
            m->s = p;
            m->cap = cap;
        }
        s = &m->s[m->n];
        memset(s, 0, sizeof(*s));
        if (!(s->key = strdup(key)))
            return r1_err_set(R1_ENOMEM, "out of memory reading metrics.jsonl");
        m->n++;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        double *px = realloc(s->x, (size_t)cap * sizeof(double));
        if (px)
            s->x = px;
        double *py = px ? realloc(s->y, (size_t)cap * sizeof(double)) : NULL;
        if (!py)
            return r1_err_set(R1_ENOMEM, "out of memory reading metrics.jsonl");
        s->y = py;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static void metrics_free(struct stage_metrics *m, int n)
{
    for (int i = 0; m && i < n; i++) {
        for (int j = 0; j < m[i].n; j++) {
            free(m[i].s[j].key);
            free(m[i].s[j].x);
            free(m[i].s[j].y);
        }
        free(m[i].s);
    }
    free(m);
}

/* Every numeric key of every metrics line, per stage of r (lines naming another stage
 * and lines that do not parse, such as the tail of a killed process, are skipped). */
static int metrics_read(struct stage_metrics *out, const struct r1_recipe *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return r1_err_set(R1_EINVAL, "%s: no metrics yet: report on a run that has taken a step",
                          path);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, JSON_DECODE_ANY, NULL);
        const char *stage = json_string_value(json_object_get(o, "stage"));
        json_t *step = json_object_get(o, "step");
        int si = -1;
        for (int i = 0; stage && i < r->n_stages && si < 0; i++)
            if (strcmp(r->stages[i].name, stage) == 0)
                si = i;
        const char *key;
        json_t *v;
        if (si >= 0 && json_is_integer(step))
            json_object_foreach (o, key, v) {
                if (rc || !json_is_number(v) || strcmp(key, "step") == 0 ||
                    !isfinite(json_number_value(v)))
                    continue;
                rc = series_add(&out[si], key, (double)json_integer_value(step),
                                json_number_value(v));
            }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return rc;
}

static void charts_one(struct report_buf *b, const char *stage, const struct stage_metrics *m,
                       const char *chart, const struct report_series **sel)
{
    int n = 0;
    for (int i = 0; i < m->n; i++)
        if (strcmp(chart_of(m->s[i].key), chart) == 0)
            sel[n++] = &m->s[i];
    if (n)
        report_svg_chart(b, stage, chart, sel, n);
}

static bool is_main_chart(const char *chart)
{
    for (int i = 0; i < N_MAIN_CHARTS; i++)
        if (strcmp(main_charts[i], chart) == 0)
            return true;
    return false;
}

static int write_charts(struct report_buf *b, const char *stage, const struct stage_metrics *m)
{
    const struct report_series **sel = calloc((size_t)m->n + 1, sizeof(*sel));
    if (!sel)
        return r1_err_set(R1_ENOMEM, "out of memory drawing charts");
    report_buf_printf(b, "<div class=\"charts\">\n");
    for (int i = 0; i < N_MAIN_CHARTS; i++)
        charts_one(b, stage, m, main_charts[i], sel);
    report_buf_printf(b, "</div>\n");
    /* the other charts in first-seen order, each once */
    bool any = false;
    for (int i = 0; i < m->n; i++) {
        const char *chart = chart_of(m->s[i].key);
        bool seen = is_main_chart(chart);
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(chart_of(m->s[j].key), chart) == 0;
        if (seen)
            continue;
        if (!any)
            report_buf_printf(b,
                              "<details><summary>more metrics</summary><div class=\"charts\">\n");
        any = true;
        charts_one(b, stage, m, chart, sel);
    }
    if (any)
        report_buf_printf(b, "</div></details>\n");
    free(sel);
    return 0;
}

static void format_time(char *buf, size_t cap, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
    else
        snprintf(buf, cap, "%" PRId64, t);
}

static int ledger_row(const struct r1_ledger_commit *c, void *ud)
{
    struct report_buf *b = ud;
    char date[32];
    format_time(date, sizeof(date), c->time);
    report_buf_printf(b, "<tr class=\"commit\"><td><code>%.12s</code></td><td>", c->id);
    report_buf_escaped(b, c->stage ? c->stage : "-");
    if (c->stage)
        report_buf_printf(b, "</td><td class=\"num\">%" PRId64 "</td><td>", c->step);
    else
        report_buf_printf(b, "</td><td class=\"num\">-</td><td>");
    report_buf_escaped(b, c->summary ? c->summary : "");
    if (r1_ledger_trailer(c, "R1-Forced"))
        report_buf_printf(b, " <em>(forced)</em>");
    report_buf_printf(b, "</td><td>%s</td></tr>\n", date);
    return 0;
}

static int write_ledger(struct report_buf *b, const char *dir)
{
    struct r1_ledger *lg = NULL;
    report_buf_printf(b, "<h2>Ledger</h2>\n<table class=\"ledger\"><thead><tr><th>commit</th>"
                         "<th>stage</th><th>step</th><th>message</th><th>date (UTC)</th></tr>"
                         "</thead><tbody>\n");
    int rc = r1_ledger_open(&lg, dir);
    if (!rc)
        rc = r1_ledger_walk(lg, 0, ledger_row, b);
    r1_ledger_free(lg);
    report_buf_printf(b, "</tbody></table>\n");
    return rc;
}

static void sample_field(struct report_buf *b, json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (!v)
        return;
    report_buf_printf(b, "<span class=\"field\">%s ", name);
    if (json_is_string(v)) {
        report_buf_escaped(b, json_string_value(v));
    } else if (json_is_number(v)) {
        report_buf_printf(b, "%.4g", json_number_value(v));
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        report_buf_escaped(b, text ? text : "?");
        free(text);
    }
    report_buf_printf(b, "</span> ");
}

/* The last SAMPLES_SHOWN lines of DIR/samples/<stage>.jsonl; nothing without the file. */
static void write_samples(struct report_buf *b, const char *dir, const char *stage)
{
    char path[4200], *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/samples/%s.jsonl", dir, stage);
    struct stat sb;
    if (stat(path, &sb) != 0 || r1_file_read(path, &data, &len) != 0) {
        r1_err_clear();
        return;
    }
    const char *starts[SAMPLES_SHOWN];
    int n = 0;
    for (size_t i = len; i > 0 && n < SAMPLES_SHOWN; i--) {
        size_t at = i - 1;
        if (data[at] == '\n')
            data[at] = '\0';
        if ((at == 0 || data[at - 1] == '\n') && data[at] != '\0')
            starts[n++] = data + at;
    }
    if (n)
        report_buf_printf(b, "<h3>Samples (the last %d)</h3>\n", n);
    for (int i = n - 1; i >= 0; i--) {
        json_t *o = json_loads(starts[i], 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            continue;
        }
        report_buf_printf(b, "<div class=\"sample\"><div class=\"meta\">");
        static const char *const meta[] = {"step",    "reward", "answer",
                                           "correct", "finish", "source"};
        for (size_t k = 0; k < sizeof(meta) / sizeof(meta[0]); k++)
            sample_field(b, o, meta[k]);
        report_buf_printf(b, "</div>\n");
        const char *parts[] = {"prompt", "completion"};
        for (int k = 0; k < 2; k++) {
            const char *text = json_string_value(json_object_get(o, parts[k]));
            if (!text)
                continue;
            report_buf_printf(b, "<div class=\"%s\"><span class=\"label\">%s</span><pre>", parts[k],
                              parts[k]);
            report_buf_escaped(b, text);
            report_buf_printf(b, "</pre></div>\n");
        }
        report_buf_printf(b, "</div>\n");
        json_decref(o);
    }
    free(data);
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1320px;color:#222;"
    "padding:0 1em}"
    "h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}"
    "table{border-collapse:collapse}td,th{padding:.2em .7em;border-bottom:1px solid #eee;"
    "text-align:left}td.num{text-align:right}"
    ".charts{display:flex;flex-wrap:wrap;gap:.5em}figure{margin:0;border:1px solid #eee;"
    "padding:.3em}figcaption{font-size:13px}"
    ".key{margin-left:.8em}.key i{display:inline-block;width:.8em;height:.8em;"
    "margin-right:.25em}"
    "svg .axis{stroke:#444;stroke-width:1}svg .grid{stroke:#ddd;stroke-dasharray:3 3}"
    "svg text{font:11px sans-serif;fill:#444}"
    ".sample{border:1px solid #ddd;margin:.5em 0;padding:.4em}.sample .meta{color:#555}"
    ".field{margin-right:1em}.label{font-weight:bold}"
    "pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.3em;margin:.2em 0}"
    ".state-done{color:#2a7a2a}.state-failed{color:#b22}.state-running{color:#1f5fb4}";

static int build(struct report_buf *b, const struct r1_recipe *r, const char *dir,
                 const struct cmd_stage_state *st, const struct stage_metrics *m)
{
    char hash[65];
    int rc = r1_recipe_hash(r, hash);
    if (rc)
        return rc;
    report_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                         "<title>r1 report: ");
    report_buf_escaped(b, r->name);
    report_buf_printf(b, "</title>\n<style>%s</style></head>\n<body>\n<h1>r1 run ", style);
    report_buf_escaped(b, r->name);
    report_buf_printf(b, "</h1>\n<p>run directory <code>");
    report_buf_escaped(b, dir);
    report_buf_printf(b, "</code><br>recipe hash <code>%s</code></p>\n", hash);
    report_buf_printf(b, "<table class=\"stages\"><thead><tr><th>stage</th><th>kind</th>"
                         "<th>state</th><th>step</th></tr></thead><tbody>\n");
    for (int i = 0; i < r->n_stages; i++) {
        report_buf_printf(b, "<tr><td><a href=\"#stage-%d\">", i);
        report_buf_escaped(b, r->stages[i].name);
        report_buf_printf(b, "</a></td><td>%s</td><td class=\"state-%s\">%s</td>",
                          r1_stage_kind_name(r->stages[i].kind), st[i].state, st[i].state);
        if (st[i].steps >= 0)
            report_buf_printf(b, "<td class=\"num\">%" PRId64 "/%" PRId64 "</td></tr>\n",
                              st[i].step, st[i].steps);
        else
            report_buf_printf(b, "<td class=\"num\">%" PRId64 "/?</td></tr>\n", st[i].step);
    }
    report_buf_printf(b, "</tbody></table>\n");
    for (int i = 0; i < r->n_stages && !rc; i++) {
        report_buf_printf(b, "<section id=\"stage-%d\"><h2>Stage ", i);
        report_buf_escaped(b, r->stages[i].name);
        report_buf_printf(b, " <small>(%s, %s)</small></h2>\n",
                          r1_stage_kind_name(r->stages[i].kind), st[i].state);
        if (m[i].n == 0)
            report_buf_printf(b, "<p>no metrics yet</p>\n");
        rc = write_charts(b, r->stages[i].name, &m[i]);
        write_samples(b, dir, r->stages[i].name);
        report_buf_printf(b, "</section>\n");
    }
    if (!rc)
        rc = write_ledger(b, dir);
    report_buf_printf(b, "</body></html>\n");
    if (!rc && b->oom)
        rc = r1_err_set(R1_ENOMEM, "out of memory building the report");
    return rc;
}

/* R1_EINVAL unless path's directory exists and path is not itself a directory. */
static int check_out_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return r1_err_set(R1_EINVAL, "-o %s: is a directory; give a file name", path);
    const char *slash = strrchr(path, '/');
    if (!slash)
        return 0;
    char parent[4200];
    snprintf(parent, sizeof(parent), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (stat(parent, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return r1_err_set(R1_EINVAL, "-o %s: directory %s does not exist; create it first", path,
                          parent);
    return 0;
}

int cmd_report(int argc, char **argv)
{
    const char *out_arg = NULL;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "output", 'o', &out_arg, "FILE",
         "where to write the page (default DIR/report.html)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("report", "[DIR] [-o FILE]",
                          "Writes one self-contained HTML page about the run in DIR (default: the\n"
                          "current directory): its stages and their states, a chart per metric\n"
                          "and stage from metrics.jsonl, the ledger's commits and the last sample\n"
                          "completions.  Open it in any browser; it loads nothing from the\n"
                          "network.  Reads only the run; exit 2 when DIR is not a run directory\n"
                          "or has no metrics yet.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    const char *dir = npos ? pos[0] : ".";
    struct r1_recipe *r = NULL;
    struct cmd_stage_state *st = NULL;
    struct stage_metrics *m = NULL;
    struct report_buf b = {0};
    char out[4200], metrics[4200];
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = r1_err_set(R1_EINVAL, "%s: no such run directory", dir);
        goto out;
    }
    snprintf(out, sizeof(out), "%s", out_arg ? out_arg : dir);
    if (!out_arg)
        snprintf(out, sizeof(out), "%s/report.html", dir);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", dir);
    if ((rc = cmd_run_dir_load(&r, dir)) || (rc = check_out_path(out)))
        goto out;
    st = calloc((size_t)r->n_stages + 1, sizeof(*st));
    m = calloc((size_t)r->n_stages + 1, sizeof(*m));
    if (!st || !m) {
        rc = r1_err_set(R1_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = metrics_read(m, r, metrics)) || (rc = cmd_stage_states(st, r, dir)) ||
        (rc = build(&b, r, dir, st, m)))
        goto out;
    rc = r1_file_write_atomic(out, b.data, b.len);
out:
    report_buf_release(&b);
    metrics_free(m, r ? r->n_stages : 0);
    free(st);
    r1_recipe_free(r);
    if (rc)
        return cmd_fail("report", rc);
    printf("%s\n", out);
    return 0;
}
