/*
 * engine/cli.c - the imrt command: global options, the subcommand table
 * and the helpers every subcommand shares (exit codes, common options).
 */
#include "cli_impl.h"
#include "util_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int imrt_cli_exit_code(imrt_status st)
{
    switch (st) {
    case IMRT_OK:
        return IMRT_EXIT_OK;
    case IMRT_ERR_ARG:
    case IMRT_ERR_PARSE:
    case IMRT_ERR_RANGE:
    case IMRT_ERR_FORMAT:
        return IMRT_EXIT_INPUT;
    case IMRT_ERR_BUDGET:
    case IMRT_ERR_NOMEM:
        return IMRT_EXIT_RESOURCE;
    case IMRT_ERR_IO:
    case IMRT_ERR_EXISTS:
        return IMRT_EXIT_OUTPUT;
    case IMRT_ERR_NUMERIC:
    case IMRT_ERR_UNSUPPORTED:
    case IMRT_ERR_INTERNAL:
        return IMRT_EXIT_INTERNAL;
    }
    return IMRT_EXIT_INTERNAL;
}

int imrt_cli_fail(const char *cmd, imrt_status st)
{
    const char *msg = imrt_last_error();
    fprintf(stderr, "imrt %s: %s\n", cmd, (msg && *msg) ? msg : imrt_status_str(st));
    return imrt_cli_exit_code(st);
}

int imrt_cli_fail_input(const char *cmd, imrt_status st)
{
    int rc = imrt_cli_fail(cmd, st);
    return st == IMRT_ERR_IO ? IMRT_EXIT_INPUT : rc;
}

int imrt_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "imrt %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; see 'imrt %s --help'\n", cmd);
    return IMRT_EXIT_USAGE;
}

int imrt_cli_common_option(imrt_cli_common *c, int opt, const char *arg, const char *cmd)
{
    switch (opt) {
    case OPT_THREADS: {
        char *end = NULL;
        errno = 0;
        long t = strtol(arg, &end, 10);
        if (errno || *end || t < 1 || t > 4096) {
            imrt_cli_usage_error(cmd, "--threads '%s' must be an integer in 1..4096", arg);
            return -1;
        }
        c->threads = (int)t;
        return 1;
    }
    case OPT_QUIET:
        c->quiet = 1;
        return 1;
    case OPT_FORCE:
        c->force = 1;
        return 1;
    case OPT_MAX_MEMORY:
        if (!imrt_parse_bytes(arg, &c->max_memory) || c->max_memory < (1u << 20)) {
            imrt_cli_usage_error(cmd, "--max-memory '%s' must be a size of at least 1M (e.g. 512M, 8G)",
                                 arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

imrt_context *imrt_cli_context(const imrt_cli_common *c, const char *cmd)
{
    imrt_context *ctx = NULL;
    imrt_status st = imrt_context_create(&ctx);
    if (st == IMRT_OK && c->threads > 0)
        st = imrt_context_set_threads(ctx, c->threads);
    if (st == IMRT_OK && c->max_memory > 0)
        st = imrt_context_set_max_memory(ctx, c->max_memory);
    if (st != IMRT_OK) {
        imrt_cli_fail(cmd, st);
        imrt_context_destroy(&ctx);
        return NULL;
    }
    return ctx;
}

static const imrt_cli_command *find_command(const char *name);

int imrt_cli_parse_simple(int argc, char **argv, const imrt_cli_command *cmd,
                          imrt_cli_common *c, const char **out_dir, int need_positional,
                          const char **positional)
{
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("%s", cmd->usage);
            return IMRT_EXIT_OK;
        }
        if (opt == 'o' && out_dir) {
            *out_dir = optarg;
            continue;
        }
        if (opt == '?')
            return imrt_cli_usage_error(cmd->name, "unknown option '%s'", argv[optind - 1]);
        if (opt == ':')
            return imrt_cli_usage_error(cmd->name, "option '%s' needs a value", argv[optind - 1]);
        int r = imrt_cli_common_option(c, opt, optarg, cmd->name);
        if (r < 0)
            return IMRT_EXIT_USAGE;
        if (r == 0)
            return imrt_cli_usage_error(cmd->name, "option '%s' is not valid here",
                                        argv[optind - 1]);
    }
    int npos = argc - optind;
    if (npos != need_positional)
        return imrt_cli_usage_error(cmd->name, "expected %d argument%s, got %d", need_positional,
                                    need_positional == 1 ? "" : "s", npos);
    for (int i = 0; i < npos; i++)
        positional[i] = argv[optind + i];
    return -1;
}

/* ---- subcommands not yet built: they parse their options and say so ---- */

static int not_built(int argc, char **argv)
{
    const imrt_cli_command *cmd = find_command(argv[0]);
    imrt_cli_common c = {0};
    const char *pos[4];
    const char *dir = NULL;
    optind = 1;
    /* --help works on every subcommand */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", cmd->usage);
            return IMRT_EXIT_OK;
        }
    (void)c;
    (void)pos;
    (void)dir;
    fprintf(stderr, "imrt %s: this stage is not part of this build yet\n", argv[0]);
    return IMRT_EXIT_INTERNAL;
}

static const imrt_cli_command commands[] = {
    {"plan", "phantom, dij, IMRT optimisation, 3D-CRT baseline, metrics, report",
     "usage: imrt plan SPEC [-o DIR] [--force] [--grid MM] [--threads N] [--quiet] [--max-memory SIZE]\n",
     imrt_cmd_plan},
    {"compare", "IMRT vs 3D-CRT table of a plan folder (from its metrics.json)",
     "usage: imrt compare DIR [--json]\n", imrt_cmd_compare},
    {"phantom", "rasterise a phantom spec: density, structure map, pictures, volumes",
     "usage: imrt phantom SPEC [-o DIR] [--grid MM] [--export-matrad FILE] [--force]\n",
     imrt_cmd_phantom},
    {"dij", "dose-influence matrix only, saved in imrt's binary format",
     "usage: imrt dij SPEC [-o FILE] [--machine FILE] [--force] [--threads N] [--max-memory SIZE]\n",
     imrt_cmd_dij},
    {"optimize", "fluence-map optimisation on a saved dij",
     "usage: imrt optimize SPEC --dij FILE [-o DIR] [--threads N] [--max-memory SIZE]\n", imrt_cmd_optimize},
    {"dose", "forward dose for given beamlet weights (default: all 1)",
     "usage: imrt dose SPEC -o DIR [--weights FILE] [--machine FILE] [--cutoff] [--threads N]\n"
     "                 [--max-memory SIZE]\n",
     imrt_cmd_dose},
    {"dvh", "DVHs of a dose file per structure of a label map, as CSV and a summary",
     "usage: imrt dvh DOSE.nii.gz STRUCTURES.nii.gz [--legend FILE] [--bin GY] [-o FILE.csv]\n",
     imrt_cmd_dvh},
    {"gamma", "gamma index between two dose files",
     "usage: imrt gamma A.nii.gz B.nii.gz [--dose PCT] [--dta MM] [--threshold PCT] [--local]\n"
     "                  [-o GAMMA.nii.gz]\n",
     imrt_cmd_gamma},
    {"bench", "the benchmark suite", "usage: imrt bench [--quick] [--json]\n", not_built},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof commands[0]))

