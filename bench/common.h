/*
 * bench/common.h - what every benchmark program shares: the clock,
 * repeat-and-keep-statistics timing, the STREAM read ceiling, and the
 * report line (human table or one JSON object per line with --json).
 */
#ifndef IMRT_BENCH_COMMON_H
#define IMRT_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int json;          /* --json: one JSON object per line */
    int quick;         /* --quick: fewer repeats, smaller sizes */
    int repeats;       /* timed repeats after one warm-up */
    int threads;       /* threads for the run (0 = OpenMP default) */
    const char *arg;   /* first positional argument (e.g. a MAT file), may be NULL */
} bench_opts;

typedef struct {
    double median_s, min_s, max_s; /* over the timed repeats */
    int repeats;
} bench_timing;

/* Parse --json, --quick, --repeats N, --threads N and one positional argument. */
void bench_parse(int argc, char **argv, bench_opts *o);

/* Wall clock in seconds. */
double bench_now(void);

/* Run fn(arg) once to warm up, then `repeats` times; statistics of the timed runs. */
bench_timing bench_time(void (*fn)(void *), void *arg, int repeats);

/* STREAM-style read bandwidth (GB/s, 1e9 bytes) with `threads` threads on
 * arrays much larger than the last-level cache; best of a few repeats. */
double bench_stream_read_gbps(int threads);

/* Print one result line. gbps <= 0 leaves out the bandwidth fields;
 * stream_gbps <= 0 leaves out pct_stream. `extra` is a preformatted
 * JSON fragment (e.g. "\"nnz\": 123") or NULL. */
void bench_report(const bench_opts *o, const char *bench, const char *kernel, int threads,
                  const char *size, const bench_timing *t, double gbps, double stream_gbps,
                  const char *extra);

#endif /* IMRT_BENCH_COMMON_H */
