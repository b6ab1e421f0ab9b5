/*
 * engine/pipeline.c - the planning run behind `imrt plan`: stages from the
 * spec to the metrics (imrt_run_plan), metrics.json (imrt_run_metrics_json)
 * and the output folder (imrt_run_write).
 */
#include "imrt/pipeline.h"

#include "imrt/compare.h"
#include "imrt/conformal.h"
#include "imrt/dose.h"
#include "imrt/io.h"
#include "imrt/nifti.h"
#include "imrt/objectives.h"
#include "imrt/plot.h"
#include "imrt/report.h"

#include "dij_impl.h"
#include "util_impl.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void imrt_run_options_default(imrt_run_options *o)
{
    memset(o, 0, sizeof *o);
    o->log_every = 10;
}

typedef struct {
    imrt_run *run;
    const imrt_run_options *opt;
} run_logger;

/* Append a line to the run's log and pass it to the caller's callback. */
static void run_log(imrt_run *run, const imrt_run_options *opt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_log(imrt_run *run, const imrt_run_options *opt, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (run->log_len + n + 2 > run->log_cap) {
        size_t cap = run->log_cap ? 2 * run->log_cap : 8192;
        while (cap < run->log_len + n + 2)
            cap *= 2;
        char *grown = imrt_malloc(cap);
        if (grown) {
            if (run->log_len)
                memcpy(grown, run->log, run->log_len);
            grown[run->log_len] = '\0';
            imrt_free(run->log);
            run->log = grown;
            run->log_cap = cap;
        }
    }
    if (run->log_len + n + 2 <= run->log_cap) {
        memcpy(run->log + run->log_len, line, n);
        run->log_len += n;
        run->log[run->log_len++] = '\n';
        run->log[run->log_len] = '\0';
    }
    if (opt && opt->log)
        opt->log(opt->log_user, line);
}

/* The solver that ran, as the report and metrics.json name it. */
static const char *solver_description(imrt_method m)
{
    return m == IMRT_METHOD_NEWTON
               ? "projected Newton-CG on the Gauss-Newton Hessian (MPRGP inner solves), x >= 0"
               : "L-BFGS (NLopt), x >= 0";
}

static int solver_log(void *user, const imrt_iteration_info *it)
{
    run_logger *lg = user;
    int every = lg->opt && lg->opt->log_every > 0 ? lg->opt->log_every : 10;
    if (it->iteration % every != 0 && it->iteration > 1)
        return 0;
    char shares[512];
    size_t pos = 0;
    shares[0] = '\0';
    for (int k = 0; k < it->nshares && pos + 24 < sizeof shares; k++)
        pos += (size_t)snprintf(shares + pos, sizeof shares - pos, " %.3g", it->share[k]);
    run_log(lg->run, lg->opt, "  iter %4d  F %-12.6g  |pg| %-10.3g  %6.2f s  shares:%s",
            it->iteration, it->f, it->pg_norm, it->elapsed_s, shares);
    return 0;
}

/* (Re)compute the summary of one plan of the run. */
static imrt_status imrt_plan_metrics_destroy_and_compute(imrt_run *run, imrt_run_plan_result *p)
{
    double t = now_s();
    imrt_plan_metrics_destroy(&p->metrics);
    imrt_status st = imrt_plan_metrics_compute(run->dose_phantom, p->dose, &run->plan->rx,
                                               run->plan->goals, run->plan->ngoals, &p->metrics);
    if (st == IMRT_OK)
        p->metrics->norm_factor = p->norm_factor;
    run->t_metrics += now_s() - t;
    return st;
}

imrt_status imrt_run_load(const char *spec_path, const imrt_run_options *opt_in, imrt_run **out)
{
    imrt_status status = IMRT_OK;
    imrt_run *run = NULL;
    uint8_t *seen = NULL;
    imrt_run_options defopt;
    if (!opt_in) {
        imrt_run_options_default(&defopt);
        opt_in = &defopt;
    }
    if (!spec_path || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_load: NULL argument");
    *out = NULL;
    double t = now_s();
    IMRT_ALLOC(run, 1);
    run->opt = *opt_in;
    const imrt_run_options *opt = &run->opt;
    snprintf(run->spec_path, sizeof run->spec_path, "%s", spec_path);
    imrt_spec_options so = {0};
    so.grid_mm = opt->grid_mm;
    so.max_memory = opt->max_memory;
    IMRT_TRY(imrt_spec_load_ex(spec_path, &so, &run->phantom, &run->plan, &run->info));
    imrt_plan *plan = run->plan;
    if (plan->nbeams < 1)
        IMRT_FAIL(IMRT_ERR_ARG, "%s: the plan has no beams", spec_path);
    if (!(plan->rx.dose_gy > 0))
        IMRT_FAIL(IMRT_ERR_ARG, "%s: the plan has no prescription dose", spec_path);
    IMRT_TRY(imrt_dose_grid_phantom(run->phantom, plan, &run->dose_phantom));
    int tgt = imrt_rx_target_index(&plan->rx, run->dose_phantom);
    if (tgt < 0)
        IMRT_FAIL(IMRT_ERR_ARG, "%s: prescription target '%s' is not a structure", spec_path,
                  plan->rx.target);
    snprintf(run->target, sizeof run->target, "%s", run->dose_phantom->structures[tgt].name);
    IMRT_TRY(imrt_beamset_create(run->dose_phantom, plan, plan->beams, plan->nbeams, run->target,
                                 &run->beams));
    /* a target that no beamlet's central ray reaches cannot be planned: say so
     * now, not after the dij and the optimisation */
    {
        const int32_t nbl = imrt_beamset_nbeamlets(run->beams);
        IMRT_ALLOC(seen, nbl);
        IMRT_TRY(imrt_beamset_aperture(run->beams, run->dose_phantom, run->target, 0.0, seen));
        int any = 0;
        for (int32_t j = 0; j < nbl && !any; j++)
            any = seen[j] != 0;
        if (!any)
            IMRT_FAIL(IMRT_ERR_RANGE,
                      "%s: no beam reaches the prescription target '%s' (no beamlet's central "
                      "ray crosses it): check the beams' isocentre_mm and field_mm",
                      spec_path, run->target);
    }
    const imrt_grid *pg = &run->phantom->grid, *dg = &run->dose_phantom->grid;
    run->t_phantom = now_s() - t;
    run_log(run, opt,
            "phantom %s: %d x %d x %d voxels of %.2f mm; dose grid %d x %d x %d of %.2f mm; "
            "%d beams, %d beamlets (%.2f s)",
            run->phantom->name, pg->nx, pg->ny, pg->nz, pg->dx, dg->nx, dg->ny, dg->nz, dg->dx,
            imrt_beamset_nbeams(run->beams), imrt_beamset_nbeamlets(run->beams), run->t_phantom);
    *out = run;
    run = NULL;
cleanup:
    imrt_free(seen);
    imrt_run_destroy(&run);
    return status;
}

/* ---- memory model (docs/robustness.md) ---- */

/* A phantom: float density and one byte-mask per structure per voxel. */
static uint64_t phantom_bytes(const imrt_phantom *p)
{
    return p ? (uint64_t)imrt_grid_nvox(&p->grid) * (4u + (uint64_t)p->nstructures) : 0;
}

/* Both plans' weights and doses, the objectives' per-row and per-beamlet
 * arrays and the solver's vectors, and the label map of the outputs, for a
 * dij of nrows x ncols. */
static uint64_t plans_bytes(const imrt_run *run, int64_t nrows, int32_t ncols)
{
    const uint64_t nvd = (uint64_t)imrt_grid_nvox(&run->dose_phantom->grid);
    const uint64_t nvp = (uint64_t)imrt_grid_nvox(&run->phantom->grid);
    const uint64_t nobj = (uint64_t)(run->plan->nobjectives > 0 ? run->plan->nobjectives : 0);
    return 2 * (nvd * sizeof(float) + (uint64_t)ncols * sizeof(double)) +
           (uint64_t)nrows * 48u + (uint64_t)ncols * sizeof(double) * (40u + nobj) + nvp;
}

static uint64_t held_bytes(const imrt_run *run)
{
    uint64_t b = phantom_bytes(run->phantom) + phantom_bytes(run->dose_phantom);
    const imrt_dij *d[2] = {run->dij, run->crt_dij};
    for (int q = 0; q < 2; q++)
        if (d[q])
            b += imrt_dij_bytes(d[q]->nrows, d[q]->ncols, d[q]->nnz, d[q]->nbeams);
    return b;
}

imrt_status imrt_run_dij(const imrt_context *ctx, imrt_run *run)
{
    imrt_status status = IMRT_OK;
    if (!run)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_dij: NULL run");
    run->threads = imrt_context_threads(ctx);
    double t = now_s();
    const imrt_plan *plan = run->plan;
    imrt_dose_options dop;
    imrt_dose_options_from_plan(plan, &dop);
    /* the rows are not known before the build: count every dose-grid voxel */
    const int64_t nvd = imrt_grid_nvox(&run->dose_phantom->grid);
    if (!run->dij)
        IMRT_TRY(imrt_dij_build_held(ctx,
                                     held_bytes(run) +
                                         plans_bytes(run, nvd, imrt_beamset_nbeamlets(run->beams)),
                                     run->dose_phantom, run->beams, NULL, &dop, &run->dij));
    if (plan->crt_nbeams > 0 && !run->crt_dij) {
        IMRT_TRY(imrt_beamset_create(run->dose_phantom, plan, plan->crt_beams, plan->crt_nbeams,
                                     run->target, &run->crt_beams));
        IMRT_TRY(imrt_dij_build_held(ctx, held_bytes(run) + plans_bytes(run, nvd, run->dij->ncols),
                                     run->dose_phantom, run->crt_beams, NULL, &dop,
                                     &run->crt_dij));
    }
    double nnz_all = (double)run->dij->nnz; /* exact below 2^53 */
    IMRT_TRY(imrt_context_sum(ctx, &nnz_all, 1));
    run->dij_nnz = (int64_t)nnz_all;
    run->t_dij = now_s() - t;
    run_log(run, &run->opt, "dij: %lld voxels x %d beamlets, %lld nonzeros, %.1f MB (%.2f s)",
            (long long)run->dij->nrows, run->dij->ncols, (long long)run->dij_nnz,
            (double)imrt_dij_bytes(run->dij->nrows, run->dij->ncols, run->dij_nnz,
                                   run->dij->nbeams) / 1e6,
            run->t_dij);
cleanup:
    return status;
}

imrt_status imrt_run_set_dij(imrt_run *run, imrt_dij **dij)
{
    if (!run || !dij || !*dij)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_set_dij: NULL argument");
    const imrt_dij *d = *dij;
    const imrt_grid *g = &run->dose_phantom->grid;
    if (!imrt_grid_equal(&d->grid, g))
        return imrt_error(IMRT_ERR_ARG,
                          "the dij was computed on a %d x %d x %d grid of %.3g x %.3g x %.3g mm, "
                          "but this spec's dose grid is %d x %d x %d of %.3g x %.3g x %.3g mm",
                          d->grid.nx, d->grid.ny, d->grid.nz, d->grid.dx, d->grid.dy, d->grid.dz,
                          g->nx, g->ny, g->nz, g->dx, g->dy, g->dz);
    if (d->ncols != imrt_beamset_nbeamlets(run->beams) ||
        d->nbeams != imrt_beamset_nbeams(run->beams))
        return imrt_error(IMRT_ERR_ARG,
                          "the dij has %d beams and %d beamlets, this spec's beams have %d and %d",
                          d->nbeams, d->ncols, imrt_beamset_nbeams(run->beams),
                          imrt_beamset_nbeamlets(run->beams));
    /* the dose model */
    const double dcut = imrt_dij_cutoff(d);
    const double pcut = imrt_dij_cutoff_held(run->plan->lateral_cutoff_mm);
    if (dcut != pcut) {
        char a[64] = "no lateral cut-off", b[64] = "none";
        if (dcut > 0)
            snprintf(a, sizeof a, "a lateral cut-off of %.6g mm", dcut);
        if (pcut > 0)
            snprintf(b, sizeof b, "%.6g mm", pcut);
        return imrt_error(IMRT_ERR_ARG, "the dij was computed with %s, this spec asks for %s "
                          "(lateral_cutoff_mm)", a, b);
    }
    imrt_dij_destroy(&run->dij);
    run->dij = *dij;
    run->dij_nnz = run->dij->nnz;
    *dij = NULL;
    return IMRT_OK;
}

imrt_status imrt_run_optimise(const imrt_context *ctx, imrt_run *run)
{
    imrt_status status = IMRT_OK;
    imrt_objectives *obj = NULL;
    if (!run || !run->dij)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_optimise: no dij (run imrt_run_dij first)");
    run->threads = imrt_context_threads(ctx);
    double t = now_s();
    const imrt_plan *plan = run->plan;
    const imrt_grid *dg = &run->dose_phantom->grid;
    int64_t nvd = imrt_grid_nvox(dg);
    const uint64_t budget = imrt_context_max_memory(ctx);
    const uint64_t held = held_bytes(run), need = plans_bytes(run, run->dij->nrows, run->dij->ncols);
    if (budget > 0 && held + need > budget)
        IMRT_FAIL(IMRT_ERR_BUDGET,
                  "%s: the optimisation needs %.1f MiB (doses, weights, objectives and solver "
                  "for %lld rows x %d beamlets) on top of %.1f MiB held for the phantom and the "
                  "dij, but the memory budget is %.1f MiB (--max-memory); raise the budget or "
                  "use a coarser grid or larger beamlets",
                  run->spec_path, (double)need / 1048576.0, (long long)run->dij->nrows,
                  run->dij->ncols, (double)held / 1048576.0, (double)budget / 1048576.0);
    run->imrt.beams = run->beams;
    run->imrt.dij = run->dij;
    imrt_free(run->imrt.x);
    imrt_free(run->imrt.dose);
    run->imrt.x = NULL;
    run->imrt.dose = NULL;
    IMRT_ALLOC(run->imrt.x, run->dij->ncols);
    IMRT_ALLOC(run->imrt.dose, nvd);
    IMRT_TRY(imrt_objectives_create(ctx, run->dij, run->dose_phantom, plan->objectives,
                                    plan->nobjectives, &obj));
    IMRT_TRY(imrt_objectives_default_start(obj, plan->rx.dose_gy, run->imrt.x));
    imrt_optimize_options oo;
    imrt_optimize_options_default(&oo);
    oo.solver = plan->solver;
    run_logger lg = {run, &run->opt};
    oo.log = solver_log;
    oo.log_user = &lg;
    run_log(run, &run->opt,
            "optimising %d objectives (%d hard constraints), at most %d iterations",
            plan->nobjectives, imrt_objectives_nconstraints(obj), plan->solver.max_iterations);
    IMRT_TRY(imrt_optimize(ctx, obj, &oo, run->imrt.x, &run->stats));
    run_log(run, &run->opt, "solver: %s", solver_description(run->stats.method));
    run->nconstraints = imrt_objectives_nconstraints(obj);
    imrt_free(run->constraints);
    run->constraints = NULL;
    if (run->nconstraints > 0) {
        IMRT_ALLOC(run->constraints, run->nconstraints);
        for (int i = 0; i < run->nconstraints; i++)
            IMRT_TRY(imrt_objectives_constraint(obj, i, oo.constraint_tol, &run->constraints[i]));
    }
    IMRT_TRY(imrt_dij_dose(run->dij, run->imrt.x, run->imrt.dose));
    IMRT_TRY(imrt_context_sum_float(ctx, run->imrt.dose, nvd)); /* distributed: other rows */
    run->imrt.norm_factor = 1.0;
    if (plan->rx.normalise) {
        IMRT_TRY(imrt_normalisation_factor(&plan->rx, run->dose_phantom, run->imrt.dose,
                                           &run->imrt.norm_factor));
        imrt_dose_scale(run->imrt.dose, nvd, run->imrt.norm_factor);
        for (int32_t j = 0; j < run->dij->ncols; j++)
            run->imrt.x[j] *= run->imrt.norm_factor;
    }
    run->t_optimize = now_s() - t;
    run_log(run, &run->opt,
            "optimised: %d iterations, %d evaluations, F %.6g -> %.6g, stop: %s, "
            "normalisation x%.4f (%.2f s)",
            run->stats.iterations, run->stats.evaluations, run->stats.f_start, run->stats.f,
            imrt_stop_reason_name(run->stats.stop), run->imrt.norm_factor, run->t_optimize);
    IMRT_TRY(imrt_plan_metrics_destroy_and_compute(run, &run->imrt));
cleanup:
    imrt_objectives_destroy(&obj);
    return status;
}

imrt_status imrt_run_conformal(const imrt_context *ctx, imrt_run *run)
{
    imrt_status status = IMRT_OK;
    if (!run || !run->dij)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_conformal: no dij (run imrt_run_dij first)");
    double t = now_s();
    const imrt_plan *plan = run->plan;
    int64_t nvd = imrt_grid_nvox(&run->dose_phantom->grid);
    const imrt_beamset *cbs = run->crt_beams ? run->crt_beams : run->beams;
    const imrt_dij *cdij = run->crt_dij ? run->crt_dij : run->dij;
    run->crt.beams = cbs;
    run->crt.dij = cdij;
    IMRT_ALLOC(run->aperture, cdij->ncols);
    IMRT_ALLOC(run->crt.x, cdij->ncols);
    IMRT_ALLOC(run->crt.dose, nvd);
    IMRT_ALLOC(run->crt_beam_weight, cdij->nbeams);
    IMRT_TRY(imrt_beamset_aperture(cbs, run->dose_phantom, run->target, plan->crt_margin_mm,
                                   run->aperture));
    IMRT_TRY(imrt_conformal_weights(ctx, cdij, run->aperture, run->dose_phantom, run->target,
                                    plan->rx.dose_gy, run->crt.x, run->crt_beam_weight));
    IMRT_TRY(imrt_conformal_dose(ctx, cdij, run->crt.x, run->crt.dose));
    run->crt.norm_factor = 1.0;
    if (plan->rx.normalise) {
        IMRT_TRY(imrt_normalisation_factor(&plan->rx, run->dose_phantom, run->crt.dose,
                                           &run->crt.norm_factor));
        imrt_dose_scale(run->crt.dose, nvd, run->crt.norm_factor);
        for (int32_t j = 0; j < cdij->ncols; j++)
            run->crt.x[j] *= run->crt.norm_factor;
    }
    run->t_crt = now_s() - t;
    run_log(run, &run->opt,
            "3D-CRT: %d beams, aperture margin %.1f mm, normalisation x%.4f (%.2f s)",
            cdij->nbeams, plan->crt_margin_mm, run->crt.norm_factor, run->t_crt);
    IMRT_TRY(imrt_plan_metrics_destroy_and_compute(run, &run->crt));
cleanup:
    return status;
}

imrt_status imrt_run_plan(const imrt_context *ctx, const char *spec_path,
                          const imrt_run_options *opt, imrt_run **out)
{
    imrt_status status = IMRT_OK;
    imrt_run *run = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_plan: NULL argument");
    *out = NULL;
    double t0 = now_s();
    IMRT_TRY(imrt_run_load(spec_path, opt, &run));
    run->threads = imrt_context_threads(ctx);
    IMRT_TRY(imrt_run_dij(ctx, run));
    IMRT_TRY(imrt_run_optimise(ctx, run));
    IMRT_TRY(imrt_run_conformal(ctx, run));
    run->t_total = now_s() - t0;
    *out = run;
    run = NULL;
cleanup:
    imrt_run_destroy(&run);
    return status;
}

void imrt_run_destroy(imrt_run **pr)
{
    if (!pr || !*pr)
        return;
    imrt_run *r = *pr;
    imrt_phantom_destroy(&r->phantom);
    imrt_plan_destroy(&r->plan);
    imrt_spec_info_destroy(&r->info);
    imrt_phantom_destroy(&r->dose_phantom);
    imrt_beamset_destroy(&r->beams);
    imrt_dij_destroy(&r->dij);
    imrt_beamset_destroy(&r->crt_beams);
    imrt_dij_destroy(&r->crt_dij);
    imrt_free(r->aperture);
    imrt_free(r->crt_beam_weight);
    imrt_run_plan_result *plans[2] = {&r->imrt, &r->crt};
    for (int i = 0; i < 2; i++) {
        imrt_free(plans[i]->x);
        imrt_free(plans[i]->dose);
        imrt_plan_metrics_destroy(&plans[i]->metrics);
    }
    imrt_free(r->constraints);
    imrt_free(r->log);
    imrt_free(r);
    *pr = NULL;
}

/* ---- metrics.json ---------------------------------------------------------- */

static json_t *json_real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *beams_json(const imrt_beamset *bs, const double *beam_weight)
{
    json_t *arr = json_array();
    for (int b = 0; arr && b < imrt_beamset_nbeams(bs); b++) {
        const imrt_beam *beam = imrt_beamset_beam(bs, b);
        json_t *o = json_pack("{s:f, s:f}", "gantry_deg", beam->gantry_deg, "couch_deg",
                              beam->couch_deg);
        if (o && beam_weight)
            json_object_set_new(o, "weight", json_real_or_null(beam_weight[b]));
        json_array_append_new(arr, o);
    }
    return arr;
}

imrt_status imrt_run_metrics_json(const imrt_run *run, json_t **out)
{
    imrt_status status = IMRT_OK;
    json_t *root = NULL, *plans = NULL;
    if (!run || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_metrics_json: NULL argument");
    *out = NULL;
    const imrt_grid *pg = &run->phantom->grid, *dg = &run->dose_phantom->grid;
    const imrt_dij *d = run->dij;
    const int64_t nnz = run->dij_nnz > 0 ? run->dij_nnz : d->nnz;
    root = json_pack(
        "{s:{s:s, s:[i,i,i], s:[f,f,f], s:[i,i,i], s:[f,f,f], s:[f,f,f]}, "
        "s:{s:I, s:i, s:i, s:I, s:I, s:i, s:f, s:f}}",
        "phantom", "name", run->phantom->name, "dims", pg->nx, pg->ny, pg->nz, "spacing_mm",
        pg->dx, pg->dy, pg->dz, "dose_dims", dg->nx, dg->ny, dg->nz, "dose_spacing_mm", dg->dx,
        dg->dy, dg->dz, "origin_mm", pg->origin[0], pg->origin[1], pg->origin[2], "dij",
        "voxels", (json_int_t)d->nrows, "beamlets", (int)d->ncols, "scatter_map_columns",
        (int)d->nvirt, "nnz", (json_int_t)nnz,
        "bytes", (json_int_t)imrt_dij_bytes(d->nrows, d->ncols, nnz, d->nbeams), "beams",
        d->nbeams, "beamlet_mm", d->beamlet_mm, "lateral_cutoff_mm",
        imrt_dij_cutoff(d));
    if (!root)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build metrics.json");
    IMRT_TRY(imrt_compare_metrics_json(run->imrt.metrics, run->crt.metrics, &plans));
    json_object_update(root, plans);
    json_t *pimrt = json_object_get(json_object_get(root, "plans"), "imrt");
    json_t *pcrt = json_object_get(json_object_get(root, "plans"), "3dcrt");
    if (pimrt) {
        json_t *cons = json_array();
        for (int i = 0; i < run->nconstraints; i++) {
            const imrt_constraint_status *c = &run->constraints[i];
            const imrt_objective_def *def = &run->plan->objectives[c->def];
            json_array_append_new(cons, json_pack("{s:s, s:o, s:o, s:o, s:b}", "structure",
                                                  def->structure, "value",
                                                  json_real_or_null(c->value), "bound",
                                                  json_real_or_null(c->bound), "violation",
                                                  json_real_or_null(c->violation), "holds",
                                                  c->holds));
        }
        json_object_set_new(
            pimrt, "solver",
            json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:s, s:o}", "method",
                      solver_description(run->stats.method), "iterations", run->stats.iterations,
                      "hessian_products", run->stats.hessian_products,
                      "evaluations", run->stats.evaluations, "outer_iterations",
                      run->stats.outer_iterations, "f_start", run->stats.f_start, "f",
                      run->stats.f, "pg_norm", run->stats.pg_norm, "wall_s", run->stats.wall_s,
                      "stop", imrt_stop_reason_name(run->stats.stop), "constraints", cons));
        json_object_set_new(pimrt, "beams", beams_json(run->beams, NULL));
    }
    if (pcrt) {
        json_object_set_new(pcrt, "solver",
                            json_pack("{s:s, s:f}", "method",
                                      "uniform apertures, beam weights by NNLS (LAPACKE)",
                                      "aperture_margin_mm", run->plan->crt_margin_mm));
        json_object_set_new(pcrt, "beams", beams_json(run->crt.beams, run->crt_beam_weight));
    }
    json_object_set_new(root, "timings_s",
                        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "phantom",
                                  run->t_phantom, "dij", run->t_dij, "optimize", run->t_optimize,
                                  "conformal", run->t_crt, "metrics", run->t_metrics, "output",
                                  run->t_output, "total", run->t_total + run->t_output));
    json_object_set_new(root, "threads", json_integer(run->threads));
    json_object_set_new(root, "version", json_string(imrt_version()));
    json_object_set_new(root, "spec", json_string(run->spec_path));
    *out = root;
    root = NULL;
cleanup:
    json_decref(plans);
    json_decref(root);
    return status;
}

