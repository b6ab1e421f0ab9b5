/*
 * bench/bench_spmv.c - the optimiser's hot loop on the default phantom's
 * dij: D·x, D^T·w, the fused pass (the plan's per-voxel program, every row
 * scattered, dose only) and the plain two-pass form, reference and
 * optimised kernels, 1..N threads, and the fused pass again with the
 * workspace's 16-bit packed column indices (imrt_spmv_ws_pack: 6 bytes per
 * entry instead of 8; "time_ratio_int32" = its time over the 32-bit
 * kernel's). Bandwidth = bytes the kernel must move from memory (values
 * and indices of the rows it reads, row offsets, the per-row
 * input/output, and the workspace's 2-byte pair-table entry per row when
 * the dij has pair sections), as % of the same run's STREAM read.
 */
#include "case.h"
#include "common.h"

#include "imrt/alloc.h"
#include "imrt/spmv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const imrt_dij *D;
    const imrt_spmv_kernels *k;
    imrt_spmv_ws *ws;
    const imrt_voxel_program *p;
    const double *x, *w;
    double *d, *g, *deriv;
} call;

static void run_matvec(void *a)
{
    call *c = a;
    c->k->matvec(c->D, c->x, c->d, c->ws);
}

static void run_rmatvec(void *a)
{
    call *c = a;
    c->k->rmatvec(c->D, c->w, c->g, c->ws);
}

static void run_fused(void *a)
{
    call *c = a;
    c->k->fused(c->D, c->x, c->p, c->d, c->g, c->ws);
}

/* The two-pass form of the same evaluation: D·x on every row (the plain
 * form does not skip), the per-voxel derivative, D^T·w (which reads only
 * the rows with a non-zero derivative). */
static void run_two_pass(void *a)
{
    call *c = a;
    const imrt_voxel_program *p = c->p;
    c->k->matvec(c->D, c->x, c->d, c->ws);
    const int64_t m = c->D->nrows;
#pragma omp parallel for num_threads(imrt_spmv_ws_threads(c->ws)) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const int cls = p->row_class[r];
        double s = 0.0;
        if (cls)
            for (int32_t t = p->class_start[cls]; t < p->class_start[cls + 1]; t++) {
                const imrt_voxel_term *T = &p->term[t];
                if (c->d[r] > T->lo && c->d[r] <= T->hi)
                    s += T->coef * (c->d[r] - T->t);
            }
        c->deriv[r] = s;
    }
    c->k->rmatvec(c->D, c->deriv, c->g, c->ws);
}

static double *vec(size_t n)
{
    double *v = imrt_calloc(n, sizeof *v);
    if (!v)
        bench_fail("bench_spmv: out of memory");
    return v;
}

