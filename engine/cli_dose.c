/*
 * engine/cli_dose.c - `imrt dose SPEC [--weights FILE] -o DIR`: forward dose
 * of a plan spec for given beamlet weights (default all 1, e.g. open
 * fields), without a dij: the dose as NIfTI and, for every open-field beam,
 * its central-axis depth dose and the profiles through the isocentre as CSV.
 */
#include "cli_impl.h"
#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <nifti1_io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Read nbeamlets non-negative weights separated by white space or commas;
 * '#' starts a comment that runs to the end of the line. */
static imrt_status read_weights(const char *path, int32_t n, double *w)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return imrt_error(IMRT_ERR_IO, "cannot open weights file %s: %s", path, strerror(errno));
    int32_t k = 0;
    char tok[128];
    int line = 1, c, len = 0;
    imrt_status st = IMRT_OK;
    do {
        c = fgetc(f);
        if (c == EOF || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (len > 0) {
                tok[len] = '\0';
                char *end = NULL;
                errno = 0;
                double v = strtod(tok, &end);
                if (errno || *end || !isfinite(v) || v < 0) {
                    st = imrt_error(IMRT_ERR_PARSE,
                                    "%s:%d: weight '%s' is not a finite number >= 0", path, line,
                                    tok);
                    break;
                }
                if (k >= n) {
                    st = imrt_error(IMRT_ERR_PARSE, "%s: more than the %d weights the plan's "
                                    "beamlets need", path, n);
                    break;
                }
                w[k++] = v;
                len = 0;
            }
            line += c == '\n';
        } else if (c == '#' && len == 0) {
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            line += c == '\n';
        } else if (len < (int)sizeof tok - 1) {
            tok[len++] = (char)c;
        } else {
            st = imrt_error(IMRT_ERR_PARSE, "%s:%d: token too long", path, line);
            break;
        }
    } while (c != EOF);
    fclose(f);
    if (st == IMRT_OK && k != n)
        st = imrt_error(IMRT_ERR_PARSE, "%s holds %d weights; the plan has %d beamlets", path, k,
                        n);
    return st;
}

/* Write a two-column CSV (position, dose) with a percentage column relative
 * to `ref`, atomically. */
static imrt_status write_csv(const char *dir, const char *name, const char *xname,
                             const double *x, const double *d, int n, double ref)
{
    char tmp[4200], fin[4200];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(fin, sizeof fin, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return imrt_error(IMRT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    int ok = fprintf(f, "%s,dose_gy,percent\n", xname) > 0;
    for (int q = 0; q < n && ok; q++)
        ok = fprintf(f, "%.3f,%.6g,%.3f\n", x[q], d[q], ref > 0 ? 100.0 * d[q] / ref : 0.0) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, fin) != 0) {
        unlink(tmp);
        return imrt_error(IMRT_ERR_IO, "error writing %s", fin);
    }
    return IMRT_OK;
}

/* Depth dose along an open-field beam's central axis (1 mm steps from where
 * it enters the grid) and profiles along u and v through the isocentre. */
