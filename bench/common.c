/*
 * bench/common.c - timing, statistics, STREAM read ceiling, report and
 * roofline lines, peak memory and machine description shared by the
 * benchmark programs.
 */
#include "common.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void bench_parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->repeats = 7;
    o->prog = argv[0];
    const char *slash = strrchr(argv[0], '/');
    if (slash)
        o->prog = slash + 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            o->json = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            o->quick = 1;
        else if (strcmp(argv[i], "--synthetic") == 0)
            o->synthetic = 1;
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
            o->repeats = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o->threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !o->arg)
            o->arg = argv[i];
        else {
            fprintf(stderr,
                    "%s: unknown argument '%s' (allowed: --json --quick --synthetic "
                    "--repeats N --threads N [FILE])\n",
                    o->prog, argv[i]);
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

double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_cpu_snap_take(bench_cpu_snap *s)
{
    s->busy_s = -1.0;
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[8] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            const double hz = (double)sysconf(_SC_CLK_TCK);
            s->busy_s = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
        }
        fclose(f);
    }
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    s->self_s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    s->wall_s = bench_now();
}

double bench_cpu_other(const bench_cpu_snap *a, const bench_cpu_snap *b)
{
    const double dt = b->wall_s - a->wall_s;
    if (a->busy_s < 0 || b->busy_s < 0 || dt < 0.05)
        return -1.0;
    const double o = ((b->busy_s - a->busy_s) - (b->self_s - a->self_s)) / dt;
    return o > 0 ? o : 0.0;
}

bench_timing bench_once(double seconds)
{
    bench_timing t = {seconds, seconds, seconds, 1, -1.0, -1.0};
    return t;
}

bench_timing bench_stats(double *s, int n)
{
    bench_timing t = {0, 0, 0, n, -1.0, -1.0};
    if (n < 1)
        return t;
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    t.min_s = s[0];
    t.max_s = s[n - 1];
    t.median_s = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    return t;
}

bench_timing bench_time(void (*fn)(void *), void *arg, int repeats)
{
    double *s = malloc(2 * (size_t)repeats * sizeof *s);
    if (!s)
        bench_fail("bench: out of memory");
    double *cpu = s + repeats;
    fn(arg); /* warm-up */
    bench_cpu_snap c0, c1;
    bench_cpu_snap_take(&c0);
    for (int r = 0; r < repeats; r++) {
        const double u0 = bench_cpu_now(), t0 = bench_now();
        fn(arg);
        s[r] = bench_now() - t0;
        cpu[r] = bench_cpu_now() - u0;
    }
    bench_cpu_snap_take(&c1);
    bench_timing t = bench_stats(s, repeats);
    t.other_cpu = bench_cpu_other(&c0, &c1);
    t.cpu_s = bench_stats(cpu, repeats).median_s;
    free(s);
    return t;
}

double bench_read_sum(const double *a, size_t n, int threads)
{
    double sum = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
        const size_t id = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        const size_t i0 = n * id / nt, i1 = n * (id + 1) / nt;
        const double *restrict p = a;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        size_t i = i0;
        for (; i + 8 <= i1; i += 8) {
            s0 += p[i];
            s1 += p[i + 1];
            s2 += p[i + 2];
            s3 += p[i + 3];
            s4 += p[i + 4];
            s5 += p[i + 5];
            s6 += p[i + 6];
            s7 += p[i + 7];
        }
        for (; i < i1; i++)
            s0 += p[i];
        sum += ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    }
    return sum;
}

static double stream_read_once(bench_stream *s)
{
    const double t0 = bench_now();
    const double sum = bench_read_sum(s->a, s->n, s->threads);
    const double dt = bench_now() - t0;
    s->sink += sum;
    return dt;
}

