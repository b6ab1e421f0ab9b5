/*
 * bench/bench_plan.c - planning end to end, with the time of every stage:
 * read the spec (build or import the phantom), beams and dose grid, dij,
 * objective set, starting point, optimisation, dose, normalisation and
 * goals. Two cases: the default phantom (TG-119 C-shape) and matRad's box
 * phantom with the peer's settings (bench/boxphantom.json; the MAT file's
 * path is the positional argument, default ../shared/data/BOXPHANTOM.mat).
 *
 * Each run is a child process, so that its peak resident memory
 * (getrusage maxrss of the child) is the run's own; the figures are the
 * median, min and max over the runs. IMRT_BENCH_CASES=tg119 or =box runs
 * one case only. --quick: one run of the default phantom on a 5 mm dose
 * grid with at most 30 iterations.
 */
#define _DEFAULT_SOURCE /* wait4 */
#include "case.h"
#include "common.h"
#include "stages.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <limits.h>
#include <unistd.h>

enum { S_SPEC, S_SETUP, S_DIJ, S_OBJ, S_START, S_OPT, S_DOSE, S_METRICS, S_TOTAL, NSTAGE };
static const char *stage_name[NSTAGE] = {"spec+phantom", "beams+dose_grid", "dij",
                                         "objectives",   "start",           "optimize",
                                         "dose",         "norm+goals",      "total"};

#define MAXG 8
typedef struct {
    double t[NSTAGE];
    double rss_dij, rss_opt;
    int iterations, evaluations;
    long long nrows, nnz;
    int ncols;
    double dij_mb;
    int ngoals;
    char gname[MAXG][96];
    double gval[MAXG];
    int gpass[MAXG];
    double peak_rss; /* filled by the parent from wait4 */
} run_result;

static void child(const bench_opts *o, const char *spec, const char *mat, double spacing, int fd)
{
    run_result rr;
    memset(&rr, 0, sizeof rr);
    const double t0 = bench_now();
    bench_case c;
    bench_case_spec(o, spec, mat, spacing, &c);
    bench_plan_result r;
    bench_plan_run(o, &c, &r);
    rr.t[S_TOTAL] = bench_now() - t0;
    rr.t[S_SPEC] = c.spec_s;
    rr.t[S_SETUP] = c.setup_s;
    rr.t[S_DIJ] = c.build_s;
    rr.t[S_OBJ] = r.objectives_s;
    rr.t[S_START] = r.start_s;
    rr.t[S_OPT] = r.optimize_s;
    rr.t[S_DOSE] = r.dose_s;
    rr.t[S_METRICS] = r.metrics_s;
    rr.rss_dij = c.rss_dij;
    rr.rss_opt = r.rss_optimize;
    rr.iterations = r.stats.iterations;
    rr.evaluations = r.stats.evaluations;
    rr.nrows = (long long)c.dij->nrows;
    rr.ncols = (int)c.dij->ncols;
    rr.nnz = (long long)c.dij->nnz;
    rr.dij_mb = (double)imrt_dij_bytes(c.dij->nrows, c.dij->ncols, c.dij->nnz, c.dij->nbeams) *
                1e-6;
    for (int g = 0; g < r.ngoals && rr.ngoals < MAXG; g++) {
        const int k = rr.ngoals++;
        snprintf(rr.gname[k], sizeof rr.gname[k], "%s_%s", r.goal[g].structure,
                 r.goal[g].metric);
        for (int q = 0; q < k; q++)
            if (strcmp(rr.gname[q], rr.gname[k]) == 0) {
                const size_t len = strlen(rr.gname[k]);
                snprintf(rr.gname[k] + len, sizeof rr.gname[k] - len, "_%d", k);
            }
        rr.gval[k] = r.achieved[g];
        rr.gpass[k] = r.pass[g];
    }
    bench_plan_result_free(&r);
    bench_case_free(&c);
    if (write(fd, &rr, sizeof rr) != (ssize_t)sizeof rr)
        _exit(1);
    _exit(0);
}

