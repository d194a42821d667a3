/* metrics.c — the metrics registry and its Prometheus text rendering (format 0.0.4:
 * https://prometheus.io/docs/instrumenting/exposition_formats/). Pure: memory only.
 *
 * Values are doubles: counters stay exact up to 2^53, far beyond what a daemon counts, and
 * the text format is floating point anyway. */
#include "metrics.h"

#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

typedef struct series {
    char *label; /* NULL: the unlabelled series */
    double v;
} series;

struct gp_metric {
    struct gp_metric *next;
    enum kind kind;
    const char *name, *help, *label;
    series s[GP_METRICS_MAX_SERIES];
    size_t ns;
    /* histogram */
    double bounds[GP_METRICS_MAX_BUCKETS];
    unsigned long long buckets[GP_METRICS_MAX_BUCKETS + 1]; /* not cumulative; last: +Inf */
    size_t nb;
    double sum;
    unsigned long long count;
};

struct gp_metrics {
    gp_metric *head, *tail;
};

gp_metrics *gp_metrics_new(void) {
    return calloc(1, sizeof(gp_metrics));
}

void gp_metrics_free(gp_metrics *m) {
    if (!m)
        return;
    for (gp_metric *x = m->head, *n; x; x = n) {
        n = x->next;
        for (size_t i = 0; i < x->ns; i++)
            free(x->s[i].label);
        free(x);
    }
    free(m);
}

static gp_metric *declare(gp_metrics *m, enum kind k, const char *name, const char *help,
                          const char *label) {
    if (!m)
        return NULL;
    gp_metric *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->kind = k;
    x->name = name;
    x->help = help;
    x->label = label;
    if (!label && k != K_HISTOGRAM)
        x->ns = 1; /* the one unlabelled series, shown from the start */
    if (m->tail)
        m->tail->next = x;
    else
        m->head = x;
    m->tail = x;
    return x;
}

gp_metric *gp_metrics_counter(gp_metrics *m, const char *name, const char *help,
                              const char *label) {
    return declare(m, K_COUNTER, name, help, label);
}

gp_metric *gp_metrics_gauge(gp_metrics *m, const char *name, const char *help, const char *label) {
    return declare(m, K_GAUGE, name, help, label);
}

gp_metric *gp_metrics_histogram(gp_metrics *m, const char *name, const char *help,
                                const double *bounds, size_t n) {
    if (n == 0 || n > GP_METRICS_MAX_BUCKETS)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
            return NULL;
    gp_metric *x = declare(m, K_HISTOGRAM, name, help, NULL);
    if (x) {
        memcpy(x->bounds, bounds, n * sizeof *bounds);
        x->nb = n;
    }
    return x;
}

gp_metric *gp_metrics_duration(gp_metrics *m, const char *name, const char *help) {
    static const double b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                               0.5,   1,      2.5,   5,    10,    30,   60};
    return gp_metrics_histogram(m, name, help, b, sizeof b / sizeof b[0]);
}

/* The series for label_value (created when create is set), or NULL. */
static series *find(gp_metric *x, const char *label_value, int create) {
    if (!x->label)
        return x->ns ? &x->s[0] : NULL;
    if (!label_value)
        return NULL;
    for (size_t i = 0; i < x->ns; i++)
        if (strcmp(x->s[i].label, label_value) == 0)
            return &x->s[i];
    if (!create || x->ns >= GP_METRICS_MAX_SERIES)
        return NULL;
    char *l = strdup(label_value);
    if (!l)
        return NULL;
    x->s[x->ns].label = l;
    x->s[x->ns].v = 0;
    return &x->s[x->ns++];
}

void gp_metric_add(gp_metric *x, const char *label_value, double v) {
    if (!x || x->kind == K_HISTOGRAM || !(v >= 0))
        return;
    series *s = find(x, label_value, 1);
    if (s)
        s->v += v;
}

void gp_metric_inc(gp_metric *x, const char *label_value) {
    gp_metric_add(x, label_value, 1);
}

void gp_metric_set(gp_metric *x, const char *label_value, double v) {
    if (!x || x->kind != K_GAUGE || isnan(v))
        return;
    series *s = find(x, label_value, 1);
    if (s)
        s->v = v;
}

void gp_metric_observe(gp_metric *x, double v) {
    if (!x || x->kind != K_HISTOGRAM || isnan(v))
        return;
    size_t i = 0;
    while (i < x->nb && v > x->bounds[i])
        i++;
    x->buckets[i]++;
    x->sum += v;
    x->count++;
}

double gp_metric_value(const gp_metric *x, const char *label_value) {
    if (!x)
        return 0;
    if (x->kind == K_HISTOGRAM)
        return x->sum;
    series *s = find((gp_metric *)x, label_value, 0);
    return s ? s->v : 0;
}

double gp_metric_total(const gp_metric *x) {
    double t = 0;
    if (x && x->kind != K_HISTOGRAM)
        for (size_t i = 0; i < x->ns; i++)
            t += x->s[i].v;
    return t;
}

/* --- rendering ------------------------------------------------------------------------- */

typedef gp_buf buf;
#define put gp_buf_printf /* an allocation failure sticks (b->oom): checked once at the end */

/* Label values escape \, " and newline; help text escapes \ and newline (0.0.4). */
static void put_escaped(buf *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            put(b, "\\\\");
        else if (*s == '\n')
            put(b, "\\n");
        else if (quote && *s == '"')
            put(b, "\\\"");
        else
            put(b, "%c", *s);
    }
}

static void put_value(buf *b, double v) {
    if (isinf(v))
        put(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        put(b, "%.0f", v);
    else
        put(b, "%.9g", v);
}

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

char *gp_metrics_render(const gp_metrics *m, size_t *len) {
    buf b = {0};
    for (const gp_metric *x = m ? m->head : NULL; x; x = x->next) {
        put(&b, "# HELP %s ", x->name);
        put_escaped(&b, x->help ? x->help : "", 0);
        put(&b, "\n# TYPE %s %s\n", x->name, kind_names[x->kind]);
        if (x->kind == K_HISTOGRAM) {
            unsigned long long cum = 0;
            for (size_t i = 0; i <= x->nb; i++) {
                cum += x->buckets[i];
                put(&b, "%s_bucket{le=\"", x->name);
                put_value(&b, i < x->nb ? x->bounds[i] : INFINITY);
                put(&b, "\"} %llu\n", cum);
            }
            put(&b, "%s_sum ", x->name);
            put_value(&b, x->sum);
            put(&b, "\n%s_count %llu\n", x->name, x->count);
            continue;
        }
        for (size_t i = 0; i < x->ns; i++) {
            put(&b, "%s", x->name);
            if (x->s[i].label) {
                put(&b, "{%s=\"", x->label);
                put_escaped(&b, x->s[i].label, 1);
                put(&b, "\"}");
            }
            put(&b, " ");
            put_value(&b, x->s[i].v);
            put(&b, "\n");
        }
    }
    return gp_buf_take(&b, len);
}