/* ---- output folder ------------------------------------------------------------ */

#define IMRT_DVH_BIN_GY 0.1

static imrt_status write_dvh_csv(const imrt_run *run, const char *path)
{
    imrt_status status = IMRT_OK;
    imrt_atomic_file *f = NULL;
    imrt_dvh *h = NULL;
    imrt_dvh_binned *b = NULL;
    IMRT_TRY(imrt_atomic_open(path, &f));
    FILE *s = imrt_atomic_stream(f);
    fprintf(s, "structure,plan,dose_gy,volume_pct,volume_cm3\n");
    const imrt_phantom *dp = run->dose_phantom;
    const imrt_run_plan_result *plans[2] = {&run->imrt, &run->crt};
    const char *names[2] = {"imrt", "3dcrt"};
    double dmax = 0;
    for (int p = 0; p < 2; p++)
        for (int64_t v = 0; v < imrt_grid_nvox(&dp->grid); v++)
            dmax = fmax(dmax, (double)plans[p]->dose[v]);
    for (int si = 0; si < dp->nstructures; si++) {
        if (dp->structures[si].count == 0)
            continue;
        for (int p = 0; p < 2; p++) {
            IMRT_TRY(imrt_dvh_create(&dp->grid, plans[p]->dose, dp->structures[si].mask, &h));
            IMRT_TRY(imrt_dvh_bin(h, IMRT_DVH_BIN_GY, dmax, &b));
            for (int j = 0; j < b->nbins; j++)
                fprintf(s, "%s,%s,%.2f,%.4f,%.4f\n", dp->structures[si].name, names[p],
                        b->dose_gy[j], b->volume_pct[j], b->volume_cc[j]);
            imrt_dvh_binned_destroy(&b);
            imrt_dvh_destroy(&h);
        }
    }
    IMRT_TRY(imrt_atomic_commit(&f));
cleanup:
    imrt_dvh_binned_destroy(&b);
    imrt_dvh_destroy(&h);
    imrt_atomic_abort(&f);
    return status;
}

