/*
 * bench/bench_plan.c - planning end to end through the pipeline of
 * `imrt plan` (imrt/pipeline.h), with the time of every stage: load (spec,
 * phantom or matRad import, dose grid, beams), dij, optimisation (with the
 * dose, normalisation and goals), the conformal baseline, and writing the
 * output folder (to a temporary folder that is removed). Three cases: the
 * default phantom (TG-119 C-shape); matRad's box phantom with the peer's
 * settings (bench/boxphantom.json: its 50 mm lateral cut-off, a stopping
 * rule no looser than its IPOPT's; the MAT file's path is the positional
 * argument, default ../shared/data/BOXPHANTOM.mat); and the same box plan
 * with imrt's full scatter and default tolerance.
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

#include "imrt/metrics.h"
#include "imrt/pipeline.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <limits.h>
#include <unistd.h>

enum { S_LOAD, S_DIJ, S_OPT, S_CORE, S_CRT, S_WRITE, S_TOTAL, NSTAGE };
static const char *stage_name[NSTAGE] = {
    "load (spec, phantom, dose grid, beams)", "dij", "optimise (+dose, norm, goals)",
    "total to the optimised dose", "conformal baseline", "write output folder", "total"};

#define MAXG 8
typedef struct {
    double t[NSTAGE];
    double rss_dij, rss_opt;
    int iterations, evaluations, hessian_products;
    char stop[32], method[16];
    long long nrows, nnz;
    int ncols;
    double dij_mb;
    int ngoals;
    char gname[MAXG][96];
    double gval[MAXG];
    int gpass[MAXG];
    double peak_rss; /* filled by the parent from wait4 */
} run_result;

static void must(imrt_status st, const char *what)
{
    if (st != IMRT_OK)
        bench_fail("bench_plan: %s: %s", what, imrt_last_error());
}

/* A spec to give imrt_run_load: the spec itself, or (mat != NULL) a
 * temporary copy whose phantom.file is mat. Returns 1 when tmp was made. */
static int spec_with_mat(const char *spec, const char *mat, char *tmp, size_t n)
{
    if (!mat) {
        snprintf(tmp, n, "%s", spec);
        return 0;
    }
    json_error_t err;
    json_t *root = json_load_file(spec, 0, &err);
    json_t *ph = root ? json_object_get(root, "phantom") : NULL;
    if (!ph || json_object_set_new(ph, "file", json_string(mat)) != 0)
        bench_fail("bench_plan: %s: cannot set phantom.file", spec);
    snprintf(tmp, n, "/tmp/imrt_bench_spec_XXXXXX");
    const int fd = mkstemp(tmp);
    if (fd < 0 || json_dumpfd(root, fd, JSON_INDENT(1)) != 0)
        bench_fail("bench_plan: cannot write a temporary spec");
    close(fd);
    json_decref(root);
    return 1;
}

/* full: the spec with imrt's own dose model and stopping rule (no lateral
 * cut-off, the default ftol_rel) instead of the peer's settings. */
