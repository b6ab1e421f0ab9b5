/*
 * engine/cli_dvh.c - `imrt dvh DOSE STRUCTURES`: cumulative DVHs of every
 * structure of a NIfTI label map on a NIfTI dose (same grid), written as CSV,
 * with a per-structure summary (Dmean, Dmax, D2, D50, D95, D98, volume).
 * Structure names come from a 3D Slicer colour table (the legend imrt writes
 * next to structures.nii.gz) or default to "label N".
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
    "usage: imrt dvh DOSE.nii.gz STRUCTURES.nii.gz [--legend FILE] [--bin GY] [-o FILE.csv]\n"
    "                [--force] [--threads N] [--quiet]\n"
    "\n"
    "Cumulative dose-volume histogram of every structure of a label map on a dose\n"
    "(NIfTI-1, e.g. dose_imrt.nii.gz and structures.nii.gz of a plan folder). The two\n"
    "volumes must share one grid (dimensions, spacing and origin). Prints, per\n"
    "structure: voxels, volume (cm3), Dmean, Dmax, D2, D50, D95, D98 (Gy; Dx = dose to\n"
    "the hottest x % of the volume, conventions in docs/metrics.md).\n"
    "\n"
    "A label map gives each voxel one owner: where structures overlap, the voxel\n"
    "belongs to the higher-priority one (smaller priority number), so these DVHs are\n"
    "those of the overlap-resolved structures, and a structure wholly inside a\n"
    "higher-priority one has no voxel here. metrics.json and dvh.csv of a plan use the\n"
    "full, overlapping structures.\n"
    "\n"
    "options:\n"
    "  --legend FILE  label names: a 3D Slicer colour table ('value name R G B A' lines,\n"
    "                 '#' comments). Default: STRUCTURES with .nii.gz/.nii replaced by\n"
    "                 .ctbl when that file exists, else the names 'label N'\n"
    "  --bin GY       dose step of the CSV, in (0, 10000] Gy (default 0.1); every\n"
    "                 structure is sampled from 0 to just above the highest dose\n"
    "  -o FILE.csv    write the DVHs as CSV: structure,dose_gy,volume_pct,volume_cm3\n"
    "                 (volume receiving at least dose_gy); '-o -' writes the CSV to\n"
    "                 standard output and the summary to standard error\n"
    "  --force        replace an existing FILE.csv\n"
    "  --threads N    accepted for uniformity (the DVH is not parallel)\n"
    "  --quiet        no notes on standard error (legend used, file written)\n"
    "  --help         this text\n"
    "\n"
    "exit codes: 0 ok, 2 usage, 3 unreadable or mismatched input files, 4 out of memory,\n"
    "            5 cannot write FILE.csv\n";

enum { OPT_LEGEND = OPT_FIRST_LOCAL, OPT_BIN };

#define NLABELS 256
#define DEFAULT_BIN_GY 0.1
#define MAX_BIN_GY 1e4
#define MAX_LEGEND_BYTES (16u << 20)

/* Exit code of a failed read of an input file: a missing or unreadable input
 * is an input error (3), not an output error. */
static int input_fail(const char *cmd, imrt_status st)
{
    int rc = imrt_cli_fail(cmd, st);
    if (st == IMRT_ERR_IO || st == IMRT_ERR_UNSUPPORTED || st == IMRT_ERR_EXISTS)
        rc = IMRT_EXIT_INPUT;
    return rc;
}

typedef struct {
    char name[NLABELS][IMRT_NAME_MAX];   /* name of each label value ("" = not in the legend) */
    char spaced[NLABELS][IMRT_NAME_MAX]; /* names from imrt's comment header, with blanks */
} legend;

/* Split a text buffer into lines in place; returns the next line or NULL. */
static char *next_line(char **cursor)
{
    char *s = *cursor;
    if (!s || !*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = s + strlen(s);
    }
    size_t n = strlen(s);
    if (n && s[n - 1] == '\r')
        s[n - 1] = '\0';
    return s;
}

