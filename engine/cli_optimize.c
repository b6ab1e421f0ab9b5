/*
 * engine/cli_optimize.c - `imrt optimize SPEC --dij FILE [-o DIR]`: the
 * fluence-map optimisation of a plan spec on a dij saved by `imrt dij`, with
 * the goal table on stdout and, with -o, the dose, weights and metrics.json.
 */
#include "cli_impl.h"

#include "imrt/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char optimize_usage[] =
    "usage: imrt optimize SPEC --dij FILE [-o DIR] [--force] [--log-every N] [--threads N]\n"
    "                     [--quiet] [--max-memory SIZE]\n"
    "\n"
    "Optimise the beamlet weights of a plan spec on a dij saved by 'imrt dij' (same spec, same\n"
    "dose grid and beams), normalise the plan and evaluate its clinical goals.\n"
    "\n"
    "  --dij FILE         the dose-influence matrix (required)\n"
    "  -o, --output DIR   write dose_imrt.nii.gz, weights.txt (one weight per beamlet, the\n"
    "                     format 'imrt dose --weights' reads) and metrics.json\n"
    "  --force            replace an existing output folder of an earlier run\n"
    "  --log-every N      solver log line every N iterations (default 10)\n";

static void log_line(void *user, const char *line)
{
    const imrt_cli_common *c = user;
    if (!c->quiet)
        fprintf(stderr, "%s\n", line);
}

static imrt_status write_outputs(imrt_run *run, const char *dir, int force)
{
    imrt_status st;
    imrt_outdir *od = NULL;
    json_t *m = NULL;
    char path[4096];
    st = imrt_outdir_open(dir, force, &od);
    if (st == IMRT_OK)
        st = imrt_outdir_path(od, "dose_imrt.nii.gz", path, sizeof path);
    if (st == IMRT_OK)
        st = imrt_nifti_write_float(path, &run->dose_phantom->grid, run->imrt.dose,
                                    "imrt IMRT dose, Gy");
    if (st == IMRT_OK)
        st = imrt_outdir_path(od, "weights.txt", path, sizeof path);
    if (st == IMRT_OK)
        st = imrt_run_write_weights(run, path, "imrt", 9);
    if (st == IMRT_OK)
        st = imrt_run_metrics_json(run, &m);
    if (st == IMRT_OK) {
        char *text = json_dumps(m, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
        st = text ? imrt_outdir_path(od, "metrics.json", path, sizeof path)
                  : imrt_error(IMRT_ERR_NOMEM, "cannot serialise metrics.json");
        if (st == IMRT_OK)
            st = imrt_io_write_file(path, text, strlen(text));
        free(text);
    }
    if (st == IMRT_OK)
        st = imrt_outdir_commit(od);
    json_decref(m);
    imrt_outdir_destroy(&od);
    return st;
}

int imrt_cmd_optimize(int argc, char **argv)
{
    enum { OPT_DIJ = OPT_FIRST_LOCAL, OPT_LOG_EVERY };
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"dij", required_argument, NULL, OPT_DIJ},
                                         {"log-every", required_argument, NULL, OPT_LOG_EVERY},
                                         {NULL, 0, NULL, 0}};
    imrt_cli_common c = {0};
    imrt_run_options ro;
    imrt_run_options_default(&ro);
    const char *out_dir = NULL, *dij_path = NULL;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("%s", optimize_usage);
            return IMRT_EXIT_OK;
        case 'o':
            out_dir = optarg;
            break;
        case OPT_DIJ:
            dij_path = optarg;
            break;
        case OPT_LOG_EVERY: {
            char *end = NULL;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || v < 1 || v > 1000000)
                return imrt_cli_usage_error("optimize", "--log-every '%s' must be an integer >= 1",
                                            optarg);
            ro.log_every = (int)v;
            break;
        }
        case '?':
            return imrt_cli_usage_error("optimize", "unknown option '%s'", argv[optind - 1]);
        case ':':
            return imrt_cli_usage_error("optimize", "option '%s' needs a value", argv[optind - 1]);
        default: {
            int r = imrt_cli_common_option(&c, opt, optarg, "optimize");
            if (r < 0)
                return IMRT_EXIT_USAGE;
            if (r == 0)
                return imrt_cli_usage_error("optimize", "option '%s' is not valid here",
                                            argv[optind - 1]);
        }
        }
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error("optimize", "expected one SPEC file, got %d arguments",
                                    argc - optind);
    if (!dij_path)
        return imrt_cli_usage_error("optimize", "--dij FILE is required");
    imrt_context *ctx = imrt_cli_context(&c, "optimize");
    if (!ctx)
        return IMRT_EXIT_RESOURCE;
    ro.log = log_line;
    ro.log_user = &c;
    ro.max_memory = imrt_context_max_memory(ctx);
    imrt_run *run = NULL;
    imrt_dij *dij = NULL;
    imrt_status st = imrt_run_load(argv[optind], &ro, &run);
    if (st == IMRT_OK)
        st = imrt_dij_load(dij_path, imrt_context_max_memory(ctx), &dij);
    if (st == IMRT_OK) {
        st = imrt_run_set_dij(run, &dij);
        if (st != IMRT_OK) { /* name both files */
            char why[1024];
            snprintf(why, sizeof why, "%s", imrt_last_error());
            st = imrt_error(st, "%s does not belong to %s: %s", dij_path, argv[optind], why);
        }
    }
    if (st == IMRT_OK) {
        run->threads = imrt_context_threads(ctx);
        st = imrt_run_optimise(ctx, run);
    }
    const int reading = st != IMRT_OK;
    if (st == IMRT_OK && out_dir)
        st = write_outputs(run, out_dir, c.force);
    if (st == IMRT_OK && !c.quiet) {
        const imrt_plan_metrics *m = run->imrt.metrics;
        printf("\nClinical goals (IMRT, normalised x%.4f)\n", run->imrt.norm_factor);
        for (int i = 0; i < m->ngoals; i++) {
            const imrt_goal_result *g = &m->goals[i];
            printf("  %-18s %-9s %s %8.2f   achieved %8.2f   %s\n", g->goal.structure,
                   g->goal.metric, g->goal.op == IMRT_GOAL_LE ? "<=" : ">=", g->goal.value,
                   g->achieved,
                   !g->evaluated ? "not evaluated"
                   : g->pass     ? "pass"
                   : g->goal.preferred ? "not met (preferred)"
                                       : "FAIL");
        }
        printf("%d of %d required goals failed; F = %.6g after %d iterations (%.1f s)\n",
               m->goals_failed, m->ngoals, run->stats.f, run->stats.iterations,
               run->stats.wall_s);
    }
    int rc = st == IMRT_OK ? IMRT_EXIT_OK
             : reading      ? imrt_cli_fail_input("optimize", st)
                            : imrt_cli_fail("optimize", st);
    imrt_dij_destroy(&dij);
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
    return rc;
}
