/*
 * engine/cli_impl.h - shared pieces of the imrt command (not part of the
 * library): exit codes, common options, the subcommand table.
 */
#ifndef IMRT_CLI_IMPL_H
#define IMRT_CLI_IMPL_H

#include "imrt.h"

#include <getopt.h>

/* Exit codes of the imrt command (README: "Exit codes"). */
enum {
    IMRT_EXIT_OK = 0,       /* success */
    IMRT_EXIT_INTERNAL = 1, /* internal or numerical failure */
    IMRT_EXIT_USAGE = 2,    /* bad command line */
    IMRT_EXIT_INPUT = 3,    /* bad input file: spec, MAT file, dij file */
    IMRT_EXIT_RESOURCE = 4, /* memory budget or allocation failure */
    IMRT_EXIT_OUTPUT = 5    /* cannot write outputs (exists, read-only, full) */
};

/* Options every subcommand takes. */
typedef struct {
    int threads;          /* 0 = OpenMP default */
    int quiet;            /* no progress, no tables on stderr */
    uint64_t max_memory;  /* 0 = default (70 % of physical memory) */
    int force;            /* overwrite an existing output folder */
} imrt_cli_common;

/* Long-option ids shared by subcommands (values above any short option). */
enum { OPT_THREADS = 1000, OPT_QUIET, OPT_MAX_MEMORY, OPT_FORCE, OPT_HELP, OPT_FIRST_LOCAL };

/* Expands to the getopt_long entries of the common options. */
#define IMRT_CLI_COMMON_OPTIONS                                   \
    {"threads", required_argument, NULL, OPT_THREADS},            \
        {"quiet", no_argument, NULL, OPT_QUIET},                  \
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},  \
        {"force", no_argument, NULL, OPT_FORCE},                  \
        {"help", no_argument, NULL, 'h'}

/* Handle a common option; returns 1 if handled, 0 if not common, -1 on a
 * bad value (message printed). */
int imrt_cli_common_option(imrt_cli_common *c, int opt, const char *arg, const char *cmd);

/* Build a context from the common options; prints and returns NULL on failure. */
imrt_context *imrt_cli_context(const imrt_cli_common *c, const char *cmd);

/* Exit code for a library status. */
int imrt_cli_exit_code(imrt_status st);

/* Print "imrt CMD: <library message or status text>" and return the exit code. */
int imrt_cli_fail(const char *cmd, imrt_status st);

/* As imrt_cli_fail for a failure while reading the inputs (before any
 * output is written): an IMRT_ERR_IO there is an unreadable input file, so
 * the exit code is IMRT_EXIT_INPUT rather than IMRT_EXIT_OUTPUT. */
int imrt_cli_fail_input(const char *cmd, imrt_status st);

/* Print a usage error ("imrt CMD: MSG; see 'imrt CMD --help'") and return 2. */
int imrt_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A subcommand: name, one-line summary, usage text, entry point. */
typedef struct {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} imrt_cli_command;

/* Parse options shared by the "SPEC-only" subcommands. Returns -1 to
 * continue, else an exit code (help printed, or usage error). */
int imrt_cli_parse_simple(int argc, char **argv, const imrt_cli_command *cmd,
                          imrt_cli_common *c, const char **out_dir, int need_positional,
                          const char **positional);

/* Subcommands on the files of a finished plan (argv[0] is the subcommand
 * name; each prints its own --help): engine/cli_compare.c, engine/cli_dvh.c,
 * engine/cli_gamma.c. Return the exit code. */
int imrt_cmd_compare(int argc, char **argv);
int imrt_cmd_dvh(int argc, char **argv);
int imrt_cmd_gamma(int argc, char **argv);

/* ---- imrt dij and imrt dose (engine/cli_dij.c, engine/cli_dose.c) ---- */

int imrt_cmd_dij(int argc, char **argv);
int imrt_cmd_dose(int argc, char **argv);

/* Progress display of the long dose stages on stderr: a bar with elapsed
 * and remaining time on a terminal, a line every 2 s otherwise. */
typedef struct {
    double start, last; /* monotonic seconds */
    int quiet, tty;
} imrt_cli_dose_progress_state;
void imrt_cli_dose_progress_start(imrt_cli_dose_progress_state *s, int quiet);
void imrt_cli_dose_progress(void *user, const char *stage, double fraction);

/* Load a plan spec (through imrt/spec.h when the build has it). */
/* Load a plan spec (through imrt/spec.h when the build has it); a phantom
 * over max_memory bytes (0 = no check) is refused before rasterising. */
imrt_status imrt_cli_dose_load_spec(const char *path, uint64_t max_memory, imrt_phantom **ph,
                                    imrt_plan **plan);

/* Spec -> phantom, plan, dose-grid phantom and IMRT beam set (beamlets from
 * the prescription's target, else the first target structure). The caller
 * frees all four, also on failure. */
imrt_status imrt_cli_dose_setup(const char *spec, uint64_t max_memory, imrt_phantom **ph,
                                imrt_plan **plan, imrt_phantom **dose_ph, imrt_beamset **bs);

/* Subcommand entry points (argv[0] is the subcommand name). */
int imrt_cmd_phantom(int argc, char **argv); /* engine/cli_phantom.c */

/* imrt plan (engine/cli_plan.c) */
int imrt_cmd_plan(int argc, char **argv);
/* imrt optimize (engine/cli_optimize.c) */
int imrt_cmd_optimize(int argc, char **argv);

#endif /* IMRT_CLI_IMPL_H */
