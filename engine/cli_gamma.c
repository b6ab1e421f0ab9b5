/*
 * engine/cli_gamma.c - `imrt gamma A B`: gamma index (Low et al. 1998) of
 * dose B (evaluated) against dose A (reference), both NIfTI: pass rate, mean,
 * 95th percentile, maximum and points evaluated, and optionally the gamma map
 * as NIfTI on A's grid.
 */
#include "cli_impl.h"
#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: imrt gamma A.nii.gz B.nii.gz [--dose PCT] [--dta MM] [--threshold PCT] [--local]\n"
    "                  [-o GAMMA.nii.gz] [--force] [--threads N] [--quiet]\n"
    "\n"
    "Gamma index of dose B (evaluated) against dose A (reference), NIfTI doses in Gy\n"
    "(Low et al., Med Phys 25:656, 1998). Default 3 %/3 mm, global, 10 % threshold:\n"
    "for every voxel of A with at least 10 % of A's maximum dose, gamma = the smallest\n"
    "sqrt(r^2/DTA^2 + (B(x+r) - A(x))^2/dD^2) over points x+r within 2 x DTA, with B\n"
    "interpolated trilinearly (the grids may differ) and dD = PCT % of A's maximum\n"
    "(global) or of A(x) (--local). Method and tests: docs/metrics.md, section 5.\n"
    "Prints the pass rate (gamma <= 1), the mean gamma, the 95th percentile (nearest\n"
    "rank: 95 % of the points have a gamma at or below it), the maximum and the\n"
    "number of points evaluated. Gammas beyond the search radius are reported as\n"
    "2 (a lower bound). The exit code does not depend on the pass rate.\n"
    "\n"
    "options:\n"
    "  --dose PCT       dose-difference criterion, % in (0, 100] (default 3)\n"
    "  --dta MM         distance to agreement, mm in (0, 100] (default 3)\n"
    "  --threshold PCT  skip points of A below PCT % of A's maximum, [0, 100) (default 10)\n"
    "  --local          dD relative to each reference point instead of A's maximum\n"
    "  -o GAMMA.nii.gz  write the gamma map on A's grid (-1 where not evaluated)\n"
    "  --force          replace an existing GAMMA.nii.gz\n"
    "  --threads N      OpenMP threads (default: all cores); results do not depend on it\n"
    "  --quiet          no notes on standard error\n"
    "  --help           this text\n"
    "\n"
    "exit codes: 0 measured (any pass rate), 2 usage, 3 unreadable files, an all-zero\n"
    "            reference or no point evaluated, 4 out of memory, 5 cannot write the map\n";

enum { OPT_DOSE = OPT_FIRST_LOCAL, OPT_DTA, OPT_THRESHOLD, OPT_LOCAL };

#define MAX_DTA_MM 100.0
#define PERCENTILE 95.0

/* A missing or unreadable input is an input error (3), not an output error. */
static int input_fail(const char *cmd, imrt_status st)
{
    int rc = imrt_cli_fail(cmd, st);
    if (st == IMRT_ERR_IO || st == IMRT_ERR_UNSUPPORTED || st == IMRT_ERR_EXISTS)
        rc = IMRT_EXIT_INPUT;
    return rc;
}