static imrt_status write_dvh_png(const imrt_run *run, const int *colours, const char *path)
{
    imrt_status status = IMRT_OK;
    const imrt_phantom *dp = run->dose_phantom;
    int n = dp->nstructures;
    imrt_plot_dvh_curve *curves = NULL;
    imrt_dvh **hs = NULL;
    imrt_dvh_binned **bs = NULL;
    IMRT_ALLOC(curves, 2 * n);
    IMRT_ALLOC(hs, 2 * n);
    IMRT_ALLOC(bs, 2 * n);
    int nc = 0;
    const imrt_run_plan_result *plans[2] = {&run->imrt, &run->crt};
    for (int p = 0; p < 2; p++)
        for (int si = 0; si < n; si++) {
            const imrt_structure *st = &dp->structures[si];
            if (st->count == 0 || st->kind == IMRT_KIND_BODY)
                continue;
            IMRT_TRY(imrt_dvh_create(&dp->grid, plans[p]->dose, st->mask, &hs[nc]));
            IMRT_TRY(imrt_dvh_bin(hs[nc], IMRT_DVH_BIN_GY, 0, &bs[nc]));
            curves[nc].name = st->name;
            curves[nc].colour = colours[si];
            curves[nc].dashed = p;
            curves[nc].npoints = bs[nc]->nbins;
            curves[nc].dose_gy = bs[nc]->dose_gy;
            curves[nc].volume_pct = bs[nc]->volume_pct;
            nc++;
        }
    imrt_plot_dvh_opts o;
    imrt_plot_dvh_defaults(&o);
    char title[128];
    snprintf(title, sizeof title, "DVH - %s (IMRT solid, 3D-CRT dashed)", run->phantom->name);
    o.title = title;
    o.prescription_gy = run->plan->rx.dose_gy;
    IMRT_TRY(imrt_plot_dvh(path, curves, nc, &o));
cleanup:
    for (int i = 0; hs && bs && i < 2 * n; i++) {
        imrt_dvh_destroy(&hs[i]);
        imrt_dvh_binned_destroy(&bs[i]);
    }
    imrt_free(hs);
    imrt_free(bs);
    imrt_free(curves);
    return status;
}

