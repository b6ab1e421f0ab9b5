/*
 * engine/cli_dij.c - `imrt dij SPEC [-o FILE]`: the dose-influence matrix of
 * a plan spec (dose grid, beams, beamlets from the spec), saved in imrt's
 * binary dij format; plus the pieces `imrt dose` shares (spec loading, the
 * progress display, the dose-engine setup).
 */
#include "cli_impl.h"

#if defined(__has_include)
#if __has_include("imrt/spec.h")
#include "imrt/spec.h"
#define IMRT_CLI_HAVE_SPEC 1
#endif
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

imrt_status imrt_cli_dose_load_spec(const char *path, uint64_t max_memory, imrt_phantom **ph,
                                     imrt_plan **plan)
{
#ifdef IMRT_CLI_HAVE_SPEC
    imrt_spec_options so = {0};
    so.max_memory = max_memory;
    return imrt_spec_load(path, &so, ph, plan);
#else
    (void)max_memory;
    *ph = NULL;
    *plan = NULL;
    return imrt_error(IMRT_ERR_UNSUPPORTED, "%s: the plan-spec reader is not part of this build",
                      path);
#endif
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void imrt_cli_dose_progress_start(imrt_cli_dose_progress_state *s, int quiet)
{
    s->start = wall_seconds();
    s->last = -1.0;
    s->quiet = quiet;
    s->tty = isatty(fileno(stderr));
}

void imrt_cli_dose_progress(void *user, const char *stage, double fraction)
{
    imrt_cli_dose_progress_state *s = user;
    if (s->quiet)
        return;
    const double now = wall_seconds(), el = now - s->start;
    const int done = fraction >= 1.0;
    if (s->tty) {
        if (!done && now - s->last < 0.1)
            return;
        const int width = 30, fill = (int)(fraction * width + 0.5);
        char bar[32];
        for (int q = 0; q < width; q++)
            bar[q] = q < fill ? '#' : '.';
        bar[width] = '\0';
        const double eta = fraction > 0.02 ? el * (1.0 - fraction) / fraction : 0.0;
        fprintf(stderr, "\r%s [%s] %3.0f%%  %.1f s elapsed, %.1f s left%s", stage, bar,
                100.0 * fraction, el, eta, done ? "\n" : "   ");
    } else {
        if (!done && now - s->last < 2.0)
            return;
        fprintf(stderr, "%s: %3.0f%% after %.1f s\n", stage, 100.0 * fraction, el);
    }
    s->last = now;
    fflush(stderr);
}

imrt_status imrt_cli_dose_setup(const char *spec, uint64_t max_memory, imrt_phantom **ph,
                                imrt_plan **plan, imrt_phantom **dose_ph, imrt_beamset **bs)
{
    imrt_status st = imrt_cli_dose_load_spec(spec, max_memory, ph, plan);
    if (st != IMRT_OK)
        return st;
    if ((*plan)->nbeams < 1)
        return imrt_error(IMRT_ERR_ARG, "%s: the plan has no beams", spec);
    const char *target = (*plan)->rx.target[0] ? (*plan)->rx.target : NULL;
    if (!target)
        for (int s = 0; s < (*ph)->nstructures && !target; s++)
            if ((*ph)->structures[s].kind == IMRT_KIND_TARGET)
                target = (*ph)->structures[s].name;
    st = imrt_beamset_create(*ph, *plan, (*plan)->beams, (*plan)->nbeams, target, bs);
    if (st != IMRT_OK)
        return st;
    return imrt_dose_grid_phantom(*ph, *plan, dose_ph);
}

int imrt_cmd_dij(int argc, char **argv)
{
    static const char usage[] =
        "usage: imrt dij SPEC [-o FILE] [--machine FILE] [--force] [--threads N] [--quiet]\n"
        "                [--max-memory SIZE]\n"
        "Compute the dose-influence matrix of a plan spec and save it in imrt's binary\n"
        "dij format (default FILE: the spec's name with .dij).\n"
        "  -o FILE          output file\n"
        "  --machine FILE   machine description (JSON) instead of the generic 6 MV beam\n";
    enum { OPT_MACHINE = OPT_FIRST_LOCAL };
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"machine", required_argument, NULL, OPT_MACHINE},
                                         {NULL, 0, NULL, 0}};
    imrt_cli_common c = {0};
    const char *out = NULL, *machine_path = NULL;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("%s", usage);
            return IMRT_EXIT_OK;
        } else if (opt == 'o') {
            out = optarg;
        } else if (opt == OPT_MACHINE) {
            machine_path = optarg;
        } else if (opt == '?') {
            return imrt_cli_usage_error("dij", "unknown option '%s'", argv[optind - 1]);
        } else if (opt == ':') {
            return imrt_cli_usage_error("dij", "option '%s' needs a value", argv[optind - 1]);
        } else {
            int r = imrt_cli_common_option(&c, opt, optarg, "dij");
            if (r < 0)
                return IMRT_EXIT_USAGE;
            if (r == 0)
                return imrt_cli_usage_error("dij", "option '%s' is not valid here",
                                            argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error("dij", "expected one SPEC argument, got %d", argc - optind);
    const char *spec = argv[optind];
    char outbuf[4096];
    if (!out) {
        const char *base = strrchr(spec, '/');
        base = base ? base + 1 : spec;
        snprintf(outbuf, sizeof outbuf, "%s", base);
        char *dot = strrchr(outbuf, '.');
        if (dot)
            *dot = '\0';
        strncat(outbuf, ".dij", sizeof outbuf - strlen(outbuf) - 1);
        out = outbuf;
    }
    struct stat sb;
    if (!c.force && stat(out, &sb) == 0) {
        fprintf(stderr, "imrt dij: %s exists; use --force to overwrite it\n", out);
        return IMRT_EXIT_OUTPUT;
    }
    imrt_context *ctx = imrt_cli_context(&c, "dij");
    if (!ctx)
        return IMRT_EXIT_RESOURCE;
    imrt_phantom *ph = NULL, *dph = NULL;
    imrt_plan *plan = NULL;
    imrt_beamset *bs = NULL;
    imrt_dij *dij = NULL;
    imrt_machine m;
    imrt_machine_default(&m);
    imrt_status st = IMRT_OK;
    if (machine_path)
        st = imrt_machine_load(machine_path, &m);
    if (st == IMRT_OK)
        st = imrt_cli_dose_setup(spec, imrt_context_max_memory(ctx), &ph, &plan, &dph, &bs);
    imrt_dose_options o;
    imrt_dose_options_from_plan(plan, &o);
    int64_t nrows = 0, nnz = 0;
    uint64_t bytes = 0;
    if (st == IMRT_OK)
        st = imrt_dij_estimate(ctx, dph, bs, &m, &o, &nrows, &nnz, &bytes);
    if (st == IMRT_OK && !c.quiet)
        fprintf(stderr,
                "imrt dij: %lld voxels (dose grid %d x %d x %d, %g x %g x %g mm), %d beams, "
                "%d beamlets, %lld entries, %.1f MiB\n",
                (long long)nrows, dph->grid.nx, dph->grid.ny, dph->grid.nz, dph->grid.dx,
                dph->grid.dy, dph->grid.dz, bs->nbeams, bs->nbeamlets, (long long)nnz,
                (double)bytes / 1048576.0);
    imrt_cli_dose_progress_state ps;
    imrt_cli_dose_progress_start(&ps, c.quiet);
    imrt_context_set_progress(ctx, imrt_cli_dose_progress, &ps);
    if (st == IMRT_OK)
        st = imrt_dij_build(ctx, dph, bs, &m, &o, &dij);
    const int reading = st != IMRT_OK;
    if (st == IMRT_OK)
        st = imrt_dij_save(dij, out);
    int rc = IMRT_EXIT_OK;
    if (st != IMRT_OK)
        rc = reading ? imrt_cli_fail_input("dij", st) : imrt_cli_fail("dij", st);
    else if (!c.quiet)
        fprintf(stderr, "imrt dij: wrote %s (%.1f s)\n", out, wall_seconds() - ps.start);
    imrt_dij_destroy(&dij);
    imrt_beamset_destroy(&bs);
    imrt_phantom_destroy(&dph);
    imrt_phantom_destroy(&ph);
    imrt_plan_destroy(&plan);
    imrt_context_destroy(&ctx);
    return rc;
}
