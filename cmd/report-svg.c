/* report-svg.c - the text buffer of `r1 report` and its line charts as inline SVG.
 *
 * A chart is a fixed W x H box in SVG user units: the plot area inside margins, the
 * y axis on the left with the smallest and largest value as tick labels, the x axis
 * (step) below with the first and last step.  Values map linearly; a range of zero
 * width is widened so a constant series sits in the middle.  Non-finite values never
 * reach here (cmd/report.c drops them). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/report.h"

static int buf_reserve(struct report_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void report_buf_printf(struct report_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if (buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void report_buf_escaped(struct report_buf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *rep = NULL;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
                rep = "&#xFFFD;";
        }
        if (rep) {
            report_buf_printf(b, "%s", rep);
        } else if (!buf_reserve(b, 1)) {
            b->data[b->len++] = (char)c;
            b->data[b->len] = '\0';
        }
    }
}

void report_buf_release(struct report_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Series colours, cycled; legible on white. */
static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_PALETTE (int)(sizeof(palette) / sizeof(palette[0]))

enum { W = 420, H = 220, ML = 64, MR = 14, MT = 12, MB = 36 };

struct range {
    double lo, hi;
};

static void range_widen(struct range *r)
{
    if (r->hi > r->lo)
        return;
    double d = fabs(r->lo) * 0.05;
    if (d == 0)
        d = 1;
    r->lo -= d;
    r->hi += d;
}

static double map(double v, struct range r, double from, double to)
{
    return from + (v - r.lo) / (r.hi - r.lo) * (to - from);
}

void report_svg_chart(struct report_buf *b, const char *stage, const char *metric,
                      const struct report_series *const *series, int n)
{
    struct range xr = {INFINITY, -INFINITY}, yr = {INFINITY, -INFINITY};
    for (int s = 0; s < n; s++)
        for (int i = 0; i < series[s]->n; i++) {
            double x = series[s]->x[i], y = series[s]->y[i];
            xr.lo = x < xr.lo ? x : xr.lo;
            xr.hi = x > xr.hi ? x : xr.hi;
            yr.lo = y < yr.lo ? y : yr.lo;
            yr.hi = y > yr.hi ? y : yr.hi;
        }
    if (xr.lo > xr.hi)
        return; /* no points at all: no chart */
    struct range xs = xr, ys = yr;
    range_widen(&xs);
    range_widen(&ys);
    const double x0 = ML, x1 = W - MR, y0 = H - MB, y1 = MT;

    report_buf_printf(b, "<figure><figcaption><b>");
    report_buf_escaped(b, metric);
    report_buf_printf(b, "</b>");
    for (int s = 0; n > 1 && s < n; s++) {
        report_buf_printf(b, " <span class=\"key\"><i style=\"background:%s\"></i>",
                          palette[s % N_PALETTE]);
        report_buf_escaped(b, series[s]->key);
        report_buf_printf(b, "</span>");
    }
    report_buf_printf(
        b, "</figcaption>\n<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" data-stage=\"", W,
        H, W, H);
    report_buf_escaped(b, stage);
    report_buf_printf(b, "\" data-metric=\"");
    report_buf_escaped(b, metric);
    report_buf_printf(b, "\" data-series=\"");
    for (int s = 0; s < n; s++) {
        report_buf_printf(b, "%s", s ? " " : "");
        report_buf_escaped(b, series[s]->key);
    }
    report_buf_printf(b, "\" role=\"img\">\n");
    /* frame: top grid line, axes */
    report_buf_printf(b,
                      "<line class=\"grid\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>"
                      "<line class=\"axis\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>"
                      "<line class=\"axis\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>\n",
                      x0, map(yr.hi, ys, y0, y1), x1, map(yr.hi, ys, y0, y1), x0, y0, x1, y0, x0,
                      y0, x0, y1);
    /* tick labels: min and max of y (left; one for a constant series), first and last step
     * (below), axis name */
    const char *ytick = "<text class=\"tick\" x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>";
    report_buf_printf(b, ytick, x0 - 4, map(yr.hi, ys, y0, y1) + 4, yr.hi);
    if (yr.lo < yr.hi)
        report_buf_printf(b, ytick, x0 - 4, map(yr.lo, ys, y0, y1) + 4, yr.lo);
    report_buf_printf(b, "\n");
    report_buf_printf(b,
                      "<text class=\"tick\" x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.0f</text>",
                      map(xr.lo, xs, x0, x1), y0 + 14, xr.lo);
    if (xr.hi > xr.lo)
        report_buf_printf(
            b, "<text class=\"tick\" x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.0f</text>",
            map(xr.hi, xs, x0, x1), y0 + 14, xr.hi);
    report_buf_printf(
        b, "<text class=\"label\" x=\"%g\" y=\"%g\" text-anchor=\"middle\">step</text>\n",
        (x0 + x1) / 2, (double)H - 6);
    for (int s = 0; s < n; s++) {
        const struct report_series *se = series[s];
        const char *colour = palette[s % N_PALETTE];
        if (se->n == 1) {
            report_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                              map(se->x[0], xs, x0, x1), map(se->y[0], ys, y0, y1), colour);
            continue;
        }
        report_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                          colour);
        for (int i = 0; i < se->n; i++)
            report_buf_printf(b, "%s%.1f,%.1f", i ? " " : "", map(se->x[i], xs, x0, x1),
                              map(se->y[i], ys, y0, y1));
        report_buf_printf(b, "\"/>\n");
    }
    report_buf_printf(b, "</svg></figure>\n");
}