static int cmp_float(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* Nearest-rank percentile of the evaluated points of a gamma map (values >= 0):
 * the value at rank ceil(p/100 x n) of the ascending order. */
static imrt_status map_percentile(const float *map, int64_t nvox, int64_t n, double pct,
                                  double *out)
{
    float *vals = imrt_malloc((size_t)n * sizeof *vals);
    if (!vals)
        return imrt_error(IMRT_ERR_NOMEM, "cannot allocate %lld gamma values for the percentile",
                          (long long)n);
    int64_t m = 0;
    for (int64_t v = 0; v < nvox && m < n; v++)
        if (map[v] >= 0.0f)
            vals[m++] = map[v];
    qsort(vals, (size_t)m, sizeof *vals, cmp_float);
    int64_t rank = (int64_t)ceil(pct / 100.0 * (double)m - 1e-9);
    if (rank < 1)
        rank = 1;
    if (rank > m)
        rank = m;
    *out = (double)vals[rank - 1];
    imrt_free(vals);
    return IMRT_OK;
}

static void print_grid(const char *role, const char *path, const imrt_grid *g)
{
    printf("%s %s: %d x %d x %d voxels of %g x %g x %g mm\n", role, path, g->nx, g->ny, g->nz,
           g->dx, g->dy, g->dz);
}

/* A gamma value, marked when it sits at the search limit (a lower bound). */
static void print_gamma(const char *label, double g, double cap)
{
    if (g >= cap - 1e-6)
        printf("%s: %.4f (search limit: at least this)\n", label, g);
    else
        printf("%s: %.4f\n", label, g);
}

int imrt_cmd_gamma(int argc, char **argv)
{
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"dose", required_argument, NULL, OPT_DOSE},
                                         {"dta", required_argument, NULL, OPT_DTA},
                                         {"threshold", required_argument, NULL, OPT_THRESHOLD},
                                         {"local", no_argument, NULL, OPT_LOCAL},
                                         {"output", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    imrt_cli_common common = {0};
    imrt_gamma_options go;
    imrt_gamma_defaults(&go);
    const char *out_path = NULL;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("%s", usage);
            return IMRT_EXIT_OK;
        case 'o':
            if (!*optarg || strcmp(optarg, "-") == 0)
                return imrt_cli_usage_error(cmd, "-o needs a file name for the gamma map");
            out_path = optarg;
            continue;
        case OPT_DOSE:
            if (!imrt_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &go.dose_pct) ||
                !(go.dose_pct > 0.0 && go.dose_pct <= 100.0))
                return imrt_cli_usage_error(cmd, "--dose '%s' must be a percentage in (0, 100]",
                                            optarg);
            continue;
        case OPT_DTA:
            if (!imrt_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &go.dist_mm) ||
                !(go.dist_mm > 0.0 && go.dist_mm <= MAX_DTA_MM))
                return imrt_cli_usage_error(cmd, "--dta '%s' must be a distance in (0, %g] mm",
                                            optarg, MAX_DTA_MM);
            continue;
        case OPT_THRESHOLD:
            if (!imrt_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &go.threshold_pct) ||
                !(go.threshold_pct >= 0.0 && go.threshold_pct < 100.0))
                return imrt_cli_usage_error(cmd, "--threshold '%s' must be a percentage in [0, 100)",
                                            optarg);
            continue;
        case OPT_LOCAL:
            go.local = 1;
            continue;
        case '?':
            return imrt_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        case ':':
            return imrt_cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            break;
        }
        int r = imrt_cli_common_option(&common, opt, optarg, cmd);
        if (r < 0)
            return IMRT_EXIT_USAGE;
        if (r == 0)
            return imrt_cli_usage_error(cmd, "option '%s' is not valid here", argv[optind - 1]);
    }
    if (argc - optind != 2)
        return imrt_cli_usage_error(cmd, "expected 2 arguments (A.nii.gz B.nii.gz), got %d",
                                    argc - optind);
    const char *ref_path = argv[optind], *eval_path = argv[optind + 1];

    if (out_path && !common.force) {
        struct stat sb;
        if (stat(out_path, &sb) == 0) {
            fprintf(stderr, "imrt %s: '%s' already exists (use --force to replace it)\n", cmd,
                    out_path);
            return IMRT_EXIT_OUTPUT;
        }
    }

    int rc = IMRT_EXIT_OK;
    imrt_status st = IMRT_OK;
    imrt_context *ctx = NULL;
    float *ref = NULL, *eval = NULL, *map = NULL;
    imrt_grid rg, eg;

    ctx = imrt_cli_context(&common, cmd);
    if (!ctx) {
        rc = IMRT_EXIT_RESOURCE;
        goto cleanup;
    }
    st = imrt_nifti_read(ref_path, &rg, &ref, NULL);
    if (st == IMRT_OK)
        st = imrt_nifti_read(eval_path, &eg, &eval, NULL);
    if (st != IMRT_OK) {
        rc = input_fail(cmd, st);
        goto cleanup;
    }
    const int64_t nref = imrt_grid_nvox(&rg);
    double ref_max = -HUGE_VAL;
    for (int64_t v = 0; v < nref; v++)
        ref_max = fmax(ref_max, (double)ref[v]);
    if (!go.local && !(ref_max > 0.0)) {
        fprintf(stderr,
                "imrt %s: the reference '%s' has a maximum dose of %g Gy; a global gamma needs a "
                "positive maximum\n",
                cmd, ref_path, ref_max);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    map = imrt_malloc((size_t)nref * sizeof *map);
    if (!map) {
        rc = imrt_cli_fail(cmd, imrt_error(IMRT_ERR_NOMEM, "cannot allocate the gamma map (%lld "
                                                           "voxels)",
                                           (long long)nref));
        goto cleanup;
    }
    imrt_gamma_result res;
    st = imrt_gamma(ctx, &rg, ref, &eg, eval, &go, &res, map);
    if (st != IMRT_OK) {
        rc = input_fail(cmd, imrt_error(st, "gamma of '%s' against '%s': %s", eval_path, ref_path,
                                        imrt_last_error()));
        goto cleanup;
    }
    if (res.evaluated == 0) {
        fprintf(stderr,
                "imrt %s: no point evaluated: no voxel of '%s' reaches %g %% of its maximum "
                "inside the extent of '%s'\n",
                cmd, ref_path, go.threshold_pct, eval_path);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    double p95 = NAN;
    st = map_percentile(map, nref, res.evaluated, PERCENTILE, &p95);
    if (st != IMRT_OK) {
        rc = imrt_cli_fail(cmd, st);
        goto cleanup;
    }

    printf("gamma %g %%/%g mm, %s, threshold %g %% of the reference maximum %.4g Gy\n",
           go.dose_pct, go.dist_mm, go.local ? "local" : "global", go.threshold_pct, ref_max);
    print_grid("reference A", ref_path, &rg);
    print_grid("evaluated B", eval_path, &eg);
    printf("points evaluated: %lld\n", (long long)res.evaluated);
    printf("pass rate: %.2f %% (%lld of %lld points with gamma <= 1)\n", res.pass_rate_pct,
           (long long)res.passed, (long long)res.evaluated);
    print_gamma("mean gamma", res.mean, res.gamma_cap);
    print_gamma("95th percentile", p95, res.gamma_cap);
    print_gamma("max gamma", res.max, res.gamma_cap);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "imrt %s: cannot write to standard output: %s\n", cmd, strerror(errno));
        rc = IMRT_EXIT_OUTPUT;
        goto cleanup;
    }

    if (out_path) {
        char descrip[80];
        snprintf(descrip, sizeof descrip, "imrt gamma %g%%/%gmm %s; -1 = not evaluated",
                 go.dose_pct, go.dist_mm, go.local ? "local" : "global");
        st = imrt_nifti_write_float(out_path, &rg, map, descrip);
        if (st != IMRT_OK) {
            rc = imrt_cli_fail(cmd, st);
            goto cleanup;
        }
        if (!common.quiet)
            fprintf(stderr, "imrt %s: wrote the gamma map '%s'\n", cmd, out_path);
    }
cleanup:
    imrt_free(map);
    imrt_free(eval);
    imrt_free(ref);
    imrt_context_destroy(&ctx);
    return rc;
}
