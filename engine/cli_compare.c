/*
 * engine/cli_compare.c - `imrt compare DIR`: the IMRT vs 3D-CRT table of a
 * finished plan folder, rebuilt from its metrics.json (plans.imrt and
 * plans.3dcrt) and printed as text or, with --json, as the comparison JSON.
 */
#include "cli_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: imrt compare DIR [--json] [--threads N] [--quiet]\n"
    "\n"
    "Print the IMRT vs 3D-CRT comparison of a plan output folder: every clinical goal,\n"
    "the dose metrics of every structure (Dmean, Dmax, D0.03cc, D2, D50, D95, D98, Dmin,\n"
    "volume) and the plan indices (HI, Paddick and RTOG CI, integral dose), with the\n"
    "difference and the better plan of each row (rules in docs/metrics.md, section 7).\n"
    "The table is rebuilt from DIR/metrics.json (its \"plans\": {\"imrt\", \"3dcrt\"}\n"
    "objects); DIR may also be the metrics.json file itself. The overlaid DVH plot of\n"
    "both plans is DIR/dvh.png.\n"
    "\n"
    "options:\n"
    "  --json       print the comparison as JSON (rows, values, better plan, wins)\n"
    "  --threads N  accepted for uniformity (the comparison is not parallel)\n"
    "  --quiet      accepted for uniformity (the table is the command's output)\n"
    "  --help       this text\n"
    "\n"
    "exit codes: 0 ok, 2 usage, 3 missing or malformed folder/metrics.json, 4 out of memory\n";

enum { OPT_JSON = OPT_FIRST_LOCAL };

/* Read one plan object ("plans.<key>") of the metrics file. */
static imrt_status read_plan(const json_t *plans, const char *key, const char *path,
                             imrt_plan_metrics **out)
{
    const json_t *obj = json_object_get(plans, key);
    if (!obj)
        return imrt_error(IMRT_ERR_FORMAT,
                          "'%s' has no \"plans\".\"%s\" object: it is not the metrics of a "
                          "finished IMRT + 3D-CRT plan",
                          path, key);
    imrt_status st = imrt_plan_metrics_from_json(obj, out);
    if (st != IMRT_OK && st != IMRT_ERR_NOMEM)
        return imrt_error(st, "'%s', plans.%s: %s", path, key, imrt_last_error());
    return st;
}

int imrt_cmd_compare(int argc, char **argv)
{
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    imrt_cli_common common = {0};
    int as_json = 0;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("%s", usage);
            return IMRT_EXIT_OK;
        }
        if (opt == OPT_JSON) {
            as_json = 1;
            continue;
        }
        if (opt == '?')
            return imrt_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        if (opt == ':')
            return imrt_cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        int r = imrt_cli_common_option(&common, opt, optarg, cmd);
        if (r < 0)
            return IMRT_EXIT_USAGE;
        if (r == 0 || opt == OPT_FORCE)
            return imrt_cli_usage_error(cmd, "option '%s' is not valid here", argv[optind - 1]);
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error(cmd, "expected 1 argument (the plan output folder), got %d",
                                    argc - optind);
    const char *dir = argv[optind];

    int rc = IMRT_EXIT_OK;
    imrt_status st = IMRT_OK;
    json_t *root = NULL, *cj = NULL;
    imrt_plan_metrics *a = NULL, *b = NULL;
    imrt_comparison *cmp = NULL;
    char *table = NULL;
    char path[IMRT_PATH_MAX];

    struct stat sb;
    if (stat(dir, &sb) != 0) {
        fprintf(stderr, "imrt %s: cannot open the plan folder '%s': %s\n", cmd, dir,
                strerror(errno));
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    if (S_ISDIR(sb.st_mode)) {
        int n = snprintf(path, sizeof path, "%s/metrics.json", dir);
        if (n < 0 || (size_t)n >= sizeof path) {
            fprintf(stderr, "imrt %s: folder name '%s' is too long\n", cmd, dir);
            rc = IMRT_EXIT_INPUT;
            goto cleanup;
        }
        if (stat(path, &sb) != 0) {
            fprintf(stderr,
                    "imrt %s: cannot open '%s': %s (is '%s' the output folder of 'imrt plan'?)\n",
                    cmd, path, strerror(errno), dir);
            rc = IMRT_EXIT_INPUT;
            goto cleanup;
        }
    } else {
        snprintf(path, sizeof path, "%s", dir);
    }

    json_error_t jerr;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            fprintf(stderr, "imrt %s: '%s' line %d, column %d: %s\n", cmd, path, jerr.line,
                    jerr.column, jerr.text);
        else
            fprintf(stderr, "imrt %s: cannot read '%s': %s\n", cmd, path, jerr.text);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    const json_t *plans = json_object_get(root, "plans");
    if (!json_is_object(plans)) {
        fprintf(stderr, "imrt %s: '%s' has no \"plans\" object (plans.imrt and plans.3dcrt)\n",
                cmd, path);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    st = read_plan(plans, "imrt", path, &a);
    if (st == IMRT_OK)
        st = read_plan(plans, "3dcrt", path, &b);
    if (st == IMRT_OK)
        st = imrt_compare_build(a, b, "IMRT", "3D-CRT", &cmp);
    if (st == IMRT_OK) {
        if (as_json)
            st = imrt_compare_json(cmp, &cj);
        else
            st = imrt_compare_table(cmp, &table);
    }
    if (st != IMRT_OK) {
        rc = imrt_cli_fail(cmd, st);
        goto cleanup;
    }
    if (as_json) {
        char *text = json_dumps(cj, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (!text) {
            fprintf(stderr, "imrt %s: cannot format the comparison JSON (out of memory)\n", cmd);
            rc = IMRT_EXIT_RESOURCE;
            goto cleanup;
        }
        fputs(text, stdout);
        fputc('\n', stdout);
        free(text);
    } else {
        fputs(table, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "imrt %s: cannot write to standard output: %s\n", cmd, strerror(errno));
        rc = IMRT_EXIT_OUTPUT;
    }
cleanup:
    imrt_free(table);
    imrt_compare_destroy(&cmp);
    imrt_plan_metrics_destroy(&a);
    imrt_plan_metrics_destroy(&b);
    json_decref(cj);
    json_decref(root);
    return rc;
}