/* First line of /proc/cpuinfo's "model name", or "unknown". */
static void cpu_name(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ')
                    c++;
                snprintf(buf, n, "%s", c);
                buf[strcspn(buf, "\n\"\\")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

static const char *arch_flags(void)
{
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__SSE4_2__)
    return "x86-64-v2";
#elif defined(__SSE2__)
    return "sse2";
#else
    return "generic";
#endif
}

void bench_stream_measure(const bench_opts *o, const char *bench, int threads, bench_stream *s)
{
    memset(s, 0, sizeof *s);
    s->threads = threads;
    s->n = (size_t)1 << 25; /* 256 MiB: 8x the last-level cache of current servers */
    s->a = aligned_alloc(64, s->n * sizeof *s->a);
    if (!s->a)
        bench_fail("%s: cannot allocate %zu MiB for the STREAM read", o->prog, s->n * 8 >> 20);
    double *a = s->a;
    const size_t n = s->n;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = (double)(i & 1023) * 1e-3;
    const int reps = o->quick ? 5 : 11;
    double tt[16];
    stream_read_once(s); /* warm-up */
    bench_cpu_snap c0, c1;
    bench_cpu_snap_take(&c0);
    for (int r = 0; r < reps; r++)
        tt[r] = stream_read_once(s);
    bench_cpu_snap_take(&c1);
    s->t = bench_stats(tt, reps);
    s->t.other_cpu = bench_cpu_other(&c0, &c1);
    s->bytes = (double)(n * sizeof(double));
    s->gbps = s->bytes / s->t.median_s * 1e-9;
    s->gbps_best = s->bytes / s->t.min_s * 1e-9;
    char cpu[128], size[64], extra[512];
    cpu_name(cpu, sizeof cpu);
    snprintf(size, sizeof size, "%zu MiB", n * 8 >> 20);
    snprintf(extra, sizeof extra,
             "\"gbps_best\": %.3f, \"cpu\": \"%s\", \"cores\": %ld, \"arch\": \"%s\", "
             "\"load1\": %.2f",
             s->gbps_best, cpu, sysconf(_SC_NPROCESSORS_ONLN), arch_flags(), bench_load1());
    bench_bw bw = {s->gbps, -1.0, s->gbps_best};
    bench_report(o, bench, "stream_read", threads, size, &s->t, &bw, extra);
}

void bench_stream_free(bench_stream *s)
{
    if (s->sink == 42.0) /* keep the sums alive */
        fprintf(stderr, " ");
    free(s->a);
    s->a = NULL;
}

bench_timing bench_time_paired(void (*fn)(void *), void *arg, int repeats, bench_stream *s,
                               double bytes, bench_bw *bw)
{
    double *t = malloc(3 * (size_t)repeats * sizeof *t);
    if (!t)
        bench_fail("bench: out of memory");
    double *ratio = t + repeats, *cpu = t + 2 * (size_t)repeats;
    fn(arg); /* warm-up */
    bench_cpu_snap c0, c1;
    bench_cpu_snap_take(&c0);
    for (int r = 0; r < repeats; r++) {
        const double ts = stream_read_once(s);
        const double u0 = bench_cpu_now(), t0 = bench_now();
        fn(arg);
        t[r] = bench_now() - t0;
        cpu[r] = bench_cpu_now() - u0;
        ratio[r] = (bytes / t[r]) / (s->bytes / ts);
    }
    bench_cpu_snap_take(&c1);
    bench_timing st = bench_stats(t, repeats);
    st.other_cpu = bench_cpu_other(&c0, &c1);
    st.cpu_s = bench_stats(cpu, repeats).median_s;
    bench_timing rt = bench_stats(ratio, repeats);
    if (bw) {
        bw->gbps = bytes / st.median_s * 1e-9;
        bw->gbps_best = bytes / st.min_s * 1e-9;
        bw->pct = 100.0 * rt.median_s;
    }
    free(t);
    return st;
}

void bench_report(const bench_opts *o, const char *bench, const char *kernel, int threads,
                  const char *size, const bench_timing *t, const bench_bw *bw,
                  const char *extra)
{
    if (o->json) {
        printf("{\"bench\": \"%s\", \"kernel\": \"%s\", \"threads\": %d, \"size\": \"%s\", "
               "\"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g, \"repeats\": %d",
               bench, kernel, threads, size, t->median_s, t->min_s, t->max_s, t->repeats);
        if (bw && bw->gbps > 0) {
            printf(", \"gbps\": %.3f", bw->gbps);
            if (bw->pct >= 0)
                printf(", \"pct_stream\": %.1f", bw->pct);
        }
        if (t->cpu_s >= 0)
            printf(", \"cpu_s\": %.6g", t->cpu_s);
        if (t->other_cpu >= 0)
            printf(", \"other_cpu\": %.2f", t->other_cpu);
        if (extra && *extra)
            printf(", %s", extra);
        printf("}\n");
    } else {
        printf("%-9s %-28s %2d thr  %-22s %9.4f s [%8.4f, %8.4f]", bench, kernel, threads, size,
               t->median_s, t->min_s, t->max_s);
        if (bw && bw->gbps > 0) {
            printf(" %6.2f GB/s", bw->gbps);
            if (bw->pct >= 0)
                printf(" %5.1f %%STREAM", bw->pct);
        }
        if (t->cpu_s >= 0)
            printf("  cpu %.4f s", t->cpu_s);
        if (t->other_cpu >= 0)
            printf("  other %.1f", t->other_cpu);
        if (extra && *extra)
            printf("  {%s}", extra);
        printf("\n");
    }
    fflush(stdout);
}

void bench_roofline(const bench_opts *o, const char *bench, const char *kernel, int threads,
                    const char *size, const bench_timing *t, const bench_bw *bw,
                    const bench_stream *stream, const char *limit)
{
    const double pctb = 100.0 * bw->gbps_best / stream->gbps_best;
    if (o->json) {
        char extra[512];
        snprintf(extra, sizeof extra,
                 "\"roofline\": true, \"stream_gbps\": %.3f, \"gbps_best\": %.3f, "
                 "\"stream_gbps_best\": %.3f, \"pct_stream_best\": %.1f, \"limit\": \"%s\"",
                 stream->gbps, bw->gbps_best, stream->gbps_best, pctb, limit ? limit : "");
        bench_report(o, bench, kernel, threads, size, t, bw, extra);
    } else {
        printf("roofline  %-9s %-28s %2d thr  %6.2f GB/s = %5.1f %% of STREAM read (paired "
               "median); best %6.2f of %6.2f GB/s = %5.1f %%;  %s\n",
               bench, kernel, threads, bw->gbps, bw->pct, bw->gbps_best, stream->gbps_best, pctb,
               limit ? limit : "");
        fflush(stdout);
    }
}

void bench_note(const bench_opts *o, const char *fmt, ...)
{
    if (o->json)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

double bench_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
}

double bench_current_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0.0;
    long size = 0, res = 0;
    int ok = fscanf(f, "%ld %ld", &size, &res) == 2;
    fclose(f);
    return ok ? (double)res * (double)sysconf(_SC_PAGESIZE) : 0.0;
}

double bench_load1(void)
{
    double l = 0.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return 0.0;
    if (fscanf(f, "%lf", &l) != 1)
        l = 0.0;
    fclose(f);
    return l;
}

void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

double bench_rel_diff(const double *a, const double *b, size_t n)
{
    double dmax = 0.0, bmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        dmax = fmax(dmax, fabs(a[i] - b[i]));
        bmax = fmax(bmax, fabs(b[i]));
    }
    return bmax > 0.0 ? dmax / bmax : dmax;
}

int bench_thread_list(int max, int *list, int cap)
{
    int n = 0;
    for (int t = 1; t < max && n < cap - 1; t *= 2)
        list[n++] = t;
    if (n < cap)
        list[n++] = max;
    return n;
}