static void child(const bench_opts *o, const char *spec, const char *mat, double spacing, int full,
                  int fd)
{
    run_result rr;
    memset(&rr, 0, sizeof rr);
    char path[4096], dir[64];
    const int tmp = spec_with_mat(spec, mat, path, sizeof path);
    imrt_context *ctx = NULL;
    must(imrt_context_create(&ctx), "context");
    must(imrt_context_set_threads(ctx, o->threads), "threads");
    imrt_run_options ro;
    imrt_run_options_default(&ro);
    ro.grid_mm = spacing;
    imrt_run *run = NULL;
    const double t0 = bench_now();
    must(imrt_run_load(path, &ro, &run), "load");
    if (full) {
        imrt_optimize_options def;
        imrt_optimize_options_default(&def);
        run->plan->lateral_cutoff_mm = 0.0;
        run->plan->solver.ftol_rel = def.solver.ftol_rel;
    }
    if (o->quick && run->plan->solver.max_iterations > BENCH_QUICK_ITERATIONS)
        run->plan->solver.max_iterations = BENCH_QUICK_ITERATIONS;
    const double t1 = bench_now();
    must(imrt_run_dij(ctx, run), "dij");
    const double t2 = bench_now();
    rr.rss_dij = bench_peak_rss();
    must(imrt_run_optimise(ctx, run), "optimise");
    const double t3 = bench_now();
    rr.rss_opt = bench_peak_rss();
    must(imrt_run_conformal(ctx, run), "conformal");
    const double t4 = bench_now();
    snprintf(dir, sizeof dir, "/tmp/imrt_bench_plan_XXXXXX");
    if (!mkdtemp(dir))
        bench_fail("bench_plan: cannot make a temporary folder");
    char out[128];
    snprintf(out, sizeof out, "%s/out", dir);
    must(imrt_run_write(run, out, 0), "write");
    const double t5 = bench_now();
    rr.t[S_LOAD] = t1 - t0;
    rr.t[S_DIJ] = t2 - t1;
    rr.t[S_OPT] = t3 - t2;
    rr.t[S_CORE] = t3 - t0;
    rr.t[S_CRT] = t4 - t3;
    rr.t[S_WRITE] = t5 - t4;
    rr.t[S_TOTAL] = t5 - t0;
    rr.iterations = run->stats.iterations;
    rr.evaluations = run->stats.evaluations;
    rr.hessian_products = run->stats.hessian_products;
    snprintf(rr.method, sizeof rr.method, "%s", imrt_method_name(run->stats.method));
    snprintf(rr.stop, sizeof rr.stop, "%s", imrt_stop_reason_name(run->stats.stop));
    const imrt_dij *D = run->dij;
    rr.nrows = (long long)D->nrows;
    rr.ncols = (int)D->ncols;
    rr.nnz = (long long)D->nnz;
    rr.dij_mb = (double)imrt_dij_bytes(D->nrows, D->ncols, D->nnz, D->nbeams) * 1e-6;
    for (int g = 0; g < run->plan->ngoals && rr.ngoals < MAXG; g++) {
        const imrt_goal_def *gd = &run->plan->goals[g];
        const int k = rr.ngoals++;
        snprintf(rr.gname[k], sizeof rr.gname[k], "%s_%s", gd->structure, gd->metric);
        for (int q = 0; q < k; q++)
            if (strcmp(rr.gname[q], rr.gname[k]) == 0) {
                const size_t len = strlen(rr.gname[k]);
                snprintf(rr.gname[k] + len, sizeof rr.gname[k] - len, "_%d", k);
            }
        if (imrt_goal_eval(gd, run->dose_phantom, run->imrt.dose, &rr.gval[k], &rr.gpass[k]) !=
            IMRT_OK)
            rr.gval[k] = NAN;
    }
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_plan: could not remove %s\n", dir);
    if (tmp)
        unlink(path);
    if (write(fd, &rr, sizeof rr) != (ssize_t)sizeof rr)
        _exit(1);
    _exit(0);
}

/* Run one case `runs` times in child processes and report. */
static void run_case(const bench_opts *o, const char *label, const char *spec, const char *mat,
                     double spacing, int full, int runs)
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
            child(o, spec, mat, spacing, full, fds[1]);
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
                     "\"method\": \"%s\", \"iterations\": %d, \"evaluations\": %d, "
                     "\"hessian_products\": %d, \"stop\": \"%s\", \"peak_rss_mb_after\": %.1f",
                     rr[0].method, rr[0].iterations, rr[0].evaluations, rr[0].hessian_products,
                     rr[0].stop,
                     bench_stats(s, n).median_s * 1e-6);
        } else if (st == S_CORE || st == S_TOTAL) {
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
    const int runs = o.quick ? 1 : 3; /* the box phantom; the default phantom runs once */
    bench_note(&o, "end to end, %d thread(s), each run in its own process (box phantom: %d "
                   "runs); load average %.2f",
               o.threads, runs, bench_load1());
    const char *only = getenv("IMRT_BENCH_CASES"); /* "tg119" or "box": one case only */
    if (!only || strcmp(only, "box") != 0)
        run_case(&o, o.quick ? "tg119_cshape 5mm" : "tg119_cshape", bench_default_spec(), NULL,
                 o.quick ? 5.0 : 0.0, 0, 1);
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
    run_case(&o, "boxphantom (matRad settings)", BENCH_BOX_SPEC, abs, 0.0, 0, runs);
    /* the same plan with imrt's full scatter and default tolerance: the
     * model's own answer, beside the peer-like one */
    run_case(&o, "boxphantom (full scatter)", BENCH_BOX_SPEC, abs, 0.0, 1, runs);
    return 0;
}
