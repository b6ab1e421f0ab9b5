/*
 * bench/bench_dij.c - the whole dose-influence matrix of the default
 * phantom (all beams), CSR assembly included: seconds, rows, entries,
 * bytes, entries per second per core, peak memory; and where the time
 * goes: the count pass (imrt_dij_estimate), the depth cubes (ray tracing,
 * from the build's progress reports) and the fill pass (pencil-beam
 * evaluation plus assembly). The fill pass is split further with the
 * evaluation-only time of the tabulated row kernel over the same
 * (voxel, beam) pairs. Besides wall time, the whole build and the evaluation
 * give their CPU time (all threads) and pairs per CPU second: on a shared
 * machine that is the kernel's cost without the time other jobs took.
 *
 * Verification before timing: on a coarse grid the optimised build
 * (tabulated kernel, fused depth integral) is compared entry by entry
 * with the reference build.
 */
#include "case.h"
#include "common.h"

#include "dij_impl.h"
#include "pencilbeam_impl.h"
#include "util_impl.h"

#include "imrt/alloc.h"
#include "imrt/dose.h"
#include "imrt/raytrace.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    double t0;
    double t_depth;  /* progress passed the depth share (0.2) */
    int seen;
} progress;

static void on_progress(void *user, const char *stage, double f)
{
    progress *p = user;
    (void)stage;
    if (!p->seen && f >= 0.2 - 1e-12) {
        p->t_depth = bench_now();
        p->seen = 1;
    }
}

typedef struct {
    const bench_case *c;
    const imrt_machine *m;
    const imrt_dose_options *opt;
    imrt_context *ctx;
    imrt_dij *out;
    progress pr;
} build_call;

static void run_build(void *a)
{
    build_call *b = a;
    imrt_dij_destroy(&b->out);
    memset(&b->pr, 0, sizeof b->pr);
    b->pr.t0 = bench_now();
    imrt_context_set_progress(b->ctx, on_progress, &b->pr);
    if (imrt_dij_build(b->ctx, b->c->dose, b->c->bs, b->m, b->opt, &b->out) != IMRT_OK)
        bench_fail("bench_dij: %s", imrt_last_error());
}

static void run_estimate(void *a)
{
    build_call *b = a;
    int64_t r, z;
    uint64_t by;
    if (imrt_dij_estimate(b->ctx, b->c->dose, b->c->bs, b->m, b->opt, &r, &z, &by) != IMRT_OK)
        bench_fail("bench_dij: %s", imrt_last_error());
}

/* Evaluation only: every (row, beam) pair through the tabulated kernel,
 * values to scratch, as the fill pass does it: with scatter maps the
 * kernel evaluates the primary only and the scatter goes to the eight map
 * entries. Depths from the build's own depth cubes. */
typedef struct {
    const bench_case *c;
    const imrt_machine *m;
    const imrt_fspb_cut *cut;
    const imrt_fspb_beam *B;
    const float *depth; /* nbeams x nrows */
    int threads;
    int64_t pairs;
} eval_call;

static void run_eval(void *a)
{
    eval_call *e = a;
    const imrt_dij *D = e->c->dij;
    const imrt_beamset *bs = e->c->bs;
    const imrt_grid *g = &D->grid;
    int64_t ws = 0, mc = 0;
    for (int b = 0; b < bs->nbeams; b++) {
        ws = IMRT_MAX(ws, imrt_fspb_work_size(&bs->beams[b]));
        mc = IMRT_MAX(mc, (int64_t)bs->beams[b].nu * bs->beams[b].nv);
    }
    int64_t pairs = 0;
#pragma omp parallel num_threads(e->threads) reduction(+ : pairs)
    {
        double *work = imrt_calloc((size_t)ws, sizeof *work);
        double *val = imrt_calloc((size_t)mc, sizeof *val);
        int32_t *col = imrt_calloc((size_t)mc, sizeof *col);
        if (!work || !val || !col)
            bench_fail("bench_dij: out of memory");
#pragma omp for schedule(dynamic, 256)
        for (int64_t r = 0; r < D->nrows; r++) {
            int i, j, k;
            double p[3];
            imrt_grid_ijk(g, D->voxel[r], &i, &j, &k);
            imrt_grid_center(g, i, j, k, p);
            for (int b = 0; b < bs->nbeams; b++) {
                double u, v, scale;
                if (!imrt_fspb_geometry(e->B[b].beam, p, &u, &v, &scale))
                    continue;
                imrt_fspb_point P;
                imrt_fspb_physics(e->m, e->cut, bs->beamlet_mm, u, v, scale,
                                  (double)e->depth[(int64_t)b * D->nrows + r], &P);
                const double cs = P.pre * P.a, ss = P.ss;
                if (e->cut->maps && D->smap) {
                    P.pre *= 1.0 - P.a;
                    P.a = 0.0;
                }
                const int64_t n = imrt_fspb_row_tab(&e->B[b], &P, work, col, val);
                pairs += n;
                if (e->cut->maps && D->smap && n > 0)
                    pairs += imrt_dij_smap_entries(&D->smap[b], u, v, ss, cs, col, val);
            }
        }
        imrt_free(work);
        imrt_free(val);
        imrt_free(col);
    }
    e->pairs = pairs;
}

