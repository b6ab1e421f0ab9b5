/*
 * bench/bench_pencilbeam.c - the finite-size pencil-beam evaluation of one
 * beam: the dij entries (beamlet-voxel pairs) of every dij-row voxel, from
 * precomputed radiological depths, written to scratch (no CSR assembly).
 * Reference row kernel (four erf calls per component and cell, every cell
 * of the beam folded one by one) against the tabulated one (erf table,
 * separable edge tables, prefix-sum fold). Figure: beamlet-voxel pairs/s.
 *
 * Uses the engine's private kernel interface (engine/pencilbeam_impl.h),
 * as the tests do, so that the kernel is timed without the ray tracing and
 * the assembly around it.
 */
#include "case.h"
#include "common.h"

#include "pencilbeam_impl.h"

#include "imrt/alloc.h"
#include "imrt/raytrace.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const imrt_fspb_beam *B;
    const imrt_fspb_point *P; /* per row, valid[r] != 0 */
    const uint8_t *valid;
    int64_t n;                /* rows */
    int64_t stride;           /* rows visited: every stride-th */
    imrt_fspb_row_fn kernel;
    int threads;
    int64_t work_size, max_cells;
    int64_t pairs;            /* out: entries written */
    double sum;               /* out: sum of values (keeps the work alive) */
} call;

