/* bench.h — the small shared part of the benchmarks under tests/bench (see README.md there):
 * result lines ("bench=<suite> case=<case> key=value ..." on stdout and appended to
 * $BENCH_RESULTS), QUICK mode, medians and percentiles, and per-process CPU time and peak RSS
 * read from /proc. Header only (each C file under tests/bench is a program of its own). Test-only.
 */
#ifndef GP_BENCH_H
#define GP_BENCH_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* 1 when QUICK=1 (or any value other than "" and "0") is in the environment. */
static inline int bench_quick(void) {
    const char *q = getenv("QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Prints "bench=<suite> case=<kase> <fmt...>" and a newline to stdout (flushed) and appends
 * the same line to $BENCH_RESULTS (default $BUILD/bench-results.txt, BUILD default "build").
 * fmt holds the key=value pairs, space-separated, without spaces inside. */
static inline void bench_result(const char *suite, const char *kase, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void bench_result(const char *suite, const char *kase, const char *fmt, ...) {
    char line[2048];
    int n = snprintf(line, sizeof line, "bench=%s case=%s ", suite, kase);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    printf("%s\n", line);
    fflush(stdout);
    char path[1024];
    const char *p = getenv("BENCH_RESULTS");
    if (!p || !*p) {
        const char *b = getenv("BUILD");
        snprintf(path, sizeof path, "%s/bench-results.txt", b && *b ? b : "build");
        p = path;
    }
    FILE *f = fopen(p, "a");
    if (f) {
        fprintf(f, "%s\n", line);
        fclose(f);
    } else {
        fprintf(stderr, "bench: cannot append to %s\n", p);
    }
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v). 0 when n is 0. */
static inline double bench_median(double *v, size_t n) {
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile p (0 < p <= 100) of sorted[0..n). 0 when n is 0. */
static inline double bench_pct(const double *sorted, size_t n, double p) {
    if (!n)
        return 0;
    double r = p / 100.0 * (double)n;
    size_t k = (size_t)r;
    if ((double)k < r)
        k++;
    if (k < 1)
        k = 1;
    return sorted[(k > n ? n : k) - 1];
}

/* CPU time (user + system, all threads) of process pid in microseconds, from
 * /proc/<pid>/stat (clock-tick resolution, usually 10 ms). -1 if it cannot be read. */
static inline long long bench_cpu_us(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (long long)((ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100));
}

/* A "Name:   value kB" line of /proc/<pid>/status (VmHWM, VmRSS, ...), in kB; -1 if absent. */
static inline long bench_status_kb(pid_t pid, const char *name) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
            v = strtol(line + nl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Peak resident set (VmHWM) of pid in kB, -1 if unknown. */
static inline long bench_hwm_kb(pid_t pid) {
    return bench_status_kb(pid, "VmHWM");
}

/* Resets pid's VmHWM to its current RSS (writes 5 to /proc/<pid>/clear_refs), so the next
 * bench_hwm_kb is the peak since now. 0, or -1 when not permitted (the peak then covers the
 * process's whole life). */
static inline int bench_reset_hwm(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

#endif