static imrt_status open_field_curves(const imrt_context *ctx, const char *dir,
                                     const imrt_phantom *ph, const imrt_beamset *bs,
                                     const imrt_machine *m, const imrt_dose_options *o, int b,
                                     const double *w_all)
{
    imrt_status status = IMRT_OK;
    const imrt_beam *bm = &bs->beams[b];
    double *w = NULL, *pts = NULL, *x = NULL, *d = NULL;
    IMRT_ALLOC(w, bs->nbeamlets);
    for (int32_t j = bm->first; j < bm->first + bm->count; j++)
        w[j] = w_all ? w_all[j] : 1.0;
    /* central axis inside the grid box */
    double lo[3], hi[3], t0 = 0, t1 = 1e9;
    imrt_grid_bounds(&ph->grid, lo, hi);
    for (int a = 0; a < 3; a++) {
        if (fabs(bm->dir[a]) < 1e-12) {
            if (bm->src[a] < lo[a] || bm->src[a] > hi[a])
                t1 = -1;
            continue;
        }
        double ta = (lo[a] - bm->src[a]) / bm->dir[a], tb = (hi[a] - bm->src[a]) / bm->dir[a];
        t0 = fmax(t0, fmin(ta, tb));
        t1 = fmin(t1, fmax(ta, tb));
    }
    char name[128];
    if (t1 > t0) {
        const int n = (int)floor(t1 - t0) + 1;
        IMRT_ALLOC(pts, 3 * (int64_t)n);
        IMRT_ALLOC(x, n);
        IMRT_ALLOC(d, n);
        for (int q = 0; q < n; q++) {
            x[q] = q;
            for (int a = 0; a < 3; a++)
                pts[3 * q + a] = bm->src[a] + (t0 + q + 1e-6) * bm->dir[a];
        }
        IMRT_TRY(imrt_dose_points(ctx, ph, bs, m, o, w, n, pts, d));
        double dmax = 0;
        for (int q = 0; q < n; q++)
            dmax = fmax(dmax, d[q]);
        snprintf(name, sizeof name, "beam%02d_depth_dose.csv", b + 1);
        IMRT_TRY(write_csv(dir, name, "depth_mm", x, d, n, dmax));
        imrt_free(pts);
        imrt_free(x);
        imrt_free(d);
        pts = x = d = NULL;
    }
    /* Profiles along u and v, 0.5 mm steps over 1.5 x the field: through the
     * isocentre, and at d_max, 50, 100 and 200 mm depth on the central axis
     * when the axis reaches them (an SSD set-up puts the isocentre on the
     * surface, where the dose is still building up). */
    const double depths[5] = {-1, m->dmax, 50, 100, 200};
    for (int q5 = 0; q5 < 5; q5++) {
        double centre[3], t;
        if (q5 == 0) {
            memcpy(centre, bm->iso, sizeof centre);
            t = bm->sad;
        } else {
            t = t0 + depths[q5];
            if (!(t1 > t0) || t > t1)
                continue;
            for (int a = 0; a < 3; a++)
                centre[a] = bm->src[a] + t * bm->dir[a];
        }
        for (int axis = 0; axis < 2; axis++) {
            const double half = 0.75 * bm->field_mm[axis] * t / bm->sad;
            const int n = (int)(2 * half / 0.5) + 1;
            const double *e = axis ? bm->ev : bm->eu;
            IMRT_ALLOC(pts, 3 * (int64_t)n);
            IMRT_ALLOC(x, n);
            IMRT_ALLOC(d, n);
            for (int q = 0; q < n; q++) {
                x[q] = -half + 0.5 * q;
                for (int a = 0; a < 3; a++)
                    pts[3 * q + a] = centre[a] + x[q] * e[a];
            }
            IMRT_TRY(imrt_dose_points(ctx, ph, bs, m, o, w, n, pts, d));
            if (q5 == 0)
                snprintf(name, sizeof name, "beam%02d_profile_%c_iso.csv", b + 1, axis ? 'v' : 'u');
            else
                snprintf(name, sizeof name, "beam%02d_profile_%c_d%03.0f.csv", b + 1,
                         axis ? 'v' : 'u', depths[q5]);
            IMRT_TRY(write_csv(dir, name, axis ? "v_mm" : "u_mm", x, d, n, d[n / 2]));
            imrt_free(pts);
            imrt_free(x);
            imrt_free(d);
            pts = x = d = NULL;
        }
    }
cleanup:
    imrt_free(w);
    imrt_free(pts);
    imrt_free(x);
    imrt_free(d);
    return status;
}