typedef struct {
    const char *file;
    const char *caption;
} out_image;

#define IMRT_MAX_IMAGES 64

imrt_status imrt_run_write_weights(const imrt_run *run, const char *path, const char *program,
                                   int digits)
{
    if (!run || !path || !program || !run->dij || !run->imrt.x)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_write_weights: no optimised weights");
    if (digits < 1 || digits > 17)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_write_weights: digits %d outside [1, 17]", digits);
    imrt_atomic_file *f = NULL;
    imrt_status st = imrt_atomic_open(path, &f);
    if (st == IMRT_OK) {
        FILE *s = imrt_atomic_stream(f);
        fprintf(s, "# %s beamlet weights of %s, one per beamlet, beam by beam\n", program,
                run->spec_path);
        for (int32_t j = 0; j < run->dij->ncols; j++)
            fprintf(s, "%.*g\n", digits, run->imrt.x[j]);
        st = imrt_atomic_commit(&f);
    }
    imrt_atomic_abort(&f);
    return st;
}

/* What the two halves of imrt_run_write share (read-only while they run). */
typedef struct {
    imrt_run *run;
    imrt_outdir *od;
    const uint8_t *labels;
    const int *colours;
    const imrt_label_entry *legend;
    const imrt_plot_structure *outl;
    char (*img_paths)[4096];
    char (*img_caps)[160];
    int nimg;
} write_job;