/* A comment line of imrt's legend header, "#   VALUE  NAME  KIND", which keeps
 * the structure's name with its spaces. Returns 1 and fills value/name. */
static int legend_comment_entry(const char *line, int *value, char *name, size_t size)
{
    const char *p = line + 1;
    while (*p == ' ')
        p++;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v >= NLABELS || strncmp(end, "  ", 2) != 0)
        return 0;
    const char *nm = end + 2;
    static const char *const kinds[] = {"  target", "  oar", "  body"};
    size_t len = strlen(nm);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t kl = strlen(kinds[k]);
        if (len > kl && strcmp(nm + len - kl, kinds[k]) == 0 && len - kl < size) {
            memcpy(name, nm, len - kl);
            name[len - kl] = '\0';
            *value = (int)v;
            return 1;
        }
    }
    return 0;
}

/* Read a 3D Slicer colour table: "value name [R G B A]" per line, '#'
 * comments, blank lines skipped; value 0 (background) and values above 255
 * (not in an 8-bit label map) are ignored. Names of imrt's own comment header
 * ("#   1  Spinal cord  oar") replace the data-line name whose spaces were
 * written as '_'. Errors name the file and line. */
static imrt_status legend_read(const char *path, legend *lg)
{
    imrt_status st = IMRT_OK;
    char *text = NULL;
    size_t size = 0;
    memset(lg, 0, sizeof *lg);
    st = imrt_io_read_file(path, &text, &size);
    if (st != IMRT_OK)
        return imrt_error(st == IMRT_ERR_NOMEM ? st : IMRT_ERR_IO, "legend: %s", imrt_last_error());
    if (size > MAX_LEGEND_BYTES || strlen(text) != size) {
        st = imrt_error(IMRT_ERR_FORMAT, "legend '%s' is not a colour table (binary or over %u MiB)",
                        path, MAX_LEGEND_BYTES >> 20);
        goto cleanup;
    }
    char *cursor = text, *line;
    int lineno = 0;
    while ((line = next_line(&cursor)) != NULL) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            continue;
        if (*p == '#') {
            int v;
            char nm[IMRT_NAME_MAX];
            if (legend_comment_entry(p, &v, nm, sizeof nm))
                snprintf(lg->spaced[v], sizeof lg->spaced[v], "%s", nm);
            continue;
        }
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end != ' ' && *end != '\t') || v < 0) {
            st = imrt_error(IMRT_ERR_FORMAT,
                            "legend '%s' line %d: expected 'value name R G B A' with an integer "
                            "value >= 0, got '%.40s'",
                            path, lineno, p);
            goto cleanup;
        }
        p = end;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, " \t");
        if (len == 0) {
            st = imrt_error(IMRT_ERR_FORMAT, "legend '%s' line %d: label %ld has no name", path,
                            lineno, v);
            goto cleanup;
        }
        if (len >= IMRT_NAME_MAX) {
            st = imrt_error(IMRT_ERR_FORMAT,
                            "legend '%s' line %d: name of label %ld is longer than %d characters",
                            path, lineno, v, IMRT_NAME_MAX - 1);
            goto cleanup;
        }
        if (v == 0 || v >= NLABELS)
            continue;
        if (lg->name[v][0]) {
            st = imrt_error(IMRT_ERR_FORMAT, "legend '%s' line %d: label %ld is listed twice", path,
                            lineno, v);
            goto cleanup;
        }
        memcpy(lg->name[v], p, len);
        lg->name[v][len] = '\0';
    }
    /* Prefer the spaced name where it is the same name with '_' for blanks. */
    for (int v = 1; v < NLABELS; v++) {
        const char *sp = lg->spaced[v];
        if (!sp[0] || !lg->name[v][0] || strlen(sp) != strlen(lg->name[v]))
            continue;
        int same = 1;
        for (size_t i = 0; sp[i]; i++) {
            char c = sp[i];
            char u = (c == ' ' || c == '\t') ? '_' : c;
            same &= u == lg->name[v][i];
        }
        if (same)
            memcpy(lg->name[v], sp, sizeof lg->name[v]);
    }
