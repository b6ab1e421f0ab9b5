/*
 * bench/common.c - timing, statistics, STREAM read ceiling and report
 * lines shared by the benchmark programs.
 */
#include "common.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bench_parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->repeats = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            o->json = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            o->quick = 1;
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
            o->repeats = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o->threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !o->arg)
            o->arg = argv[i];
        else {
            fprintf(stderr, "%s: unknown argument '%s' (allowed: --json --quick --repeats N "
                            "--threads N [FILE])\n", argv[0], argv[i]);
            exit(2);
        }
    }
    if (o->quick && o->repeats > 3)
        o->repeats = 3;
    if (o->repeats < 1)
        o->repeats = 1;
    if (o->threads <= 0)
        o->threads = omp_get_max_threads();
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bench_timing bench_time(void (*fn)(void *), void *arg, int repeats)
{
    bench_timing t = {0, 0, 0, repeats};
    double *s = malloc((size_t)repeats * sizeof *s);
    if (!s) {
        fprintf(stderr, "bench: out of memory\n");
        exit(4);
    }
    fn(arg); /* warm-up */
    for (int r = 0; r < repeats; r++) {
        double t0 = bench_now();
        fn(arg);
        s[r] = bench_now() - t0;
    }
    qsort(s, (size_t)repeats, sizeof *s, cmp_double);
    t.min_s = s[0];
    t.max_s = s[repeats - 1];
    t.median_s = repeats % 2 ? s[repeats / 2] : 0.5 * (s[repeats / 2 - 1] + s[repeats / 2]);
    free(s);
    return t;
}

double bench_stream_read_gbps(int threads)
{
    const size_t n = (size_t)1 << 26; /* 64 Mi doubles = 512 MiB */
    double *a = aligned_alloc(64, n * sizeof *a);
    if (!a)
        return 0.0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = (double)(i & 1023) * 1e-3;
    double best = 1e30, sink = 0.0;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now(), sum = 0.0;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; i++)
            sum += a[i];
        double dt = bench_now() - t0;
        sink += sum;
        if (dt < best)
            best = dt;
    }
    free(a);
    if (sink == 42.0) /* keep the sum alive */
        fprintf(stderr, " ");
    return (double)(n * sizeof(double)) / best * 1e-9;
}

void bench_report(const bench_opts *o, const char *bench, const char *kernel, int threads,
                  const char *size, const bench_timing *t, double gbps, double stream_gbps,
                  const char *extra)
{
    if (o->json) {
        printf("{\"bench\": \"%s\", \"kernel\": \"%s\", \"threads\": %d, \"size\": \"%s\", "
               "\"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g, \"repeats\": %d",
               bench, kernel, threads, size, t->median_s, t->min_s, t->max_s, t->repeats);
        if (gbps > 0) {
            printf(", \"gbps\": %.3f", gbps);
            if (stream_gbps > 0)
                printf(", \"pct_stream\": %.1f", 100.0 * gbps / stream_gbps);
        }
        if (extra && *extra)
            printf(", %s", extra);
        printf("}\n");
    } else {
        printf("%-10s %-24s %2d thr  %-28s median %9.4f s  [%8.4f, %8.4f]", bench, kernel,
               threads, size, t->median_s, t->min_s, t->max_s);
        if (gbps > 0) {
            printf("  %7.2f GB/s", gbps);
            if (stream_gbps > 0)
                printf("  %5.1f %% of STREAM", 100.0 * gbps / stream_gbps);
        }
        if (extra && *extra)
            printf("  {%s}", extra);
        printf("\n");
    }
    fflush(stdout);
}