/* Check the optimised kernels against the reference with `threads` chunks. */
static void verify(const imrt_dij *D, const bench_program *progs, int nprog, const double *x,
                   const double *w, int threads)
{
    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    const size_t m = (size_t)D->nrows, n = (size_t)imrt_dij_width(D); /* beamlets + map columns */
    double *d0 = vec(m), *d1 = vec(m), *g0 = vec(n), *g1 = vec(n);
    imrt_spmv_ws *ws = NULL;
    if (imrt_spmv_ws_create(D, threads, 1, NULL, &ws) != IMRT_OK)
        bench_fail("bench_spmv: %s", imrt_last_error());
    ref.matvec(D, x, d0, NULL);
    opt.matvec(D, x, d1, ws);
    double e = bench_rel_diff(d1, d0, m);
    if (!(e <= 1e-12))
        bench_fail("bench_spmv: D·x differs from the reference by %.3g (relative)", e);
    ref.rmatvec(D, w, g0, NULL);
    opt.rmatvec(D, w, g1, ws);
    e = bench_rel_diff(g1, g0, n);
    if (!(e <= 1e-12))
        bench_fail("bench_spmv: D^T·w differs from the reference by %.3g (relative)", e);
    imrt_spmv_ws_destroy(&ws);
    for (int i = 0; i < nprog; i++) {
        if (imrt_spmv_ws_create(D, threads, 1, progs[i].row_class, &ws) != IMRT_OK)
            bench_fail("bench_spmv: %s", imrt_last_error());
        memset(d0, 0, m * sizeof *d0);
        memset(d1, 0, m * sizeof *d1);
        ref.fused(D, x, &progs[i].p, d0, g0, NULL);
        opt.fused(D, x, &progs[i].p, d1, g1, ws);
        double ed = bench_rel_diff(d1, d0, m), eg = bench_rel_diff(g1, g0, n);
        if (!(ed <= 1e-12) || !(eg <= 1e-10))
            bench_fail("bench_spmv: fused pass %d differs from the reference: dose %.3g, "
                       "gradient %.3g (relative)",
                       i, ed, eg);
        /* the same with 16-bit packed indices (when the columns fit) */
        if (imrt_dij_width(D) > IMRT_SPMV_PACK16_MAX_COLS) {
            imrt_spmv_ws_destroy(&ws);
            continue;
        }
        if (imrt_spmv_ws_pack(ws, D) != IMRT_OK)
            bench_fail("bench_spmv: %s", imrt_last_error());
        memset(d1, 0, m * sizeof *d1);
        opt.fused(D, x, &progs[i].p, d1, g1, ws);
        ed = bench_rel_diff(d1, d0, m), eg = bench_rel_diff(g1, g0, n);
        if (!(ed <= 1e-12) || !(eg <= 1e-10))
            bench_fail("bench_spmv: fused pass %d with packed indices differs from the "
                       "reference: dose %.3g, gradient %.3g (relative)",
                       i, ed, eg);
        imrt_spmv_ws_destroy(&ws);
    }
    imrt_free(d0);
    imrt_free(d1);
    imrt_free(g0);
    imrt_free(g1);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    int tl[16];
    const int nt = bench_thread_list(o.threads, tl, 16);
    bench_stream st[16];
    for (int i = 0; i < nt; i++)
        bench_stream_measure(&o, "spmv", tl[i], &st[i]);

    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    const imrt_dij *D = c.dij;
    const size_t m = (size_t)D->nrows, n = (size_t)imrt_dij_width(D); /* beamlets + map columns */
    char size[96];
    snprintf(size, sizeof size, "%s", c.name);
    {
        char extra[256];
        snprintf(extra, sizeof extra,
                 "\"nrows\": %lld, \"ncols\": %d, \"nnz\": %lld, \"mbytes\": %.1f",
                 (long long)D->nrows, (int)D->ncols, (long long)D->nnz,
                 (double)D->nnz * 8e-6 + (double)D->nrows * 16e-6);
        bench_timing t = bench_once(c.build_s);
        bench_report(&o, "spmv", c.synthetic ? "dij_synthetic" : "dij_build", tl[nt - 1], size,
                     &t, NULL, extra);
    }

    double *x = vec(n), *w = vec(m), *d = vec(m), *g = vec(n), *deriv = vec(m);
    bench_case_start(&c, 50.0, x);
    {
        uint64_t s = 12345;
        for (size_t r = 0; r < m; r++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            w[r] = (double)(s >> 11) * 0x1.0p-53 - 0.5;
        }
    }
    enum { P_PLAN, P_ALL, P_DOSE, NPROG };
    static const char *pname[NPROG] = {"fused_plan", "fused_all_rows", "fused_dose_only"};
    bench_program progs[NPROG];
    bench_program_plan(&c, &progs[P_PLAN]);
    bench_program_all(D, 50.0, &progs[P_ALL]);
    bench_program_dose_only(D, &progs[P_DOSE]);

    /* verify every optimised kernel against the reference at each thread count */
    for (int i = 0; i < nt; i++)
        verify(D, progs, NPROG, x, w, tl[i]);

    imrt_spmv_kernels ref, opt;
    imrt_spmv_kernels_reference(&ref);
    imrt_spmv_kernels_optimised(&opt);
    /* scattered rows of the plan at the start point */
    ref.matvec(D, x, d, NULL);
    int64_t scat_nnz = 0;
    const int64_t scat = bench_program_scattered(&progs[P_PLAN], D, d, &scat_nnz);
    bench_note(&o, "%s: %lld rows x %d beamlets, %lld non-zeros (%.0f MB); plan program: %lld "
                   "active rows, %lld scattered at the start point (%.1f %% of rows, %.1f %% "
                   "of non-zeros)",
               c.name, (long long)D->nrows, (int)D->ncols, (long long)D->nnz,
               (double)D->nnz * 8e-6, (long long)progs[P_PLAN].active_rows, (long long)scat,
               100.0 * (double)scat / (double)D->nrows,
               100.0 * (double)scat_nnz / (double)D->nnz);

    /* pair sections (a dij with scatter maps): the kernels also read the
     * workspace's 2-byte table entry of every row they read */
    int paired = 0;
    {
        imrt_spmv_ws *ws = NULL;
        if (imrt_spmv_ws_create(D, 1, 1, NULL, &ws) != IMRT_OK)
            bench_fail("bench_spmv: %s", imrt_last_error());
        paired = imrt_spmv_ws_paired(ws, D);
        imrt_spmv_ws_destroy(&ws);
    }
    bench_note(&o, "pair sections (one 16-byte access per pair of adjacent map columns): %s",
               paired ? "yes, in every row" : "no");
    const double b_rows = (paired ? 18.0 : 16.0) * (double)m; /* rowptr + per-row input or
                                                                  output (+ pair table) */
    const double b_mv = 8.0 * (double)D->nnz + b_rows;
    /* two-pass: D·x over every row, then D^T·w over the rows with w != 0 */
    const double b_two = b_mv + 8.0 * (double)scat_nnz + 16.0 * (double)m;
    double b_fused[NPROG];
    for (int i = 0; i < NPROG; i++)
        b_fused[i] = 8.0 * (double)progs[i].active_nnz + 2.0 * (double)m +
                     (paired ? 18.0 : 16.0) * (double)progs[i].active_rows;

    double b_fused16[NPROG];
    for (int i = 0; i < NPROG; i++)
        b_fused16[i] = b_fused[i] - 2.0 * (double)progs[i].active_nnz;
    call cl = {D, &ref, NULL, NULL, x, w, d, g, deriv};
    const int ref_rep = o.quick ? 1 : 3;
    char extra[256], k[64];
    bench_bw bw;
    /* reference kernels: serial */
    {
        bench_timing t = bench_time_paired(run_matvec, &cl, ref_rep, &st[0], b_mv, &bw);
        bench_report(&o, "spmv", ref.name_matvec, 1, size, &t, &bw, NULL);
        t = bench_time_paired(run_rmatvec, &cl, ref_rep, &st[0], b_mv, &bw);
        bench_report(&o, "spmv", ref.name_rmatvec, 1, size, &t, &bw, NULL);
        cl.p = &progs[P_PLAN].p;
        t = bench_time_paired(run_fused, &cl, ref_rep, &st[0], b_fused[P_PLAN], &bw);
        snprintf(k, sizeof k, "%s:plan", ref.name_fused);
        bench_report(&o, "spmv", k, 1, size, &t, &bw, NULL);
    }
    bench_timing last[8];
    bench_bw lastbw[8];
    for (int i = 0; i < nt; i++) {
        const int th = tl[i];
        imrt_spmv_ws *ws = NULL;
        if (imrt_spmv_ws_create(D, th, 1, NULL, &ws) != IMRT_OK)
            bench_fail("bench_spmv: %s", imrt_last_error());
        cl = (call){D, &opt, ws, NULL, x, w, d, g, deriv};
        bench_timing t = bench_time_paired(run_matvec, &cl, o.repeats, &st[i], b_mv, &bw);
        snprintf(extra, sizeof extra, "\"ns_per_nnz_core\": %.3f",
                 t.median_s / (double)D->nnz * 1e9 * th);
        bench_report(&o, "spmv", opt.name_matvec, th, size, &t, &bw, extra);
        last[0] = t;
        lastbw[0] = bw;
        t = bench_time_paired(run_rmatvec, &cl, o.repeats, &st[i], b_mv, &bw);
        snprintf(extra, sizeof extra, "\"ns_per_nnz_core\": %.3f",
                 t.median_s / (double)D->nnz * 1e9 * th);
        bench_report(&o, "spmv", opt.name_rmatvec, th, size, &t, &bw, extra);
        last[1] = t;
        lastbw[1] = bw;
        cl.p = &progs[P_PLAN].p;
        t = bench_time_paired(run_two_pass, &cl, o.repeats, &st[i], b_two, &bw);
        bench_report(&o, "spmv", "two_pass:plan", th, size, &t, &bw, NULL);
        last[2] = t;
        lastbw[2] = bw;
        imrt_spmv_ws_destroy(&ws);
        for (int p = 0; p < NPROG; p++) {
            if (imrt_spmv_ws_create(D, th, 1, progs[p].row_class, &ws) != IMRT_OK)
                bench_fail("bench_spmv: %s", imrt_last_error());
            cl.ws = ws;
            cl.p = &progs[p].p;
            t = bench_time_paired(run_fused, &cl, o.repeats, &st[i], b_fused[p], &bw);
            snprintf(k, sizeof k, "%s:%s", opt.name_fused, pname[p] + 6);
            snprintf(extra, sizeof extra, "\"active_rows\": %lld, \"ns_per_nnz_core\": %.3f",
                     (long long)progs[p].active_rows,
                     t.median_s / (double)progs[p].active_nnz * 1e9 * th);
            bench_report(&o, "spmv", k, th, size, &t, &bw, extra);
            last[3 + p] = t;
            lastbw[3 + p] = bw;
            if (imrt_dij_width(D) > IMRT_SPMV_PACK16_MAX_COLS) { /* beamlets + map columns */
                imrt_spmv_ws_destroy(&ws);
                continue;
            }
            if (imrt_spmv_ws_pack(ws, D) != IMRT_OK)
                bench_fail("bench_spmv: %s", imrt_last_error());
            t = bench_time_paired(run_fused, &cl, o.repeats, &st[i], b_fused16[p], &bw);
            snprintf(k, sizeof k, "%s16:%s", opt.name_fused, pname[p] + 6);
            snprintf(extra, sizeof extra, "\"time_ratio_int32\": %.3f, \"ns_per_nnz_core\": %.3f",
                     t.median_s / last[3 + p].median_s,
                     t.median_s / (double)progs[p].active_nnz * 1e9 * th);
            bench_report(&o, "spmv", k, th, size, &t, &bw, extra);
            imrt_spmv_ws_destroy(&ws);
        }
    }
    /* roofline at the most threads */
    const int th = tl[nt - 1];
    const bench_stream *S = &st[nt - 1];
    bench_roofline(&o, "spmv", opt.name_matvec, th, size, &last[0], &lastbw[0], S,
                   "memory (row stream)");
    bench_roofline(&o, "spmv", opt.name_rmatvec, th, size, &last[1], &lastbw[1], S,
                   "memory (row stream)");
    bench_roofline(&o, "spmv", "two_pass:plan", th, size, &last[2], &lastbw[2], S,
                   "memory: every row, then the scattered rows again");
    static const char *lim[NPROG] = {"memory; scatter of the active rows on the core",
                                     "core: scatter of every row", "memory (row stream)"};
    for (int p = 0; p < NPROG; p++) {
        snprintf(k, sizeof k, "%s:%s", opt.name_fused, pname[p] + 6);
        bench_roofline(&o, "spmv", k, th, size, &last[3 + p], &lastbw[3 + p], S, lim[p]);
    }

    for (int p = 0; p < NPROG; p++)
        bench_program_free(&progs[p]);
    imrt_free(x);
    imrt_free(w);
    imrt_free(d);
    imrt_free(g);
    imrt_free(deriv);
    bench_case_free(&c);
    for (int i = 0; i < nt; i++)
        bench_stream_free(&st[i]);
    return 0;
}