/* The volumes: doses, density, label map and its legend. */
static imrt_status write_volumes(write_job *J)
{
    imrt_status status = IMRT_OK;
    const imrt_run *run = J->run;
    const imrt_phantom *ph = run->phantom;
    const imrt_grid *pg = &ph->grid, *dg = &run->dose_phantom->grid;
    char path[4096];
    IMRT_TRY(imrt_outdir_path(J->od, "dose_imrt.nii.gz", path, sizeof path));
    IMRT_TRY(imrt_nifti_write_float(path, dg, run->imrt.dose, "imrt IMRT dose, Gy"));
    IMRT_TRY(imrt_outdir_path(J->od, "dose_3dcrt.nii.gz", path, sizeof path));
    IMRT_TRY(imrt_nifti_write_float(path, dg, run->crt.dose, "imrt 3D-CRT dose, Gy"));
    IMRT_TRY(imrt_outdir_path(J->od, "density.nii.gz", path, sizeof path));
    IMRT_TRY(imrt_nifti_write_float(path, pg, ph->density, "relative electron density"));
    IMRT_TRY(imrt_outdir_path(J->od, "structures.nii.gz", path, sizeof path));
    IMRT_TRY(imrt_nifti_write_labels(path, pg, J->labels, "imrt structures (label = legend)"));
    IMRT_TRY(imrt_outdir_path(J->od, "structures.ctbl", path, sizeof path));
    IMRT_TRY(imrt_nifti_write_legend(path, J->legend, ph->nstructures));
cleanup:
    return status;
}

