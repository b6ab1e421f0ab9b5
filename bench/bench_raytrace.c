/*
 * bench/bench_raytrace.c - the radiological-depth cube of one beam on the
 * default phantom's dose grid (imrt_depth_cube: one exact traversal from
 * the source to every dij-row voxel), reference kernel (sums the
 * segments of imrt_raytrace) and optimised kernel (integrates inside the
 * traversal), 1..N threads. Figures: voxels (rays) per second and ns per
 * voxel step (a step = one voxel crossed, counted with imrt_raytrace).
 */
#include "case.h"
#include "common.h"

#include "imrt/alloc.h"
#include "imrt/raytrace.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const imrt_context *ctx;
    const imrt_grid *g;
    const float *density;
    const double *src;
    const int64_t *vox;
    int64_t n;
    float *depth;
} call;

static void run(void *a)
{
    call *c = a;
    if (imrt_depth_cube(c->ctx, c->g, c->density, c->src, c->vox, c->n, c->depth) != IMRT_OK)
        bench_fail("bench_raytrace: %s", imrt_last_error());
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(argc, argv, &o);
    o.synthetic = 0; /* needs the real phantom */
    int tl[16];
    const int nt = bench_thread_list(o.threads, tl, 16);
    bench_case c;
    bench_case_tg119(&o, o.quick ? 5.0 : 0.0, &c);
    const imrt_dij *D = c.dij;
    const imrt_grid *g = &c.dose->grid;
    const imrt_beam *beam = &c.bs->beams[1]; /* an oblique beam (40 degrees) */
    const int64_t n = D->nrows;
    float *d_ref = imrt_calloc((size_t)n, sizeof *d_ref), *d_opt = imrt_calloc((size_t)n, sizeof *d_opt);
    if (!d_ref || !d_opt)
        bench_fail("bench_raytrace: out of memory");

    /* voxel steps of all rays (the work), counted with the segment tracer */
    const int64_t cap = imrt_raytrace_capacity(g);
    int64_t steps = 0;
#pragma omp parallel num_threads(o.threads) reduction(+ : steps)
    {
        imrt_ray_segment *seg = imrt_calloc((size_t)cap, sizeof *seg);
        if (!seg)
            bench_fail("bench_raytrace: out of memory");
#pragma omp for schedule(dynamic, 1024)
        for (int64_t r = 0; r < n; r++) {
            int i, j, k;
            double p[3];
            int64_t ns = 0;
            imrt_grid_ijk(g, D->voxel[r], &i, &j, &k);
            imrt_grid_center(g, i, j, k, p);
            if (imrt_raytrace(g, beam->src, p, seg, cap, &ns) == IMRT_OK)
                steps += ns;
        }
        imrt_free(seg);
    }

    imrt_context *ref = NULL, *opt = NULL;
    if (imrt_context_create(&ref) || imrt_context_create(&opt))
        bench_fail("bench_raytrace: %s", imrt_last_error());
    imrt_context_set_kernels(ref, IMRT_KERNELS_REFERENCE);
    imrt_context_set_kernels(opt, IMRT_KERNELS_OPTIMISED);

    char size[160];
    snprintf(size, sizeof size, "%s %s", c.name, beam->name);
    bench_note(&o, "%s: %lld rays (dij-row voxels), %lld voxel steps (%.1f per ray), beam %s",
               c.name, (long long)n, (long long)steps, (double)steps / (double)n, beam->name);
    for (int i = 0; i < nt; i++) {
        const int th = tl[i];
        imrt_context_set_threads(ref, th);
        imrt_context_set_threads(opt, th);
        call cr = {ref, g, c.dose->density, beam->src, D->voxel, n, d_ref};
        call co = {opt, g, c.dose->density, beam->src, D->voxel, n, d_opt};
        /* verify: the fused integral against the sum of segments */
        run(&cr);
        run(&co);
        double emax = 0.0;
        for (int64_t r = 0; r < n; r++)
            emax = fmax(emax, fabs((double)d_opt[r] - (double)d_ref[r]) /
                                  fmax(1.0, fabs((double)d_ref[r])));
        if (!(emax <= 1e-5))
            bench_fail("bench_raytrace: optimised depth differs from the reference by %.3g", emax);
        const int rep = o.quick ? 1 : (th == 1 ? 3 : o.repeats);
        for (int k = 0; k < 2; k++) {
            call *cc = k ? &co : &cr;
            bench_timing t = bench_time(run, cc, rep);
            char extra[256];
            snprintf(extra, sizeof extra,
                     "\"rays\": %lld, \"steps\": %lld, \"mrays_per_s\": %.2f, "
                     "\"ns_per_step_core\": %.3f",
                     (long long)n, (long long)steps, (double)n / t.median_s * 1e-6,
                     t.median_s * th / (double)steps * 1e9);
            bench_report(&o, "raytrace", k ? "depth_cube_opt" : "depth_cube_ref", th, size, &t,
                         NULL, extra);
        }
    }
    imrt_context_destroy(&ref);
    imrt_context_destroy(&opt);
    imrt_free(d_ref);
    imrt_free(d_opt);
    bench_case_free(&c);
    return 0;
}
