/*
 * bench/bench_scaling.c - how the dij build and the optimisation grow with
 * the problem: the default phantom on three dose grids (4, 3 and 2.5 mm),
 * each in its own child process so that its peak resident memory is its
 * own (wait4's rusage of the child). Each line carries the load average:
 * the times are single runs and follow the machine's load. --quick: 12, 10 and 8 mm and at most 30
 * iterations. Prints time and memory per size and the
 * growth exponent p of each quantity against the number of dij rows
 * (quantity ~ rows^p, least squares on the logarithms).
 */
#define _DEFAULT_SOURCE /* wait4 */
#include "case.h"
#include "common.h"
#include "stages.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    double spacing;
    long long nrows, nnz;
    int ncols, iterations, evaluations;
    double dij_s, opt_s, dij_mb, rss_dij, peak_rss;
    double load1; /* one-minute load average when the run ended (shared machine) */
} size_result;

static void child(const bench_opts *o, double spacing, int fd)
{
    size_result r;
    memset(&r, 0, sizeof r);
    bench_case c;
    bench_case_tg119(o, spacing, &c);
    bench_plan_result pr;
    bench_plan_run(o, &c, &pr);
    r.spacing = spacing;
    r.nrows = (long long)c.dij->nrows;
    r.nnz = (long long)c.dij->nnz;
    r.ncols = (int)c.dij->ncols;
    r.iterations = pr.stats.iterations;
    r.evaluations = pr.stats.evaluations;
    r.dij_s = c.build_s;
    r.opt_s = pr.optimize_s;
    r.dij_mb = (double)imrt_dij_bytes(c.dij->nrows, c.dij->ncols, c.dij->nnz, c.dij->nbeams) *
               1e-6;
    r.rss_dij = c.rss_dij;
    bench_plan_result_free(&pr);
    bench_case_free(&c);
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(1);
    _exit(0);
}

static size_result run_size(const bench_opts *o, double spacing)
{
    int fds[2];
    if (pipe(fds) != 0)
        bench_fail("%s: pipe failed", o->prog);
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0)
        bench_fail("%s: fork failed", o->prog);
    if (pid == 0) {
        close(fds[0]);
        child(o, spacing, fds[1]);
    }
    close(fds[1]);
    size_result r;
    const ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        got != (ssize_t)sizeof r)
        bench_fail("%s: the run at %g mm failed", o->prog, spacing);
    r.peak_rss = (double)ru.ru_maxrss * 1024.0;
    r.load1 = bench_load1();
    return r;
}

/* Slope of log(y) against log(x), least squares. */
static double exponent(const double *x, const double *y, int n)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        const double lx = log(x[i]), ly = log(y[i]);
        sx += lx;
        sy += ly;
        sxx += lx * lx;
        sxy += lx * ly;
    }
    const double den = n * sxx - sx * sx;
    return den != 0 ? (n * sxy - sx * sy) / den : (double)NAN;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    const double full[3] = {4.0, 3.0, 2.5}, quick[3] = {12.0, 10.0, 8.0};
    const double *sp = o.quick ? quick : full;
    size_result r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = run_size(&o, sp[i]);
        char size[96], extra[512];
        snprintf(size, sizeof size, "tg119 %.3gmm", sp[i]);
        snprintf(extra, sizeof extra,
                 "\"nrows\": %lld, \"ncols\": %d, \"nnz\": %lld, \"dij_mb\": %.1f, "
                 "\"peak_rss_mb_after_dij\": %.1f, \"peak_rss_mb\": %.1f, \"load1\": %.2f",
                 r[i].nrows, r[i].ncols, r[i].nnz, r[i].dij_mb, r[i].rss_dij * 1e-6,
                 r[i].peak_rss * 1e-6, r[i].load1);
        bench_timing t = bench_once(r[i].dij_s);
        bench_report(&o, "scaling", "dij", o.threads, size, &t, NULL, extra);
        snprintf(extra, sizeof extra,
                 "\"nrows\": %lld, \"nnz\": %lld, \"iterations\": %d, \"evaluations\": %d, "
                 "\"s_per_evaluation\": %.4f, \"load1\": %.2f",
                 r[i].nrows, r[i].nnz, r[i].iterations, r[i].evaluations,
                 r[i].opt_s / (r[i].evaluations > 0 ? r[i].evaluations : 1), r[i].load1);
        t = bench_once(r[i].opt_s);
        bench_report(&o, "scaling", "optimize", o.threads, size, &t, NULL, extra);
    }
    double n[3], nnz[3], td[3], to[3], te[3], mem[3], dmb[3];
    for (int i = 0; i < 3; i++) {
        n[i] = (double)r[i].nrows;
        nnz[i] = (double)r[i].nnz;
        td[i] = r[i].dij_s;
        to[i] = r[i].opt_s;
        te[i] = r[i].opt_s / (r[i].evaluations > 0 ? r[i].evaluations : 1);
        mem[i] = r[i].peak_rss;
        dmb[i] = r[i].dij_mb;
    }
    char extra[512];
    snprintf(extra, sizeof extra,
             "\"p_nnz\": %.3f, \"p_dij_s\": %.3f, \"p_optimize_s\": %.3f, "
             "\"p_s_per_evaluation\": %.3f, \"p_dij_mb\": %.3f, \"p_peak_rss\": %.3f",
             exponent(n, nnz, 3), exponent(n, td, 3), exponent(n, to, 3), exponent(n, te, 3),
             exponent(n, dmb, 3), exponent(n, mem, 3));
    if (o.json) {
        bench_timing t = bench_once(0.0);
        bench_report(&o, "scaling", "exponents_vs_rows", o.threads, "3 sizes", &t, NULL, extra);
    } else {
        printf("\nscaling of the default phantom with the dose grid, %d thread(s)\n", o.threads);
        printf("%8s %9s %11s %9s %9s %6s %9s %9s %9s %6s\n", "grid_mm", "rows", "nnz", "dij_s",
               "opt_s", "iter", "s/eval", "dij_MB", "peak_MB", "load1");
        for (int i = 0; i < 3; i++)
            printf("%8.3g %9lld %11lld %9.3f %9.3f %6d %9.4f %9.1f %9.1f %6.1f\n", sp[i],
                   r[i].nrows, r[i].nnz, r[i].dij_s, r[i].opt_s, r[i].iterations, te[i],
                   r[i].dij_mb, r[i].peak_rss * 1e-6, r[i].load1);
        printf("%8s %9s %11.2f %9.2f %9.2f %6s %9.2f %9.2f %9.2f   <- exponent p in "
               "quantity ~ rows^p\n\n",
               "p", "1", exponent(n, nnz, 3), exponent(n, td, 3), exponent(n, to, 3), "",
               exponent(n, te, 3), exponent(n, dmb, 3), exponent(n, mem, 3));
        fflush(stdout);
    }
    return 0;
}
