/*
 * bench/common.h - what every benchmark program shares: the clock,
 * repeat-and-keep-statistics timing, the STREAM read ceiling measured in the
 * same run, the report line (human table or one JSON object per line with
 * --json), the roofline summary, peak memory and the machine description.
 */
#ifndef IMRT_BENCH_COMMON_H
#define IMRT_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int json;          /* --json: one JSON object per line */
    int quick;         /* --quick: fewer repeats, smaller sizes */
    int repeats;       /* timed repeats after one warm-up */
    int threads;       /* most threads for the run (--threads N; default: OpenMP's) */
    int synthetic;     /* --synthetic: a generated dij instead of the phantom's */
    const char *arg;   /* first positional argument (e.g. a MAT file), may be NULL */
    const char *prog;  /* program name for messages */
} bench_opts;

typedef struct {
    double median_s, min_s, max_s; /* over the timed repeats */
    int repeats;
    double other_cpu; /* cores kept busy by other processes during the repeats
                         (from /proc/stat), < 0 when unknown */
    double cpu_s;     /* median CPU time of this process per repeat (all threads; spin
                         waits included), < 0 when not measured. On a shared machine the
                         one-thread CPU time is the kernel's cost without preemption. */
} bench_timing;

/* CPU-load snapshot: lets a program say how busy the machine was with other
 * work while it measured (the machine may be shared). */
typedef struct {
    double busy_s; /* all CPUs' busy time since boot, s */
    double self_s; /* this process's CPU time, s */
    double wall_s; /* monotonic clock, s */
} bench_cpu_snap;

void bench_cpu_snap_take(bench_cpu_snap *s);
/* Cores busy with other processes between two snapshots (>= 0; -1 unknown). */
double bench_cpu_other(const bench_cpu_snap *a, const bench_cpu_snap *b);

/* The STREAM read figure a program's bandwidths are compared with. The
 * array is kept so that kernels can be timed in pairs with a STREAM read
 * (bench_time_paired): on a machine shared with other jobs, both see the
 * same load. */
typedef struct {
    int threads;
    double *a;        /* the array (n doubles), owned */
    size_t n;
    double sink;
    bench_timing t;   /* one read of the array */
    double bytes;     /* bytes per read */
    double gbps;      /* at the median time, 1e9 bytes/s */
    double gbps_best; /* at the best time */
} bench_stream;

/* A measured bandwidth: the kernel's GB/s and its % of STREAM read. */
typedef struct {
    double gbps;       /* bytes / median time */
    double pct;        /* median over repeats of (kernel GB/s) / (STREAM GB/s of the read
                          just before it), %; < 0 when not measured */
    double gbps_best;  /* bytes / best time */
} bench_bw;

/* Parse --json, --quick, --synthetic, --repeats N, --threads N and one
 * positional argument; exits with 2 on anything else. */
void bench_parse(int argc, char **argv, bench_opts *o);

/* Wall clock in seconds. */
double bench_now(void);

/* CPU time of this process (all threads) in seconds. */
double bench_cpu_now(void);

/* Run fn(arg) once to warm up, then `repeats` times; statistics of the timed runs. */
bench_timing bench_time(void (*fn)(void *), void *arg, int repeats);

/* A single measurement as a timing (one repeat). */
bench_timing bench_once(double seconds);

/* Statistics of n samples (sorted in place). */
bench_timing bench_stats(double *s, int n);

/* STREAM-style read (sum of a 256 MiB double array, much larger than the
 * last-level cache) with `threads` threads: median/min/max of a few
 * repeats. Reports the line (kernel "stream_read") under `bench` with the
 * machine and load in it, so that every program's output says what its
 * percentages refer to. Keeps the array for bench_time_paired. */
void bench_stream_measure(const bench_opts *o, const char *bench, int threads, bench_stream *s);
void bench_stream_free(bench_stream *s);

/* The STREAM read kernel: sum of a[0..n-1] with `threads` threads, eight
 * independent partial sums per thread so that the add latency never limits
 * the read (a single accumulator chain caps one core below its memory
 * bandwidth). */
double bench_read_sum(const double *a, size_t n, int threads);

/* Time fn(arg) like bench_time, each repeat right after one STREAM read of
 * s; bw (may be NULL) gets the kernel's bandwidth for `bytes` per call. */
bench_timing bench_time_paired(void (*fn)(void *), void *arg, int repeats, bench_stream *s,
                               double bytes, bench_bw *bw);

/* Print one result line. A NULL bw leaves out the bandwidth fields
 * (gbps, pct_stream when bw->pct >= 0). `extra` is a preformatted JSON
 * fragment (e.g. "\"nnz\": 123") or NULL. */
void bench_report(const bench_opts *o, const char *bench, const char *kernel, int threads,
                  const char *size, const bench_timing *t, const bench_bw *bw,
                  const char *extra);

/* Roofline summary line of a memory-bound kernel: achieved GB/s over the
 * STREAM read GB/s (paired median, and best over best), what bounds it. */
void bench_roofline(const bench_opts *o, const char *bench, const char *kernel, int threads,
                    const char *size, const bench_timing *t, const bench_bw *bw,
                    const bench_stream *stream, const char *limit);

/* A free-form comment line (human mode only; JSON output stays pure). */
void bench_note(const bench_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Peak resident memory of the process so far (getrusage maxrss), bytes. */
double bench_peak_rss(void);

/* Current resident memory (from /proc/self/statm), bytes; 0 if unknown. */
double bench_current_rss(void);

/* One-minute load average (0 if unknown). */
double bench_load1(void);

/* Abort the program with a message (exit 1) when a check fails. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Largest |a - b| over the largest |b| (0 when both vanish). */
double bench_rel_diff(const double *a, const double *b, size_t n);

/* Thread counts 1, 2, 4, ... up to and including max. Returns how many. */
int bench_thread_list(int max, int *list, int cap);

#endif /* IMRT_BENCH_COMMON_H */