/* The fluence maps of the IMRT beams, into image slots first.. of J. */
static imrt_status write_fluence(write_job *J, int first, int *count)
{
    imrt_status status = IMRT_OK;
    double *wb = NULL;
    float *uvb = NULL;
    imrt_run *run = J->run;
    char (*img_paths)[4096] = J->img_paths;
    char (*img_caps)[160] = J->img_caps;
    int nimg = first;
    const imrt_dij *d = run->dij;
    IMRT_ALLOC(wb, d->ncols);
    IMRT_ALLOC(uvb, 2 * (size_t)d->ncols);
    for (int b = 0; b < d->nbeams && nimg < IMRT_MAX_IMAGES; b++) {
        int32_t j0 = d->beam_start[b], j1 = d->beam_start[b + 1];
        for (int32_t j = j0; j < j1; j++) {
            wb[j - j0] = run->imrt.x[j];
            uvb[2 * (j - j0)] = d->bixel_uv[2 * j];
            uvb[2 * (j - j0) + 1] = d->bixel_uv[2 * j + 1];
        }
        const imrt_beam *beam = imrt_beamset_beam(run->beams, b);
        imrt_plot_fluence_opts fo;
        imrt_plot_fluence_defaults(&fo);
        char bname[32];
        snprintf(bname, sizeof bname, "beam %02d", b + 1);
        fo.beam_name = run->plan->beams[b].name[0] ? run->plan->beams[b].name : bname;
        fo.gantry_deg = beam->gantry_deg;
        fo.couch_deg = beam->couch_deg;
        fo.units = "weight (Gy at dmax)";
        char name[64];
        snprintf(name, sizeof name, "fluence_beam%02d.png", b + 1);
        IMRT_TRY(imrt_outdir_path(J->od, name, img_paths[nimg], sizeof img_paths[nimg]));
        IMRT_TRY(imrt_plot_fluence(img_paths[nimg], j1 - j0, uvb, wb, d->beamlet_mm, &fo));
        snprintf(img_caps[nimg], sizeof img_caps[nimg], "IMRT fluence, %s (gantry %.0f deg)",
                 fo.beam_name, beam->gantry_deg);
        nimg++;
    }
cleanup:
    *count = nimg - first;
    imrt_free(wb);
    imrt_free(uvb);
    return status;
}