cleanup:
    imrt_free(text);
    return st;
}

/* Default legend: STRUCTURES with .nii.gz / .nii replaced by .ctbl. Returns 1
 * and fills buf when that file exists. */
static int default_legend(const char *labels_path, char *buf, size_t size)
{
    size_t n = strlen(labels_path);
    static const char *const ext[] = {".nii.gz", ".nii"};
    for (size_t e = 0; e < sizeof ext / sizeof ext[0]; e++) {
        size_t el = strlen(ext[e]);
        if (n > el && strcmp(labels_path + n - el, ext[e]) == 0) {
            n -= el;
            break;
        }
    }
    int w = snprintf(buf, size, "%.*s.ctbl", (int)n, labels_path);
    if (w < 0 || (size_t)w >= size)
        return 0;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void describe_grid(const imrt_grid *g, char *buf, size_t size)
{
    snprintf(buf, size, "%d x %d x %d voxels of %g x %g x %g mm, origin (%g, %g, %g) mm", g->nx,
             g->ny, g->nz, g->dx, g->dy, g->dz, g->origin[0], g->origin[1], g->origin[2]);
}

/* CSV field: quoted (with doubled quotes) when it holds a comma, quote or line break. */
static void csv_name(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Print a structure name shortened with '~' to `width` characters. */
static void print_name(FILE *f, const char *s, int width)
{
    int len = (int)strlen(s);
    if (len <= width)
        fprintf(f, "%-*s", width, s);
    else
        fprintf(f, "%.*s~", width - 1, s);
}

static void print_dose(FILE *f, double v)
{
    if (isnan(v))
        fprintf(f, " %8s", "-");
    else
        fprintf(f, " %8.2f", v);
}

int imrt_cmd_dvh(int argc, char **argv)
{
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"legend", required_argument, NULL, OPT_LEGEND},
                                         {"bin", required_argument, NULL, OPT_BIN},
                                         {"output", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    imrt_cli_common common = {0};
    const char *legend_path = NULL, *out_path = NULL;
    double bin_gy = DEFAULT_BIN_GY;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("%s", usage);
            return IMRT_EXIT_OK;
        case 'o':
            if (!*optarg)
                return imrt_cli_usage_error(cmd, "-o needs a file name");
            out_path = optarg;
            continue;
        case OPT_LEGEND:
            if (!*optarg)
                return imrt_cli_usage_error(cmd, "--legend needs a file name");
            legend_path = optarg;
            continue;
        case OPT_BIN:
            if (!imrt_parse_double(optarg, -HUGE_VAL, HUGE_VAL, &bin_gy) ||
                !(bin_gy > 0.0 && bin_gy <= MAX_BIN_GY))
                return imrt_cli_usage_error(cmd, "--bin '%s' must be a dose step in (0, %g] Gy",
                                            optarg, MAX_BIN_GY);
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
        return imrt_cli_usage_error(cmd, "expected 2 arguments (DOSE.nii.gz STRUCTURES.nii.gz), "
                                         "got %d",
                                    argc - optind);
    const char *dose_path = argv[optind], *labels_path = argv[optind + 1];
    const int to_stdout = out_path && strcmp(out_path, "-") == 0;
    FILE *summary = to_stdout ? stderr : stdout;
    const int show_summary = !(to_stdout && common.quiet);

    int rc = IMRT_EXIT_OK;
    imrt_status st = IMRT_OK;
    float *dose = NULL, *lab = NULL;
    uint8_t *mask = NULL;
    legend *lg = NULL;
    imrt_dvh *h[NLABELS] = {0};
    imrt_dvh_binned *bins = NULL;
    imrt_atomic_file *af = NULL;
    imrt_grid dg, lgd;
    char legend_buf[IMRT_PATH_MAX];

    if (out_path && !to_stdout && !common.force) {
        struct stat sb;
        if (stat(out_path, &sb) == 0) {
            fprintf(stderr, "imrt %s: '%s' already exists (use --force to replace it)\n", cmd,
                    out_path);
            return IMRT_EXIT_OUTPUT;
        }
    }

    st = imrt_nifti_read(dose_path, &dg, &dose, NULL);
    if (st != IMRT_OK) {
        rc = input_fail(cmd, st);
        goto cleanup;
    }
    st = imrt_nifti_read(labels_path, &lgd, &lab, NULL);
    if (st != IMRT_OK) {
        rc = input_fail(cmd, st);
        goto cleanup;
    }
    if (!imrt_grid_equal(&dg, &lgd)) {
        char a[160], b[160];
        describe_grid(&dg, a, sizeof a);
        describe_grid(&lgd, b, sizeof b);
        fprintf(stderr,
                "imrt %s: the dose '%s' (%s) and the label map '%s' (%s) are on different grids\n",
                cmd, dose_path, a, labels_path, b);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    const int64_t nvox = imrt_grid_nvox(&dg);
    int64_t count[NLABELS] = {0};
    for (int64_t v = 0; v < nvox; v++) {
        float x = lab[v];
        if (!(x >= 0.0f && x <= 255.0f) || x != floorf(x)) {
            int i, j, k;
            imrt_grid_ijk(&lgd, v, &i, &j, &k);
            fprintf(stderr,
                    "imrt %s: '%s' is not a label map: voxel (%d, %d, %d) holds %g (labels are "
                    "whole numbers 0..255)\n",
                    cmd, labels_path, i, j, k, (double)x);
            rc = IMRT_EXIT_INPUT;
            goto cleanup;
        }
        count[(int)x]++;
    }

    lg = imrt_calloc(1, sizeof *lg);
    if (!lg) {
        rc = imrt_cli_fail(cmd, imrt_error(IMRT_ERR_NOMEM, "cannot allocate the legend"));
        goto cleanup;
    }
    if (!legend_path && default_legend(labels_path, legend_buf, sizeof legend_buf))
        legend_path = legend_buf;
    if (legend_path) {
        st = legend_read(legend_path, lg);
        if (st != IMRT_OK) {
            rc = input_fail(cmd, st);
            goto cleanup;
        }
    }
    for (int l = 1; l < NLABELS; l++)
        if (!lg->name[l][0])
            snprintf(lg->name[l], sizeof lg->name[l], "label %d", l);

    /* One exact DVH per label present in the map. */
    mask = imrt_malloc((size_t)nvox);
    if (!mask) {
        rc = imrt_cli_fail(cmd, imrt_error(IMRT_ERR_NOMEM, "cannot allocate a %lld-voxel mask",
                                           (long long)nvox));
        goto cleanup;
    }
    double top = 0.0;
    int nstruct = 0;
    for (int l = 1; l < NLABELS; l++) {
        if (!count[l])
            continue;
        for (int64_t v = 0; v < nvox; v++)
            mask[v] = lab[v] == (float)l;
        st = imrt_dvh_create(&dg, dose, mask, &h[l]);
        if (st != IMRT_OK) {
            rc = imrt_cli_fail(cmd, imrt_error(st, "'%s': %s", dose_path, imrt_last_error()));
            goto cleanup;
        }
        top = fmax(top, imrt_dvh_max(h[l]));
        nstruct++;
    }
    if (nstruct == 0) {
        fprintf(stderr, "imrt %s: the label map '%s' has no labelled voxel (all 0)\n", cmd,
                labels_path);
        rc = IMRT_EXIT_INPUT;
        goto cleanup;
    }
    if (out_path && floor(top / bin_gy) + 2.0 > 1e6) {
        rc = imrt_cli_usage_error(cmd,
                                  "--bin %g Gy is too fine for a maximum dose of %g Gy (at most "
                                  "1000000 points per structure)",
                                  bin_gy, top);
        goto cleanup;
    }

    if (legend_path && !common.quiet)
        fprintf(stderr, "imrt %s: structure names from '%s'\n", cmd, legend_path);

    /* Summary. */
    if (show_summary) {
        fprintf(summary, "%-24s %9s %10s %8s %8s %8s %8s %8s %8s\n", "structure", "voxels",
                "vol [cm3]", "Dmean", "Dmax", "D2", "D50", "D95", "D98");
        for (int l = 1; l < NLABELS; l++) {
            if (!h[l])
                continue;
            print_name(summary, lg->name[l], 24);
            fprintf(summary, " %9lld %10.3f", (long long)h[l]->n, h[l]->volume_cc);
            print_dose(summary, h[l]->mean);
            print_dose(summary, imrt_dvh_max(h[l]));
            print_dose(summary, imrt_dvh_dose_at_pct(h[l], 2.0));
            print_dose(summary, imrt_dvh_dose_at_pct(h[l], 50.0));
            print_dose(summary, imrt_dvh_dose_at_pct(h[l], 95.0));
            print_dose(summary, imrt_dvh_dose_at_pct(h[l], 98.0));
            fputc('\n', summary);
        }
        for (int l = 1; l < NLABELS; l++)
            if (legend_path && !count[l] && strncmp(lg->name[l], "label ", 6) != 0)
                fprintf(summary, "%-24s (in the legend, no voxel in the label map)\n",
                        lg->name[l]);
        fprintf(summary, "doses in Gy; Dx = dose to the hottest x %% of the structure; one "
                         "structure per voxel (label map)\n");
    }

    /* CSV. */
    if (out_path) {
        FILE *f = stdout;
        if (!to_stdout) {
            st = imrt_atomic_open(out_path, &af);
            if (st == IMRT_OK && !(f = imrt_atomic_stream(af)))
                st = IMRT_ERR_IO;
            if (st != IMRT_OK) {
                rc = imrt_cli_fail(cmd, st);
                goto cleanup;
            }
        }
        fprintf(f, "structure,dose_gy,volume_pct,volume_cm3\n");
        for (int l = 1; l < NLABELS; l++) {
            if (!h[l])
                continue;
            st = imrt_dvh_bin(h[l], bin_gy, top > 0.0 ? top : 0.0, &bins);
            if (st != IMRT_OK) {
                rc = imrt_cli_fail(cmd, st);
                goto cleanup;
            }
            for (int j = 0; j < bins->nbins; j++) {
                csv_name(f, lg->name[l]);
                fprintf(f, ",%.10g,%.10g,%.10g\n", bins->dose_gy[j], bins->volume_pct[j],
                        bins->volume_cc[j]);
            }
            imrt_dvh_binned_destroy(&bins);
        }
        if (to_stdout) {
            if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "imrt %s: cannot write to standard output: %s\n", cmd,
                        strerror(errno));
                rc = IMRT_EXIT_OUTPUT;
                goto cleanup;
            }
        } else {
            st = imrt_atomic_commit(&af);
            if (st != IMRT_OK) {
                rc = imrt_cli_fail(cmd, st);
                goto cleanup;
            }
            if (!common.quiet)
                fprintf(stderr, "imrt %s: wrote '%s' (%d structures, %g Gy steps)\n", cmd,
                        out_path, nstruct, bin_gy);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "imrt %s: cannot write to standard output: %s\n", cmd, strerror(errno));
        rc = IMRT_EXIT_OUTPUT;
    }
cleanup:
    imrt_atomic_abort(&af);
    imrt_dvh_binned_destroy(&bins);
    for (int l = 0; l < NLABELS; l++)
        imrt_dvh_destroy(&h[l]);
    imrt_free(mask);
    imrt_free(lg);
    imrt_free(lab);
    imrt_free(dose);
    return rc;
}
