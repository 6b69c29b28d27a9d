/* report.h - pieces of `r1 report` (cmd/report.c) shared with its chart drawing
 * (cmd/report-svg.c): a growing text buffer with HTML escaping, and one metric's
 * series (step on x, value on y) drawn as an inline SVG line chart. */
#ifndef R1_CMD_REPORT_H
#define R1_CMD_REPORT_H

#include <stddef.h>

/* Text built in memory; a failed allocation sets oom and later appends do nothing. */
struct report_buf {
    char *data;
    size_t len, cap;
    int oom;
};

void report_buf_printf(struct report_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s with & < > " ' as character references and control characters other than
 * tab and newline as U+FFFD (text from files may hold any of them). */
void report_buf_escaped(struct report_buf *b, const char *s);
void report_buf_release(struct report_buf *b);

/* One metric key of one stage: values in metrics.jsonl order. */
struct report_series {
    char *key;
    double *x, *y; /* step, value */
    int n, cap;
};

/* Appends <figure> with a title, a legend when there is more than one series, and an
 * <svg data-stage="STAGE" data-metric="METRIC" data-series="KEY KEY ..."> line chart
 * of the n series: axes, min/max tick labels, step on x; a series of one point shows
 * a marker. */
void report_svg_chart(struct report_buf *b, const char *stage, const char *metric,
                      const struct report_series *const *series, int n);

#endif