static void run(void *a)
{
    call *c = a;
    int64_t pairs = 0;
    double sum = 0.0;
#pragma omp parallel num_threads(c->threads) reduction(+ : pairs, sum)
    {
        double *work = imrt_calloc((size_t)c->work_size, sizeof *work);
        double *val = imrt_calloc((size_t)c->max_cells, sizeof *val);
        int32_t *col = imrt_calloc((size_t)c->max_cells, sizeof *col);
        if (!work || !val || !col)
            bench_fail("bench_pencilbeam: out of memory");
#pragma omp for schedule(dynamic, 256)
        for (int64_t r = 0; r < c->n; r += c->stride) {
            if (!c->valid[r])
                continue;
            const int64_t k = c->kernel(c->B, &c->P[r], work, col, val);
            pairs += k;
            if (k > 0)
                sum += val[0];
        }
        imrt_free(work);
        imrt_free(val);
        imrt_free(col);
    }
    c->pairs = pairs;
    c->sum = sum;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    o.synthetic = 0;
    int tl[16];
    const int nt = bench_thread_list(o.threads, tl, 16);
    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    const imrt_dij *D = c.dij;
    const imrt_grid *g = &c.dose->grid;
    const int bi = 1;
    const imrt_beam *beam = &c.bs->beams[bi];
    const int64_t n = D->nrows;

    imrt_machine m;
    imrt_machine_default(&m);
    imrt_dose_options dopt;
    imrt_dose_options_from_plan(c.plan, &dopt);
    imrt_fspb_cut cut;
    imrt_fspb_beam *B = NULL;
    if (imrt_fspb_resolve(&m, &dopt, &cut) != IMRT_OK ||
        imrt_fspb_beams_create(c.bs, &B) != IMRT_OK)
        bench_fail("bench_pencilbeam: %s", imrt_last_error());
    float *depth = imrt_calloc((size_t)n, sizeof *depth);
    imrt_fspb_point *P = imrt_calloc((size_t)n, sizeof *P);
    uint8_t *valid = imrt_calloc((size_t)n, sizeof *valid);
    if (!depth || !P || !valid)
        bench_fail("bench_pencilbeam: out of memory");
    if (imrt_depth_cube(c.ctx, g, c.dose->density, beam->src, D->voxel, n, depth) != IMRT_OK)
        bench_fail("bench_pencilbeam: %s", imrt_last_error());
    for (int64_t r = 0; r < n; r++) {
        int i, j, k;
        double p[3], u, v, scale;
        imrt_grid_ijk(g, D->voxel[r], &i, &j, &k);
        imrt_grid_center(g, i, j, k, p);
        if (imrt_fspb_geometry(beam, p, &u, &v, &scale)) {
            imrt_fspb_physics(&m, &cut, c.bs->beamlet_mm, u, v, scale, (double)depth[r], &P[r]);
            valid[r] = 1;
        }
    }
    const int64_t ws = imrt_fspb_work_size(beam), mc = (int64_t)beam->nu * beam->nv;

    /* verify the tabulated kernel against the reference on a sample of rows */
    const int64_t vstride = o.quick ? 211 : 53;
    {
        double *work = imrt_calloc((size_t)ws, sizeof *work);
        double *v0 = imrt_calloc((size_t)mc, sizeof *v0), *v1 = imrt_calloc((size_t)mc, sizeof *v1);
        int32_t *c0 = imrt_calloc((size_t)mc, sizeof *c0), *c1 = imrt_calloc((size_t)mc, sizeof *c1);
        if (!work || !v0 || !v1 || !c0 || !c1)
            bench_fail("bench_pencilbeam: out of memory");
        double emax = 0.0;
        for (int64_t r = 0; r < n; r += vstride) {
            if (!valid[r])
                continue;
            const int64_t k0 = imrt_fspb_row_ref(&B[bi], &P[r], work, c0, v0);
            const int64_t k1 = imrt_fspb_row_tab(&B[bi], &P[r], work, c1, v1);
            if (k0 != k1)
                bench_fail("bench_pencilbeam: row %lld: %lld entries (reference) vs %lld",
                           (long long)r, (long long)k0, (long long)k1);
            double vmax = 0.0;
            for (int64_t e = 0; e < k0; e++)
                vmax = fmax(vmax, fabs(v0[e]));
            for (int64_t e = 0; e < k0; e++) {
                if (c0[e] != c1[e])
                    bench_fail("bench_pencilbeam: row %lld: column mismatch", (long long)r);
                emax = fmax(emax, fabs(v1[e] - v0[e]) / (vmax > 0 ? vmax : 1.0));
            }
        }
        if (!(emax <= 1e-5))
            bench_fail("bench_pencilbeam: tabulated kernel differs from the reference by %.3g "
                       "(relative to the row maximum)",
                       emax);
        bench_note(&o, "tabulated vs reference kernel: largest difference %.2g of the row "
                       "maximum (rows sampled every %lld)",
                   emax, (long long)vstride);
        imrt_free(work);
        imrt_free(v0);
        imrt_free(v1);
        imrt_free(c0);
        imrt_free(c1);
    }

    char size[160];
    for (int i = 0; i < nt; i++) {
        const int th = tl[i];
        for (int k = 0; k < 2; k++) {
            call cl = {&B[bi], P, valid, n, k ? 1 : vstride, k ? imrt_fspb_row_tab : imrt_fspb_row_ref,
                       th, ws, mc, 0, 0.0};
            if (k == 0 && th > 1)
                continue; /* the reference once, on one thread */
            const int rep = o.quick ? 1 : (k ? o.repeats : 3);
            bench_timing t = bench_time(run, &cl, rep);
            snprintf(size, sizeof size, "%s %s%s", c.name, beam->name,
                     k ? "" : " (rows sampled)");
            char extra[256];
            snprintf(extra, sizeof extra,
                     "\"pairs\": %lld, \"mpairs_per_s\": %.2f, \"mpairs_per_s_core\": %.2f, "
                     "\"ns_per_pair_core\": %.3f",
                     (long long)cl.pairs, (double)cl.pairs / t.median_s * 1e-6,
                     (double)cl.pairs / t.median_s / th * 1e-6,
                     t.median_s * th / (double)cl.pairs * 1e9);
            bench_report(&o, "pencilbeam", k ? "fspb_row_tab" : "fspb_row_ref", th, size, &t,
                         NULL, extra);
        }
    }
    imrt_fspb_beams_free(&B, c.bs->nbeams);
    imrt_free(depth);
    imrt_free(P);
    imrt_free(valid);
    bench_case_free(&c);
    return 0;
}