static const imrt_cli_command *find_command(const char *name)
{
    for (int i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_help(FILE *f)
{
    fprintf(f,
            "imrt %s - IMRT dose optimisation engine\n\n"
            "usage: imrt [--version] [--help] COMMAND [OPTIONS] [ARGS]\n\n"
            "commands:\n",
            imrt_version());
    for (int i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\noptions every command takes:\n"
            "  --threads N        OpenMP threads (default: all cores)\n"
            "  --quiet            no progress or tables on stderr\n"
            "  --max-memory SIZE  memory budget, e.g. 8G (default: 70%% of physical memory)\n"
            "  --help             the command's own usage\n"
            "\nexit codes: 0 ok, 1 internal error, 2 usage, 3 input error, 4 resource limit,\n"
            "            5 output error\n"
            "'imrt COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    /* Testing aid (tests/test_badinput.c): fail the N-th allocation of the
     * engine, so that every error path of a real run can be exercised. */
    const char *fail_after = getenv("IMRT_TEST_ALLOC_FAIL");
    if (fail_after && *fail_after)
        imrt_alloc_fail_after(strtol(fail_after, NULL, 10));
    if (argc < 2) {
        print_help(stderr);
        return IMRT_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
        printf("imrt %s\n", imrt_version());
        return IMRT_EXIT_OK;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
        print_help(stdout);
        return IMRT_EXIT_OK;
    }
    if (a[0] == '-') {
        fprintf(stderr, "imrt: unknown option '%s'; see 'imrt --help'\n", a);
        return IMRT_EXIT_USAGE;
    }
    const imrt_cli_command *cmd = find_command(a);
    if (!cmd) {
        fprintf(stderr, "imrt: unknown command '%s'; see 'imrt --help'\n", a);
        return IMRT_EXIT_USAGE;
    }
    return cmd->run(argc - 1, argv + 1);
}