int imrt_cmd_dose(int argc, char **argv)
{
    static const char usage[] =
        "usage: imrt dose SPEC -o DIR [--weights FILE] [--machine FILE] [--cutoff] [--force]\n"
        "                 [--threads N] [--quiet] [--max-memory SIZE]\n"
        "Forward dose of a plan spec for given beamlet weights, without a dij.\n"
        "  -o DIR           output folder: dose.nii.gz and, for each open-field beam NN,\n"
        "                   beamNN_depth_dose.csv (central axis, 1 mm steps) and profiles\n"
        "                   beamNN_profile_{u,v}_iso.csv through the isocentre and\n"
        "                   beamNN_profile_{u,v}_dDDD.csv at d_max, 50, 100, 200 mm depth\n"
        "  --weights FILE   one weight per beamlet (white space or commas); default all 1\n"
        "  --machine FILE   machine description (JSON) instead of the generic 6 MV beam\n"
        "  --cutoff         the folded cut-off model (primary 1e-3, 20 mm window, far dose folded;\n"
        "                   exact for a uniform fluence) instead of the exact model (default:\n"
        "                   every beamlet, or those within the spec's lateral_cutoff_mm)\n"
        "  --max-memory SIZE  memory budget, e.g. 8G (default: 70% of physical memory);\n"
        "                   phantom and dose grid over it are refused before allocating\n";
    enum { OPT_WEIGHTS = OPT_FIRST_LOCAL, OPT_MACHINE, OPT_CUTOFF };
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"weights", required_argument, NULL, OPT_WEIGHTS},
                                         {"machine", required_argument, NULL, OPT_MACHINE},
                                         {"cutoff", no_argument, NULL, OPT_CUTOFF},
                                         {NULL, 0, NULL, 0}};
    imrt_cli_common c = {0};
    const char *dir = NULL, *wpath = NULL, *mpath = NULL;
    int use_cutoff = 0;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("%s", usage);
            return IMRT_EXIT_OK;
        } else if (opt == 'o') {
            dir = optarg;
        } else if (opt == OPT_WEIGHTS) {
            wpath = optarg;
        } else if (opt == OPT_MACHINE) {
            mpath = optarg;
        } else if (opt == OPT_CUTOFF) {
            use_cutoff = 1;
        } else if (opt == '?') {
            return imrt_cli_usage_error("dose", "unknown option '%s'", argv[optind - 1]);
        } else if (opt == ':') {
            return imrt_cli_usage_error("dose", "option '%s' needs a value", argv[optind - 1]);
        } else {
            int r = imrt_cli_common_option(&c, opt, optarg, "dose");
            if (r < 0)
                return IMRT_EXIT_USAGE;
            if (r == 0)
                return imrt_cli_usage_error("dose", "option '%s' is not valid here",
                                            argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error("dose", "expected one SPEC argument, got %d", argc - optind);
    if (!dir)
        return imrt_cli_usage_error("dose", "the output folder -o DIR is required");
    const char *spec = argv[optind];
    struct stat sb;
    if (stat(dir, &sb) == 0 && !c.force) {
        fprintf(stderr, "imrt dose: output folder '%s' exists; use --force to replace it\n", dir);
        return IMRT_EXIT_OUTPUT;
    }
    imrt_context *ctx = imrt_cli_context(&c, "dose");
    if (!ctx)
        return IMRT_EXIT_RESOURCE;
    imrt_phantom *ph = NULL, *dph = NULL;
    imrt_plan *plan = NULL;
    imrt_beamset *bs = NULL;
    double *w = NULL;
    float *dose = NULL;
    imrt_machine m;
    imrt_machine_default(&m);
    imrt_status st = IMRT_OK;
    if (mpath)
        st = imrt_machine_load(mpath, &m);
    if (st == IMRT_OK)
        st = imrt_cli_dose_setup(spec, imrt_context_max_memory(ctx), &ph, &plan, &dph, &bs);
    if (st == IMRT_OK) {
        /* phantoms held, the dose grid and the weights, before allocating */
        const uint64_t nvp = (uint64_t)imrt_grid_nvox(&ph->grid);
        const uint64_t nvd = (uint64_t)imrt_grid_nvox(&dph->grid);
        const uint64_t need = nvp * (4u + (uint64_t)ph->nstructures) +
                              nvd * (4u + (uint64_t)dph->nstructures) + nvd * sizeof(float) +
                              (uint64_t)bs->nbeamlets * sizeof(double);
        const uint64_t budget = imrt_context_max_memory(ctx);
        if (budget > 0 && need > budget)
            st = imrt_error(IMRT_ERR_BUDGET,
                            "%s: the dose calculation needs %.1f MiB (phantom %d x %d x %d, dose "
                            "grid %d x %d x %d) but the memory budget is %.1f MiB "
                            "(--max-memory); raise the budget or use a coarser dose_grid_mm "
                            "(now %g mm: twice as coarse needs about %.1f MiB)",
                            spec, (double)need / 1048576.0, ph->grid.nx, ph->grid.ny,
                            ph->grid.nz, dph->grid.nx, dph->grid.ny, dph->grid.nz,
                            (double)budget / 1048576.0, dph->grid.dx,
                            (double)(need - nvd * (8u + (uint64_t)dph->nstructures) +
                                     nvd * (8u + (uint64_t)dph->nstructures) / 8u) /
                                1048576.0);
    }
    imrt_dose_options o;
    if (use_cutoff) {
        imrt_dose_options_from_plan(plan, &o);
    } else {
        imrt_dose_options_exact(&o);
        if (plan) /* part of the plan's model */
            o.lateral_cutoff_mm = plan->lateral_cutoff_mm;
    }
    if (st == IMRT_OK && wpath) {
        w = imrt_calloc((size_t)bs->nbeamlets, sizeof *w);
        st = w ? read_weights(wpath, bs->nbeamlets, w)
               : imrt_error(IMRT_ERR_NOMEM, "cannot allocate %d weights", bs->nbeamlets);
    }
    if (st == IMRT_OK) {
        dose = imrt_malloc((size_t)imrt_grid_nvox(&dph->grid) * sizeof *dose);
        if (!dose)
            st = imrt_error(IMRT_ERR_NOMEM, "cannot allocate the dose grid");
    }
    const double t0 = (double)clock() / CLOCKS_PER_SEC;
    if (st == IMRT_OK) {
        if (!c.quiet)
            fprintf(stderr, "imrt dose: %d x %d x %d dose grid, %d beams, %d beamlets%s\n",
                    dph->grid.nx, dph->grid.ny, dph->grid.nz, bs->nbeams, bs->nbeamlets,
                    use_cutoff ? " (folded cut-off model)" : "");
        st = imrt_dose_compute(ctx, dph, bs, &m, &o, w, NULL, dose);
    }
    /* every file goes to a staging folder renamed into place at the end, so
     * that a failed run leaves nothing behind (imrt/io.h) */
    const int reading = st != IMRT_OK;
    imrt_outdir *od = NULL;
    char path[4096];
    if (st == IMRT_OK)
        st = imrt_outdir_open(dir, c.force, &od);
    if (st == IMRT_OK)
        st = imrt_outdir_path(od, "dose.nii.gz", path, sizeof path);
    if (st == IMRT_OK) {
        char descrip[64];
        snprintf(descrip, sizeof descrip, "dose Gy (imrt %s)", imrt_version());
        st = imrt_nifti_write_float(path, &dph->grid, dose, descrip);
    }
    for (int b = 0; st == IMRT_OK && b < bs->nbeams; b++)
        if (bs->beams[b].open_field)
            st = open_field_curves(ctx, imrt_outdir_staging(od), dph, bs, &m, &o, b, w);
    if (st == IMRT_OK)
        st = imrt_outdir_commit(od);
    imrt_outdir_destroy(&od);
    int rc = IMRT_EXIT_OK;
    if (st != IMRT_OK)
        rc = reading ? imrt_cli_fail_input("dose", st) : imrt_cli_fail("dose", st);
    else if (!c.quiet)
        fprintf(stderr, "imrt dose: wrote %s (%.1f s of CPU)\n", dir,
                (double)clock() / CLOCKS_PER_SEC - t0);
    imrt_free(w);
    imrt_free(dose);
    imrt_beamset_destroy(&bs);
    imrt_phantom_destroy(&dph);
    imrt_phantom_destroy(&ph);
    imrt_plan_destroy(&plan);
    imrt_context_destroy(&ctx);
    return rc;
}
