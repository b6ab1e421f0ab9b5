/*
 * bench/bench_stream.c - STREAM-style copy, triad and read on arrays far
 * larger than the last-level cache: the machine's memory-bandwidth ceiling
 * that every memory-bound kernel is reported against.
 */
#include "common.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    double *a, *b, *c;
    size_t n;
    int threads;
    double sum;
} stream_arrays;

static void k_copy(void *p)
{
    stream_arrays *s = p;
    double *restrict c = s->c;
    const double *restrict a = s->a;
#pragma omp parallel for num_threads(s->threads) schedule(static)
    for (size_t i = 0; i < s->n; i++)
        c[i] = a[i];
}

static void k_triad(void *p)
{
    stream_arrays *s = p;
    double *restrict a = s->a;
    const double *restrict b = s->b, *restrict c = s->c;
#pragma omp parallel for num_threads(s->threads) schedule(static)
    for (size_t i = 0; i < s->n; i++)
        a[i] = b[i] + 3.0 * c[i];
}

static void k_read(void *p)
{
    stream_arrays *s = p;
    s->sum += bench_read_sum(s->a, s->n, s->threads);
}

static void report(const bench_opts *o, const char *kernel, int th, const char *size,
                   bench_timing t, double bytes)
{
    bench_bw bw = {bytes / t.median_s * 1e-9, -1.0, bytes / t.min_s * 1e-9};
    char extra[64];
    snprintf(extra, sizeof extra, "\"gbps_best\": %.3f", bw.gbps_best);
    bench_report(o, "stream", kernel, th, size, &t, &bw, extra);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    stream_arrays s = {0};
    s.n = o.quick ? (size_t)1 << 24 : (size_t)1 << 25; /* 128 or 256 MiB per array */
    s.a = aligned_alloc(64, s.n * sizeof(double));
    s.b = aligned_alloc(64, s.n * sizeof(double));
    s.c = aligned_alloc(64, s.n * sizeof(double));
    if (!s.a || !s.b || !s.c) {
        fprintf(stderr, "bench_stream: cannot allocate 3 x %zu MiB\n", s.n * 8 >> 20);
        return 4;
    }
    int maxthr = o.threads;
    for (int th = 1; th <= maxthr; th *= 2) {
        s.threads = th;
#pragma omp parallel for num_threads(th) schedule(static)
        for (size_t i = 0; i < s.n; i++) {
            s.a[i] = 1.0;
            s.b[i] = 2.0;
            s.c[i] = 0.5;
        }
        /* verify before timing: triad of (2, 0.5) is 3.5 everywhere */
        k_triad(&s);
        for (size_t i = 0; i < s.n; i += 4099)
            if (s.a[i] != 3.5) {
                fprintf(stderr, "bench_stream: triad check failed at %zu\n", i);
                return 1;
            }
        char size[64];
        snprintf(size, sizeof size, "%zu MiB/array", s.n * 8 >> 20);
        double bytes = (double)(s.n * sizeof(double));
        report(&o, "read", th, size, bench_time(k_read, &s, o.repeats), bytes);
        report(&o, "copy", th, size, bench_time(k_copy, &s, o.repeats), 2 * bytes);
        report(&o, "triad", th, size, bench_time(k_triad, &s, o.repeats), 3 * bytes);
        if (th < maxthr && th * 2 > maxthr)
            th = maxthr / 2; /* make the last step land on maxthr */
    }
    free(s.a);
    free(s.b);
    free(s.c);
    return s.sum == 42.0;
}