/* Run one case `runs` times in child processes and report. */
static void run_case(const bench_opts *o, const char *label, const char *spec, const char *mat,
                     double spacing, int runs)
{
    run_result rr[16];
    int n = 0;
    for (int i = 0; i < runs && i < 16; i++) {
        int fds[2];
        if (pipe(fds) != 0)
            bench_fail("%s: pipe failed", o->prog);
        fflush(stdout);
        fflush(stderr);
        const pid_t pid = fork();
        if (pid < 0)
            bench_fail("%s: fork failed", o->prog);
        if (pid == 0) {
            close(fds[0]);
            child(o, spec, mat, spacing, fds[1]);
        }
        close(fds[1]);
        run_result r;
        const ssize_t got = read(fds[0], &r, sizeof r);
        close(fds[0]);
        int status = 0;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            got != (ssize_t)sizeof r)
            bench_fail("%s: the %s run failed", o->prog, label);
        r.peak_rss = (double)ru.ru_maxrss * 1024.0;
        rr[n++] = r;
    }
    char size[160];
    snprintf(size, sizeof size, "%s", label);
    double s[16];
    for (int st = 0; st < NSTAGE; st++) {
        for (int i = 0; i < n; i++)
            s[i] = rr[i].t[st];
        bench_timing t = bench_stats(s, n);
        char extra[1024] = "";
        if (st == S_DIJ) {
            for (int i = 0; i < n; i++)
                s[i] = rr[i].rss_dij;
            snprintf(extra, sizeof extra,
                     "\"nrows\": %lld, \"ncols\": %d, \"nnz\": %lld, \"dij_mb\": %.1f, "
                     "\"peak_rss_mb_after\": %.1f",
                     rr[0].nrows, rr[0].ncols, rr[0].nnz, rr[0].dij_mb,
                     bench_stats(s, n).median_s * 1e-6);
        } else if (st == S_OPT) {
            for (int i = 0; i < n; i++)
                s[i] = rr[i].rss_opt;
            snprintf(extra, sizeof extra,
                     "\"iterations\": %d, \"evaluations\": %d, \"peak_rss_mb_after\": %.1f",
                     rr[0].iterations, rr[0].evaluations, bench_stats(s, n).median_s * 1e-6);
        } else if (st == S_TOTAL) {
            for (int i = 0; i < n; i++)
                s[i] = rr[i].peak_rss;
            const bench_timing m = bench_stats(s, n);
            int at = snprintf(extra, sizeof extra,
                              "\"peak_rss_mb\": %.1f, \"peak_rss_mb_min\": %.1f, "
                              "\"peak_rss_mb_max\": %.1f",
                              m.median_s * 1e-6, m.min_s * 1e-6, m.max_s * 1e-6);
            for (int g = 0; g < rr[0].ngoals && at < (int)sizeof extra - 100; g++) {
                for (int i = 0; i < n; i++)
                    s[i] = rr[i].gval[g];
                const bench_timing gv = bench_stats(s, n);
                at += snprintf(extra + at, sizeof extra - (size_t)at,
                               ", \"%s\": %.3f, \"%s_pass\": %d", rr[0].gname[g], gv.median_s,
                               rr[0].gname[g], rr[0].gpass[g]);
            }
        }
        bench_report(o, "plan", stage_name[st], o->threads, size, &t, NULL, extra);
    }
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    const int runs = o.quick ? 1 : 3;
    bench_note(&o, "end to end, %d thread(s), %d run(s) per case, each in its own process; "
                   "load average %.2f",
               o.threads, runs, bench_load1());
    const char *only = getenv("IMRT_BENCH_CASES"); /* "tg119" or "box": one case only */
    if (!only || strcmp(only, "box") != 0)
        run_case(&o, o.quick ? "tg119_cshape 5mm" : "tg119_cshape", bench_default_spec(), NULL,
                 o.quick ? 5.0 : 0.0, runs);
    if ((only && strcmp(only, "tg119") == 0) || (o.quick && !only)) {
        bench_note(&o, "box phantom: not in --quick (IMRT_BENCH_CASES=box runs it)");
        return 0;
    }
    char abs[4096];
    if (!bench_box_mat(&o, abs, sizeof abs)) {
        bench_note(&o, "box phantom skipped: its MAT file (%s) is not readable",
                   o.arg ? o.arg : "../shared/data/BOXPHANTOM.mat");
        return 0;
    }
    run_case(&o, "boxphantom (matRad settings)", BENCH_BOX_SPEC, abs, 0.0, runs);
    return 0;
}