/* Pictures write_pictures makes: the DVH plot, then both plans in three planes. */
#define PICTURES_BEFORE_FLUENCE (1 + 2 * 3)

/* The DVH table, its plot and the dose pictures (paths and captions go to J). */
static imrt_status write_pictures(write_job *J)
{
    imrt_status status = IMRT_OK;
    imrt_run *run = J->run;
    const imrt_phantom *ph = run->phantom, *dp = run->dose_phantom;
    const imrt_grid *pg = &ph->grid, *dg = &dp->grid;
    const int ns = ph->nstructures;
    char path[4096];
    int nimg = 0;
    char (*img_paths)[4096] = J->img_paths;
    char (*img_caps)[160] = J->img_caps;

    /* DVH table and plot */
    IMRT_TRY(imrt_outdir_path(J->od, "dvh.csv", path, sizeof path));
    IMRT_TRY(write_dvh_csv(run, path));
    IMRT_TRY(imrt_outdir_path(J->od, "dvh.png", img_paths[nimg], sizeof img_paths[nimg]));
    IMRT_TRY(write_dvh_png(run, J->colours, img_paths[nimg]));
    snprintf(img_caps[nimg], sizeof img_caps[nimg], "Dose-volume histograms: IMRT (solid) and 3D-CRT (dashed)");
    nimg++;

    /* dose pictures through the isocentre, both plans on one colour scale */
    double dmax = 0;
    for (int64_t v = 0; v < imrt_grid_nvox(dg); v++)
        dmax = fmax(dmax, fmax((double)run->imrt.dose[v], (double)run->crt.dose[v]));
    const imrt_beam *b0 = imrt_beamset_beam(run->beams, 0);
    const char *plane_names[3] = {"axial", "coronal", "sagittal"};
    const imrt_run_plan_result *plans[2] = {&run->imrt, &run->crt};
    const char *plan_names[2] = {"imrt", "3dcrt"}, *plan_titles[2] = {"IMRT", "3D-CRT"};
    for (int p = 0; p < 2; p++)
        for (int pl = 0; pl < 3; pl++) {
            imrt_plot_slice_data sd = {pg, ph->density, dg, plans[p]->dose, J->labels, J->outl, ns};
            imrt_plot_slice_opts so;
            imrt_plot_slice_defaults(&so);
            char title[96];
            snprintf(title, sizeof title, "%s - %s", plan_titles[p], ph->name);
            so.title = title;
            memcpy(so.point, b0->iso, sizeof so.point);
            so.prescription_gy = run->plan->rx.dose_gy;
            so.dose_max_gy = dmax;
            char name[64];
            snprintf(name, sizeof name, "dose_%s_%s.png", plan_names[p], plane_names[pl]);
            IMRT_TRY(imrt_outdir_path(J->od, name, img_paths[nimg], sizeof img_paths[nimg]));
            IMRT_TRY(imrt_plot_slice(img_paths[nimg], (imrt_plane)pl, &sd, &so));
            snprintf(img_caps[nimg], sizeof img_caps[nimg], "%s dose, %s plane through the isocentre",
                     plan_titles[p], plane_names[pl]);
            nimg++;
        }

cleanup:
    J->nimg = nimg;
    return status;
}

