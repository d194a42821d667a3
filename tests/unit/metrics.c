/* metrics.c — the metrics registry (proto/metrics.c): counters with a label, gauges,
 * histograms, and the Prometheus text format 0.0.4 they render to. */
#include "metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *render(gp_metrics *m) {
    size_t len;
    char *s = gp_metrics_render(m, &len);
    cr_assert_not_null(s);
    cr_assert_eq(strlen(s), len);
    return s;
}

Test(metrics, counter_with_label_and_without) {
    gp_metrics *m = gp_metrics_new();
    gp_metric *plain = gp_metrics_counter(m, "gp_x_total", "Things.", NULL);
    gp_metric *byc = gp_metrics_counter(m, "gp_req_total", "Requests by class.", "class");
    char *s = render(m);
    cr_assert(strstr(s, "# HELP gp_x_total Things.\n# TYPE gp_x_total counter\ngp_x_total 0\n"),
              "%s", s);
    cr_assert_null(strstr(s, "gp_req_total{"), "labelled series appear once used");
    free(s);
    gp_metric_inc(plain, NULL);
    gp_metric_add(plain, NULL, 2);
    gp_metric_add(plain, NULL, -5); /* ignored: counters only go up */
    gp_metric_inc(byc, "2xx");
    gp_metric_inc(byc, "2xx");
    gp_metric_add(byc, "5xx", 0);
    gp_metric_inc(byc, NULL); /* a labelled metric needs a value: ignored */
    s = render(m);
    cr_assert(strstr(s, "gp_x_total 3\n"), "%s", s);
    cr_assert(strstr(s, "gp_req_total{class=\"2xx\"} 2\n"), "%s", s);
    cr_assert(strstr(s, "gp_req_total{class=\"5xx\"} 0\n"), "%s", s);
    cr_assert_eq(gp_metric_value(byc, "2xx"), 2);
    cr_assert_eq(gp_metric_total(byc), 2);
    free(s);
    gp_metrics_free(m);
}

Test(metrics, gauge_and_escaping) {
    gp_metrics *m = gp_metrics_new();
    gp_metric *g = gp_metrics_gauge(m, "gp_g", "Help with \\ and\nnewline.", "k");
    gp_metric_set(g, "a\"b\\c\nd", 1.5);
    gp_metric_set(g, "z", -2);
    gp_metric_set(g, "z", 0.25);
    char *s = render(m);
    cr_assert(strstr(s, "# HELP gp_g Help with \\\\ and\\nnewline.\n"), "%s", s);
    cr_assert(strstr(s, "gp_g{k=\"a\\\"b\\\\c\\nd\"} 1.5\n"), "%s", s);
    cr_assert(strstr(s, "gp_g{k=\"z\"} 0.25\n"), "%s", s);
    free(s);
    gp_metrics_free(m);
}

Test(metrics, histogram_cumulative_buckets) {
    gp_metrics *m = gp_metrics_new();
    const double b[] = {0.001, 0.01, 0.1, 1};
    gp_metric *h = gp_metrics_histogram(m, "gp_d_seconds", "Durations.", b, 4);
    cr_assert_not_null(h);
    gp_metric_observe(h, 0.0005);
    gp_metric_observe(h, 0.001); /* le is inclusive */
    gp_metric_observe(h, 0.05);
    gp_metric_observe(h, 30);
    char *s = render(m);
    cr_assert(strstr(s, "# TYPE gp_d_seconds histogram\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_bucket{le=\"0.001\"} 2\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_bucket{le=\"0.01\"} 2\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_bucket{le=\"0.1\"} 3\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_bucket{le=\"1\"} 3\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_bucket{le=\"+Inf\"} 4\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_count 4\n"), "%s", s);
    cr_assert(strstr(s, "gp_d_seconds_sum 30.0515\n"), "%s", s);
    free(s);
    const double bad[] = {1, 1};
    cr_assert_null(gp_metrics_histogram(m, "x", "", bad, 2));
    gp_metrics_free(m);
}

Test(metrics, null_metric_is_harmless) {
    gp_metric_inc(NULL, "x");
    gp_metric_set(NULL, NULL, 1);
    gp_metric_observe(NULL, 1);
    cr_assert_eq(gp_metric_value(NULL, NULL), 0);
    gp_metrics_free(NULL);
}
