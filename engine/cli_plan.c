/*
 * engine/cli_plan.c - `imrt plan SPEC [-o DIR]`: the whole planning run
 * (imrt/pipeline.h) with progress on stderr, the goal and comparison table
 * on stdout, and the output folder.
 */
#include "cli_impl.h"
#include "util_impl.h"

#include "imrt/pipeline.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char plan_usage[] =
    "usage: imrt plan SPEC [-o DIR] [--force] [--grid MM] [--log-every N] [--threads N] [--quiet]\n"
    "                 [--max-memory SIZE]\n"
    "\n"
    "Plan a phantom spec end to end: phantom -> dose grid -> beams -> dose-influence matrix ->\n"
    "IMRT optimisation and normalisation -> 3D-conformal plan on the same (or the spec's own\n"
    "conformal) beams -> metrics, clinical goals, comparison -> output folder.\n"
    "\n"
    "  -o, --output DIR   output folder (default: plan-NAME, NAME = the spec file's stem);\n"
    "                     refused if it exists, unless --force\n"
    "  --force            replace an existing output folder of an earlier run\n"
    "  --grid MM          phantom grid spacing, 2..5 mm (default: the spec's)\n"
    "  --log-every N      solver log line every N iterations (default 10)\n"
    "  --threads N        OpenMP threads (default: all cores)\n"
    "  --quiet            no progress or tables\n"
    "  --max-memory SIZE  memory budget, e.g. 8G (default: 70% of physical memory): phantom,\n"
    "                     dij and optimiser over it are refused before allocating\n"
    "\n"
    "The folder holds dose_imrt.nii.gz, dose_3dcrt.nii.gz, density.nii.gz, structures.nii.gz\n"
    "(+ structures.ctbl legend), dvh.csv, dvh.png, dose pictures, fluence maps, metrics.json\n"
    "and report.html. Exit codes: 0 ok, 2 usage, 3 input error, 4 resource limit, 5 output error.\n";

static void log_line(void *user, const char *line)
{
    const imrt_cli_common *c = user;
    if (!c->quiet) {
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
    }
}

int imrt_cmd_plan(int argc, char **argv)
{
    enum { OPT_GRID = OPT_FIRST_LOCAL, OPT_LOG_EVERY };
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"grid", required_argument, NULL, OPT_GRID},
                                         {"log-every", required_argument, NULL, OPT_LOG_EVERY},
                                         {NULL, 0, NULL, 0}};
    imrt_cli_common c = {0};
    imrt_run_options ro;
    imrt_run_options_default(&ro);
    const char *out_dir = NULL;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("%s", plan_usage);
            return IMRT_EXIT_OK;
        case 'o':
            out_dir = optarg;
            break;
        case OPT_GRID:
            if (!imrt_parse_double(optarg, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM, &ro.grid_mm))
                return imrt_cli_usage_error("plan", "--grid '%s' must be a spacing in [%g, %g] mm",
                                            optarg, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM);
            break;
        case OPT_LOG_EVERY: {
            double v;
            if (!imrt_parse_double(optarg, 1, 1e6, &v))
                return imrt_cli_usage_error("plan", "--log-every '%s' must be an integer >= 1",
                                            optarg);
            ro.log_every = (int)v;
            break;
        }
        case '?':
            return imrt_cli_usage_error("plan", "unknown option '%s'", argv[optind - 1]);
        case ':':
            return imrt_cli_usage_error("plan", "option '%s' needs a value", argv[optind - 1]);
        default: {
            int r = imrt_cli_common_option(&c, opt, optarg, "plan");
            if (r < 0)
                return IMRT_EXIT_USAGE;
            if (r == 0)
                return imrt_cli_usage_error("plan", "option '%s' is not valid here",
                                            argv[optind - 1]);
        }
        }
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error("plan", "expected one SPEC file, got %d arguments",
                                    argc - optind);
    const char *spec = argv[optind];
    char default_dir[512];
    if (!out_dir) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", spec);
        char *stem = basename(tmp);
        char *dot = strrchr(stem, '.');
        if (dot && dot != stem)
            *dot = '\0';
        snprintf(default_dir, sizeof default_dir, "plan-%s", stem);
        out_dir = default_dir;
    }
    /* refuse an existing folder before hours of work, not after */
    FILE *probe = fopen(out_dir, "r");
    if (probe && !c.force) {
        fclose(probe);
        fprintf(stderr, "imrt plan: output folder '%s' exists; use --force to replace it or -o "
                        "to choose another\n", out_dir);
        return IMRT_EXIT_OUTPUT;
    }
    if (probe)
        fclose(probe);

    imrt_context *ctx = imrt_cli_context(&c, "plan");
    if (!ctx)
        return IMRT_EXIT_RESOURCE;
    imrt_cli_dose_progress_state ps;
    imrt_cli_dose_progress_start(&ps, c.quiet);
    imrt_context_set_progress(ctx, imrt_cli_dose_progress, &ps);
    ro.log = log_line;
    ro.log_user = &c;
    ro.max_memory = imrt_context_max_memory(ctx);

    imrt_run *run = NULL;
    imrt_comparison *cmp = NULL;
    char *table = NULL;
    imrt_status st = imrt_run_plan(ctx, spec, &ro, &run);
    const int reading = st != IMRT_OK;
    if (st == IMRT_OK)
        st = imrt_run_write(run, out_dir, c.force);
    if (st == IMRT_OK && !c.quiet) {
        st = imrt_compare_build(run->imrt.metrics, run->crt.metrics, "IMRT", "3D-CRT", &cmp);
        if (st == IMRT_OK)
            st = imrt_compare_table(cmp, &table);
        if (st == IMRT_OK) {
            printf("\n%s", table);
            for (int i = 0; i < run->nconstraints; i++) {
                const imrt_constraint_status *cs = &run->constraints[i];
                printf("hard constraint on %s: %.2f Gy vs bound %.2f Gy: %s\n",
                       run->plan->objectives[cs->def].structure, cs->value, cs->bound,
                       cs->holds ? "holds" : "VIOLATED");
            }
            printf("\nIMRT: %d of %d goals failed; 3D-CRT: %d of %d goals failed\n",
                   run->imrt.metrics->goals_failed, run->imrt.metrics->ngoals,
                   run->crt.metrics->goals_failed, run->crt.metrics->ngoals);
            printf("total %.1f s (phantom %.1f, dij %.1f, optimisation %.1f, 3D-CRT %.1f, "
                   "outputs %.1f) with %d threads\n",
                   run->t_total + run->t_output, run->t_phantom, run->t_dij, run->t_optimize,
                   run->t_crt, run->t_output, run->threads);
            printf("report: %s/report.html\n", out_dir);
        }
    }
    int rc = st == IMRT_OK ? IMRT_EXIT_OK
             : reading      ? imrt_cli_fail_input("plan", st)
                            : imrt_cli_fail("plan", st);
    imrt_free(table);
    imrt_compare_destroy(&cmp);
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
    return rc;
}