imrt_status imrt_run_write(imrt_run *run, const char *dir, int force)
{
    imrt_status status = IMRT_OK;
    imrt_outdir *od = NULL;
    uint8_t *labels = NULL;
    int *colours = NULL;
    imrt_structure_kind *kinds = NULL;
    imrt_label_entry *legend = NULL;
    imrt_plot_structure *outl = NULL;
    json_t *metrics = NULL;
    char path[4096];
    char img_paths[IMRT_MAX_IMAGES][4096];
    char img_caps[IMRT_MAX_IMAGES][160];
    imrt_report_image images[IMRT_MAX_IMAGES];
    int nimg = 0;
    if (!run || !dir)
        return imrt_error(IMRT_ERR_ARG, "imrt_run_write: NULL argument");
    double t = now_s();
    IMRT_TRY(imrt_outdir_open(dir, force, &od));
    const imrt_phantom *ph = run->phantom;
    const imrt_grid *pg = &ph->grid;
    int ns = ph->nstructures;

    IMRT_ALLOC(labels, imrt_grid_nvox(pg));
    imrt_phantom_label_map(ph, labels);
    IMRT_ALLOC(colours, ns > 0 ? ns : 1);
    IMRT_ALLOC(kinds, ns > 0 ? ns : 1);
    IMRT_ALLOC(legend, ns > 0 ? ns : 1);
    IMRT_ALLOC(outl, ns > 0 ? ns : 1);
    for (int s = 0; s < ns; s++)
        kinds[s] = ph->structures[s].kind;
    imrt_plot_assign_colours(kinds, ns, colours);
    for (int s = 0; s < ns; s++) {
        legend[s].value = s + 1;
        legend[s].name = ph->structures[s].name;
        legend[s].kind = ph->structures[s].kind;
        imrt_plot_palette_rgb8(colours[s], legend[s].rgb);
        outl[s].name = ph->structures[s].name;
        outl[s].colour = colours[s];
        outl[s].mask = ph->structures[s].mask;
    }

    /* The volumes (gzip) and the fluence maps, and the DVH with the dose
     * pictures, are independent: with two or more threads the two halves
     * are written side by side (about equal work). Each half keeps its
     * own status and message (error messages are per thread); the first
     * failure in file order is reported. */
    {
        write_job J = {run, od, labels, colours, legend, outl, img_paths, img_caps, 0};
        imrt_status st[2] = {IMRT_OK, IMRT_OK};
        char msg[2][512] = {"", ""};
        int nflu = 0;
#pragma omp parallel sections num_threads(run->threads > 1 ? 2 : 1)
        {
#pragma omp section
            {
                st[0] = write_volumes(&J);
                if (st[0] == IMRT_OK) /* after the other half's pictures */
                    st[0] = write_fluence(&J, PICTURES_BEFORE_FLUENCE, &nflu);
                if (st[0] != IMRT_OK)
                    snprintf(msg[0], sizeof msg[0], "%s", imrt_last_error());
            }
#pragma omp section
            {
                st[1] = write_pictures(&J);
                if (st[1] != IMRT_OK)
                    snprintf(msg[1], sizeof msg[1], "%s", imrt_last_error());
            }
        }
        for (int q = 0; q < 2; q++)
            if (st[q] != IMRT_OK)
                IMRT_FAIL(st[q], "%s", msg[q]);
        if (J.nimg != PICTURES_BEFORE_FLUENCE)
            IMRT_FAIL(IMRT_ERR_INTERNAL, "output folder: %d pictures before the fluence maps, "
                      "expected %d", J.nimg, PICTURES_BEFORE_FLUENCE);
        nimg = J.nimg + nflu;
    }

    /* metrics.json and the report */
    run->t_output = now_s() - t;
    IMRT_TRY(imrt_run_metrics_json(run, &metrics));
    char *text = json_dumps(metrics, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(8));
    if (!text)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot serialise metrics.json");
    IMRT_TRY(imrt_outdir_path(od, "metrics.json", path, sizeof path));
    status = imrt_io_write_file(path, text, strlen(text));
    free(text);
    if (status != IMRT_OK)
        goto cleanup;
    for (int i = 0; i < nimg; i++) {
        images[i].path = img_paths[i];
        images[i].caption = img_caps[i];
    }
    IMRT_TRY(imrt_outdir_path(od, "report.html", path, sizeof path));
    IMRT_TRY(imrt_report_write(path, metrics, images, nimg, run->log, NULL));
    IMRT_TRY(imrt_outdir_commit(od));
    run->t_output = now_s() - t;
cleanup:
    imrt_outdir_destroy(&od);
    json_decref(metrics);
    imrt_free(labels);
    imrt_free(colours);
    imrt_free(kinds);
    imrt_free(legend);
    imrt_free(outl);
    return status;
}