/* Entry-by-entry comparison of two dijs (same structure required). */
static double compare(const imrt_dij *a, const imrt_dij *b)
{
    if (a->nrows != b->nrows || a->nnz != b->nnz || a->ncols != b->ncols)
        bench_fail("bench_dij: optimised and reference dij differ in shape");
    for (int64_t r = 0; r <= a->nrows; r++)
        if (a->rowptr[r] != b->rowptr[r])
            bench_fail("bench_dij: row pointers differ at row %lld", (long long)r);
    double vmax = 0.0, emax = 0.0;
    for (int64_t k = 0; k < a->nnz; k++) {
        if (a->col[k] != b->col[k])
            bench_fail("bench_dij: column indices differ at entry %lld", (long long)k);
        vmax = fmax(vmax, fabs((double)b->val[k]));
        emax = fmax(emax, fabs((double)a->val[k] - (double)b->val[k]));
    }
    return vmax > 0 ? emax / vmax : emax;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    o.synthetic = 0;
    int tl[16];
    const int nt = bench_thread_list(o.threads, tl, 16);
    imrt_machine m;
    imrt_machine_default(&m);

    /* verify on a coarse grid: optimised vs reference build */
    {
        bench_case v;
        bench_case_tg119(&o, 10.0, &v);
        imrt_dose_options dopt;
        imrt_dose_options_from_plan(v.plan, &dopt);
        imrt_context *ref = NULL;
        if (imrt_context_create(&ref) != IMRT_OK)
            bench_fail("bench_dij: %s", imrt_last_error());
        imrt_context_set_threads(ref, o.threads);
        imrt_context_set_kernels(ref, IMRT_KERNELS_REFERENCE);
        imrt_dij *dref = NULL;
        const double t0 = bench_now();
        if (imrt_dij_build(ref, v.dose, v.bs, &m, &dopt, &dref) != IMRT_OK)
            bench_fail("bench_dij: %s", imrt_last_error());
        const double tref = bench_now() - t0;
        const double e = compare(v.dij, dref);
        if (!(e <= 1e-5))
            bench_fail("bench_dij: optimised dij differs from the reference by %.3g of the "
                       "largest entry",
                       e);
        char extra[160];
        snprintf(extra, sizeof extra, "\"nnz\": %lld, \"max_diff_rel\": %.3g",
                 (long long)dref->nnz, e);
        bench_timing t = bench_once(tref);
        bench_report(&o, "dij", "build_reference", o.threads, v.name, &t, NULL, extra);
        imrt_dij_destroy(&dref);
        imrt_context_destroy(&ref);
        bench_case_free(&v);
    }

    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    imrt_dose_options dopt;
    imrt_dose_options_from_plan(c.plan, &dopt);
    const imrt_dij *D = c.dij;
    const double bytes = (double)imrt_dij_bytes(D->nrows, D->ncols, D->nnz, D->nbeams);
    bench_note(&o, "%s: %lld rows, %d beamlets, %d beams, %lld entries, %.1f MB; first build "
                   "%.2f s, peak RSS %.0f MB",
               c.name, (long long)D->nrows, (int)D->ncols, D->nbeams, (long long)D->nnz,
               bytes * 1e-6, c.build_s, c.rss_dij * 1e-6);

    imrt_fspb_cut cut;
    imrt_fspb_beam *B = NULL;
    if (imrt_fspb_resolve(&m, &dopt, &cut) != IMRT_OK ||
        imrt_fspb_beams_create(c.bs, &B) != IMRT_OK)
        bench_fail("bench_dij: %s", imrt_last_error());
    float *depth = imrt_calloc((size_t)c.bs->nbeams * (size_t)D->nrows, sizeof *depth);
    if (!depth)
        bench_fail("bench_dij: out of memory");
    for (int b = 0; b < c.bs->nbeams; b++)
        if (imrt_depth_cube(c.ctx, &D->grid, c.dose->density, c.bs->beams[b].src, D->voxel,
                            D->nrows, depth + (int64_t)b * D->nrows) != IMRT_OK)
            bench_fail("bench_dij: %s", imrt_last_error());

    const int rep = o.quick ? 1 : 3;
    for (int i = 0; i < nt; i++) {
        const int th = tl[i];
        imrt_context_set_threads(c.ctx, th);
        build_call bc = {&c, &m, &dopt, c.ctx, NULL, {0, 0, 0}};
        /* the whole build, with the depth/fill split from its progress */
        double tot[8], dep[8], fill[8], cpu[8];
        run_build(&bc); /* warm-up */
        bench_cpu_snap s0, s1;
        bench_cpu_snap_take(&s0);
        for (int r = 0; r < rep; r++) {
            const double u0 = bench_cpu_now(), t0 = bench_now();
            run_build(&bc);
            const double t1 = bench_now();
            cpu[r] = bench_cpu_now() - u0;
            tot[r] = t1 - t0;
            dep[r] = bc.pr.seen ? bc.pr.t_depth - t0 : 0.0;
            fill[r] = bc.pr.seen ? t1 - bc.pr.t_depth : 0.0;
        }
        bench_cpu_snap_take(&s1);
        bench_timing tt = bench_stats(tot, rep);
        tt.other_cpu = bench_cpu_other(&s0, &s1);
        tt.cpu_s = bench_stats(cpu, rep).median_s;
        const bench_timing td = bench_stats(dep, rep), tf = bench_stats(fill, rep);
        const bench_timing tc = bench_time(run_estimate, &bc, rep);
        eval_call ec = {&c, &m, &cut, B, depth, th, 0};
        const bench_timing te = bench_time(run_eval, &ec, rep);
        char extra[512];
        snprintf(extra, sizeof extra,
                 "\"nnz\": %lld, \"mbytes\": %.1f, \"mnnz_per_s\": %.2f, \"mnnz_per_s_core\": %.2f, "
                 "\"mnnz_per_cpu_s\": %.2f, \"peak_rss_mb\": %.1f",
                 (long long)bc.out->nnz, bytes * 1e-6, (double)bc.out->nnz / tt.median_s * 1e-6,
                 (double)bc.out->nnz / tt.median_s / th * 1e-6,
                 (double)bc.out->nnz / tt.cpu_s * 1e-6, bench_peak_rss() * 1e-6);
        bench_report(&o, "dij", "build", th, c.name, &tt, NULL, extra);
        bench_report(&o, "dij", "count_pass", th, c.name, &tc, NULL, NULL);
        snprintf(extra, sizeof extra, "\"note\": \"count pass + allocation + %d depth cubes\"",
                 c.bs->nbeams);
        bench_report(&o, "dij", "count+depth", th, c.name, &td, NULL, extra);
        bench_report(&o, "dij", "fill", th, c.name, &tf, NULL, NULL);
        snprintf(extra, sizeof extra,
                 "\"pairs\": %lld, \"mpairs_per_s_core\": %.2f, \"ns_per_pair_core\": %.2f, "
                 "\"mpairs_per_cpu_s\": %.2f",
                 (long long)ec.pairs, (double)ec.pairs / te.median_s / th * 1e-6,
                 te.median_s * th / (double)ec.pairs * 1e9, (double)ec.pairs / te.cpu_s * 1e-6);
        bench_report(&o, "dij", "fill:pencilbeam_eval", th, c.name, &te, NULL, extra);
        const double asm_s = tf.median_s - te.median_s;
        bench_note(&o, "%d thread(s): build %.3f s = count %.3f + depth cubes %.3f + "
                       "pencil-beam evaluation %.3f + assembly/rest %.3f (medians)",
                   th, tt.median_s, tc.median_s, td.median_s - tc.median_s, te.median_s,
                   asm_s);
        imrt_dij_destroy(&bc.out);
    }
    imrt_fspb_beams_free(&B, c.bs->nbeams);
    imrt_free(depth);
    bench_case_free(&c);
    return 0;
}
