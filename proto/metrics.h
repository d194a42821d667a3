/* metrics.h — a small metrics registry for both daemons: counters and gauges (optionally
 * with one label), histograms with fixed buckets, rendered as Prometheus text exposition
 * format 0.0.4. Pure: no I/O, no clock, no locks (each daemon is one thread). The admin port
 * (admin_http.h) serves the rendered text at /metrics.
 *
 * Metric objects belong to their registry and live until gp_metrics_free. Names and help
 * strings are borrowed (string literals); label values are copied. A metric has at most one
 * label name; each distinct label value is one series, created on first use (label values
 * are a small fixed set in practice: transports, status classes, outcomes). */
#ifndef GP_METRICS_H
#define GP_METRICS_H

#include <stddef.h>

typedef struct gp_metrics gp_metrics;
typedef struct gp_metric gp_metric;

#define GP_METRICS_MAX_SERIES 64 /* per metric: more label values are dropped */
#define GP_METRICS_MAX_BUCKETS 32

gp_metrics *gp_metrics_new(void);    /* NULL: out of memory */
void gp_metrics_free(gp_metrics *m); /* NULL ok */

/* Declares a metric. label: the label's name, or NULL for a metric without one. Returns the
 * metric (owned by m), or NULL when out of memory (every gp_metric_* call accepts NULL and
 * does nothing, so a daemon short of memory just loses that metric). */
gp_metric *gp_metrics_counter(gp_metrics *m, const char *name, const char *help, const char *label);
gp_metric *gp_metrics_gauge(gp_metrics *m, const char *name, const char *help, const char *label);
/* bounds: strictly increasing upper bounds (copied), n <= GP_METRICS_MAX_BUCKETS; +Inf is
 * implicit. NULL when the bounds are invalid. */
gp_metric *gp_metrics_histogram(gp_metrics *m, const char *name, const char *help,
                                const double *bounds, size_t n);
/* A histogram of durations in seconds, the buckets both daemons use: 1 ms ... 60 s. */
gp_metric *gp_metrics_duration(gp_metrics *m, const char *name, const char *help);

/* Counter: adds v (>= 0; negative values are ignored). label_value NULL for unlabelled.
 * Adding 0 creates the series, so that a known label value shows from the start. */
void gp_metric_add(gp_metric *x, const char *label_value, double v);
void gp_metric_inc(gp_metric *x, const char *label_value); /* add 1 */
/* Gauge: sets / adds (may be negative). */
void gp_metric_set(gp_metric *x, const char *label_value, double v);
/* Histogram: one observation. */
void gp_metric_observe(gp_metric *x, double v);
/* Current value of a counter or gauge series (0 when the series does not exist); the sum
 * of observations for a histogram. For tests and for the daemons' own stats. */
double gp_metric_value(const gp_metric *x, const char *label_value);
/* Sum over every series of a counter or gauge. */
double gp_metric_total(const gp_metric *x);

/* Renders every metric in declaration order into a malloc'd NUL-terminated buffer (*len its
 * length without the NUL). Series without a label are always shown (0 before any update);
 * labelled series appear once used. NULL: out of memory. */
char *gp_metrics_render(const gp_metrics *m, size_t *len);

#endif
