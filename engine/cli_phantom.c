/*
 * engine/cli_phantom.c - `imrt phantom SPEC`: rasterise a spec, print the
 * structures' voxel counts, volumes and discretisation errors and an ASCII
 * preview of the anatomy, write density and label maps (MetaImage) with a
 * legend, and optionally export the phantom as a matRad MAT file.
 */
#include "cli_impl.h"

#include "imrt/matrad.h"
#include "imrt/spec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const USAGE =
    "usage: imrt phantom SPEC [-o DIR] [--grid MM] [--export-matrad FILE] [--preview VIEWS]\n"
    "                         [--force] [--quiet]\n"
    "\n"
    "Rasterise the phantom of SPEC and print each structure's voxel count, volume\n"
    "(cm^3) and, for structures drawn from one analytic solid, the discretisation\n"
    "error (voxel volume vs analytic volume), followed by an ASCII picture of the\n"
    "slice through the target's centroid.\n"
    "\n"
    "  -o, --output DIR        write density.mhd/.raw (RED, float32), structures.mhd/.raw\n"
    "                          (label map, uint8), structures.txt (legend) and preview.txt\n"
    "                          into DIR (refused if DIR exists, unless --force)\n"
    "  --grid MM               isotropic grid spacing in mm (default: the spec's);\n"
    "                          the phantom keeps its physical extent\n"
    "  --export-matrad FILE    also write the phantom as a matRad ct/cst MAT file\n"
    "  --preview VIEWS         axial (default), all (axial, coronal, sagittal) or none\n"
    "  --at X,Y,Z              centre the preview slices on this point (mm, LPS) instead\n"
    "                          of the target's centroid\n"
    "  --force                 overwrite an existing DIR or FILE\n"
    "  --quiet                 print nothing but errors\n"
    "  -h, --help              this text\n"
    "\n"
    "Preview: letters are structures (legend below the picture), other voxels show\n"
    "density: ' ' air, '-' lung, '.' fat, ':' soft tissue, '+' cancellous bone,\n"
    "'#' cortical bone.\n";

enum { OPT_GRID = OPT_FIRST_LOCAL, OPT_EXPORT, OPT_PREVIEW, OPT_AT };

/* ---- characters for structures and densities ---- */

static char density_char(float red)
{
    if (red < 0.2f)
        return ' ';
    if (red < 0.6f)
        return '-';
    if (red < 0.99f)
        return '.';
    if (red < 1.08f)
        return ':';
    if (red < 1.4f)
        return '+';
    return '#';
}

/* One character per structure, unique, letters first. */
static void structure_chars(const imrt_phantom *p, char *chars)
{
    int used[128] = {0};
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < p->nstructures; s++) {
            const imrt_structure *st = &p->structures[s];
            int is_target = st->kind == IMRT_KIND_TARGET;
            if ((pass == 0) != is_target)
                continue;
            chars[s] = 0;
            if (st->kind == IMRT_KIND_BODY)
                continue;
            for (const char *c = st->name; *c && !chars[s]; c++) {
                char up = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : *c;
                char lo = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c;
                if (up >= 'A' && up <= 'Z' && !used[(int)up])
                    chars[s] = up;
                else if (lo >= 'a' && lo <= 'z' && !used[(int)lo])
                    chars[s] = lo;
            }
            for (char d = '0'; d <= '9' && !chars[s]; d++)
                if (!used[(int)d])
                    chars[s] = d;
            if (!chars[s])
                chars[s] = '*';
            used[(int)chars[s]] = 1;
        }
}

/* Display labels for the preview: 1 + index of the smallest structure (by
 * voxel count) containing the voxel, body outlines excluded, so that nested
 * targets (GTV in CTV in PTV) and small organs stay visible. */
static void display_labels(const imrt_phantom *p, uint8_t *labels)
{
    int64_t n = imrt_grid_nvox(&p->grid);
    memset(labels, 0, (size_t)n);
    int done[IMRT_MAX_STRUCTURES] = {0};
    for (int round = 0; round < p->nstructures; round++) {
        int best = -1;
        for (int s = 0; s < p->nstructures; s++)
            if (!done[s] && (best < 0 || p->structures[s].count > p->structures[best].count))
                best = s;
        done[best] = 1;
        const imrt_structure *st = &p->structures[best];
        if (st->kind == IMRT_KIND_BODY)
            continue;
        for (int64_t v = 0; v < n; v++)
            if (st->mask[v])
                labels[v] = (uint8_t)(best + 1);
    }
}

/* Render one slice. view: 0 axial (k fixed), 1 coronal (j fixed),
 * 2 sagittal (i fixed). with_structures: letters over density. */
static void render(FILE *f, const imrt_phantom *p, const uint8_t *labels, const char *chars,
                   int view, int index, int with_structures)
{
    const imrt_grid *g = &p->grid;
    /* horizontal axis h and vertical axis w (top to bottom) */
    int ha, va, vflip;
    if (view == 0) {
        ha = 0; va = 1; vflip = 0; /* x right, y: anterior at the top */
    } else if (view == 1) {
        ha = 0; va = 2; vflip = 1; /* x, z: superior at the top */
    } else {
        ha = 1; va = 2; vflip = 1; /* y: anterior at the left, z: superior at the top */
    }
    const int n[3] = {g->nx, g->ny, g->nz};
    const double sp[3] = {g->dx, g->dy, g->dz};
    double W = n[ha] * sp[ha], H = n[va] * sp[va];
    double cw = W / 100.0 > sp[ha] ? W / 100.0 : sp[ha];
    double ch = 2.0 * cw;
    int cols = (int)ceil(W / cw), rows = (int)ceil(H / ch);
    if (rows < 1)
        rows = 1;
    const char *names[3] = {"axial", "coronal", "sagittal"};
    const char *axes[3] = {"z", "y", "x"};
    int fixed = view == 0 ? 2 : view == 1 ? 1 : 0;
    double pos = g->origin[fixed] + index * sp[fixed];
    fprintf(f, "%s slice %s = %.1f mm (%s), %s%s; one character = %.1f x %.1f mm\n",
            names[view], axes[view], pos,
            with_structures ? "structures over density" : "density only",
            view == 0 ? "anterior at the top, patient's left at the right"
                      : view == 1 ? "superior at the top, patient's left at the right"
                                  : "superior at the top, anterior at the left",
            "", cw, ch);
    fputc('+', f);
    for (int c = 0; c < cols; c++)
        fputc('-', f);
    fputs("+\n", f);
    for (int r = 0; r < rows; r++) {
        fputc('|', f);
        for (int c = 0; c < cols; c++) {
            int vi = (int)floor(((r + 0.5) * ch) / sp[va]);
            int hi = (int)floor(((c + 0.5) * cw) / sp[ha]);
            vi = vi < n[va] ? vi : n[va] - 1;
            hi = hi < n[ha] ? hi : n[ha] - 1;
            if (vflip)
                vi = n[va] - 1 - vi;
            int ijk[3];
            ijk[fixed] = index;
            ijk[ha] = hi;
            ijk[va] = vi;
            int64_t v = imrt_grid_index(g, ijk[0], ijk[1], ijk[2]);
            char out = density_char(p->density[v]);
            if (with_structures && labels[v]) {
                char sc = chars[labels[v] - 1];
                if (sc)
                    out = sc;
            }
            fputc(out, f);
        }
        fputs("|\n", f);
    }
    fputc('+', f);
    for (int c = 0; c < cols; c++)
        fputc('-', f);
    fputs("+\n", f);
}

static void print_legend(FILE *f, const imrt_phantom *p, const char *chars)
{
    fputs("legend:", f);
    for (int s = 0; s < p->nstructures; s++)
        if (chars[s])
            fprintf(f, " %c=%s", chars[s], p->structures[s].name);
    fputs("\n", f);
}

/* The slice indices through the prescription target (or first target, or
 * the grid centre). */
static void preview_centre(const imrt_phantom *p, const imrt_plan *plan, int ijk[3])
{
    const imrt_grid *g = &p->grid;
    ijk[0] = g->nx / 2;
    ijk[1] = g->ny / 2;
    ijk[2] = g->nz / 2;
    int t = plan && plan->rx.target[0] ? imrt_phantom_find(p, plan->rx.target) : -1;
    for (int s = 0; t < 0 && s < p->nstructures; s++)
        if (p->structures[s].kind == IMRT_KIND_TARGET)
            t = s;
    double c[3];
    if (t >= 0 && imrt_structure_geometry(p, &p->structures[t], c, NULL, NULL) == IMRT_OK)
        imrt_grid_locate(g, c, ijk);
}

static void print_previews(FILE *f, const imrt_phantom *p, const imrt_plan *plan,
                           const uint8_t *labels, const char *chars, int all, const double *at)
{
    int c[3];
    preview_centre(p, plan, c);
    if (at) {
        /* clamp the requested point into the grid */
        const imrt_grid *g = &p->grid;
        const int n[3] = {g->nx, g->ny, g->nz};
        const double sp[3] = {g->dx, g->dy, g->dz};
        for (int a = 0; a < 3; a++) {
            double x = floor((at[a] - g->origin[a]) / sp[a] + 0.5);
            c[a] = x < 0 ? 0 : x > n[a] - 1 ? n[a] - 1 : (int)x;
        }
    }
    render(f, p, labels, chars, 0, c[2], 1);
    print_legend(f, p, chars);
    fputc('\n', f);
    render(f, p, labels, chars, 0, c[2], 0);
    if (all) {
        fputc('\n', f);
        render(f, p, labels, chars, 1, c[1], 1);
        fputc('\n', f);
        render(f, p, labels, chars, 2, c[0], 1);
        print_legend(f, p, chars);
    }
}

static void print_table(FILE *f, const imrt_phantom *p, const imrt_spec_info *info)
{
    const imrt_grid *g = &p->grid;
    fprintf(f,
            "phantom %s: %d x %d x %d voxels of %g x %g x %g mm (%lld voxels), origin "
            "(%.2f, %.2f, %.2f) mm%s, built in %.3f s\n",
            p->name, g->nx, g->ny, g->nz, g->dx, g->dy, g->dz, (long long)imrt_grid_nvox(g),
            g->origin[0], g->origin[1], g->origin[2],
            info->imported ? (info->resampled ? ", imported and resampled" : ", imported") : "",
            info->seconds);
    fprintf(f, "%-20s %-6s %5s %10s %12s %12s %8s\n", "structure", "kind", "prio", "voxels",
            "volume_cm3", "analytic_cm3", "error_%");
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *st = &p->structures[s];
        const imrt_spec_volume *v = &info->volumes[s];
        fprintf(f, "%-20s %-6s %5d %10lld %12.2f", st->name, imrt_structure_kind_name(st->kind),
                st->priority, (long long)st->count, v->volume_cc);
        if (v->analytic_cc > 0.0)
            fprintf(f, " %12.2f %+8.2f\n", v->analytic_cc, v->error_pct);
        else
            fprintf(f, " %12s %8s\n", "-", "-");
    }
}

static void print_plan(FILE *f, const imrt_plan *plan)
{
    if (plan->rx.dose_gy > 0.0)
        fprintf(f, "prescription: %g Gy in %d fractions to %s (%s%s)\n", plan->rx.dose_gy,
                plan->rx.fractions, plan->rx.target, plan->rx.metric,
                plan->rx.normalise ? ", normalised" : "");
    if (plan->nbeams > 0) {
        fprintf(f, "beams (%d):", plan->nbeams);
        for (int b = 0; b < plan->nbeams; b++)
            fprintf(f, " %s", plan->beams[b].name);
        fputc('\n', f);
    }
    if (plan->ngoals > 0 || plan->nobjectives > 0)
        fprintf(f, "objectives: %d, clinical goals: %d\n", plan->nobjectives, plan->ngoals);
}

/* ---- output files ---- */

/* Write n bytes to DIR/NAME through a temporary name and rename. */
static int write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char final[4096], tmp[4200];
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", final, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "imrt phantom: cannot create %s: %s\n", tmp, strerror(errno));
        return 0;
    }
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int bad = w != n;
    if (fclose(f) != 0)
        bad = 1;
    if (bad || rename(tmp, final) != 0) {
        fprintf(stderr, "imrt phantom: cannot write %s: %s\n", final, strerror(errno));
        unlink(tmp);
        return 0;
    }
    return 1;
}

static int write_mhd(const char *dir, const char *stem, const imrt_grid *g, const char *type,
                     const void *data, size_t bytes)
{
    char raw[256], mhd[2048], name[300];
    snprintf(raw, sizeof raw, "%s.raw", stem);
    const uint16_t one = 1;
    int msb = *(const uint8_t *)&one == 0;
    int n = snprintf(mhd, sizeof mhd,
                     "ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                     "BinaryDataByteOrderMSB = %s\nCompressedData = False\n"
                     "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = %.6f %.6f %.6f\n"
                     "CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\n"
                     "ElementSpacing = %.6f %.6f %.6f\nDimSize = %d %d %d\n"
                     "ElementType = %s\nElementDataFile = %s\n",
                     msb ? "True" : "False", g->origin[0], g->origin[1], g->origin[2], g->dx,
                     g->dy, g->dz, g->nx, g->ny, g->nz, type, raw);
    if (!write_file(dir, raw, data, bytes))
        return 0;
    snprintf(name, sizeof name, "%s.mhd", stem);
    return write_file(dir, name, mhd, (size_t)n);
}

/* labels: scratch of nvox bytes; holds the display labels on entry and on return. */
static int write_outputs(const char *dir, const imrt_phantom *p, const imrt_plan *plan,
                         const imrt_spec_info *info, uint8_t *labels, const char *chars)
{
    const imrt_grid *g = &p->grid;
    size_t nvox = (size_t)imrt_grid_nvox(g);
    if (!write_mhd(dir, "density", g, "MET_FLOAT", p->density, nvox * sizeof(float)))
        return 0;
    imrt_phantom_label_map(p, labels);
    int ok_map = write_mhd(dir, "structures", g, "MET_UCHAR", labels, nvox);
    display_labels(p, labels);
    if (!ok_map)
        return 0;
    /* legend and preview through memory streams */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return 0;
    fprintf(m, "# structures.raw labels: 0 = no structure; where structures overlap the one\n"
               "# with the smaller priority number owns the voxel (ties: the later one)\n");
    fprintf(m, "# label name kind priority voxels volume_cm3 analytic_cm3 preview_char\n");
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *st = &p->structures[s];
        char analytic[32] = "-";
        if (info->volumes[s].analytic_cc > 0.0)
            snprintf(analytic, sizeof analytic, "%.3f", info->volumes[s].analytic_cc);
        fprintf(m, "%d %s %s %d %lld %.3f %s %c\n", s + 1, st->name,
                imrt_structure_kind_name(st->kind), st->priority, (long long)st->count,
                info->volumes[s].volume_cc, analytic, chars[s] ? chars[s] : '-');
    }
    fclose(m);
    int ok = write_file(dir, "structures.txt", buf, len);
    free(buf);
    if (!ok)
        return 0;
    buf = NULL;
    len = 0;
    m = open_memstream(&buf, &len);
    if (!m)
        return 0;
    print_table(m, p, info);
    print_plan(m, plan);
    fputc('\n', m);
    print_previews(m, p, plan, labels, chars, 1, NULL);
    fclose(m);
    ok = write_file(dir, "preview.txt", buf, len);
    free(buf);
    return ok;
}

int imrt_cmd_phantom(int argc, char **argv)
{
    static const struct option opts[] = {IMRT_CLI_COMMON_OPTIONS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"grid", required_argument, NULL, OPT_GRID},
                                         {"export-matrad", required_argument, NULL, OPT_EXPORT},
                                         {"preview", required_argument, NULL, OPT_PREVIEW},
                                         {"at", required_argument, NULL, OPT_AT},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "phantom";
    imrt_cli_common common = {0};
    const char *dir = NULL, *export_path = NULL;
    imrt_spec_options sopt = {0};
    int preview = 1; /* 0 none, 1 axial, 2 all */
    double at[3] = {0, 0, 0};
    int has_at = 0;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("%s", USAGE);
            return IMRT_EXIT_OK;
        case 'o':
            dir = optarg;
            continue;
        case OPT_GRID: {
            char *end = NULL;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(v >= IMRT_SPEC_MIN_GRID_MM) ||
                v > IMRT_SPEC_MAX_GRID_MM)
                return imrt_cli_usage_error(cmd, "--grid '%s' must be a spacing in [%g, %g] mm",
                                            optarg, IMRT_SPEC_MIN_GRID_MM, IMRT_SPEC_MAX_GRID_MM);
            sopt.grid_mm = v;
            continue;
        }
        case OPT_EXPORT:
            export_path = optarg;
            continue;
        case OPT_PREVIEW:
            if (strcmp(optarg, "none") == 0)
                preview = 0;
            else if (strcmp(optarg, "axial") == 0)
                preview = 1;
            else if (strcmp(optarg, "all") == 0)
                preview = 2;
            else
                return imrt_cli_usage_error(cmd, "--preview '%s' must be axial, all or none",
                                            optarg);
            continue;
        case OPT_AT: {
            char tail;
            if (sscanf(optarg, "%lf,%lf,%lf%c", &at[0], &at[1], &at[2], &tail) != 3 ||
                !isfinite(at[0]) || !isfinite(at[1]) || !isfinite(at[2]))
                return imrt_cli_usage_error(cmd, "--at '%s' must be X,Y,Z in mm", optarg);
            has_at = 1;
            continue;
        }
        case '?':
            return imrt_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        case ':':
            return imrt_cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default: {
            int r = imrt_cli_common_option(&common, opt, optarg, cmd);
            if (r < 0)
                return IMRT_EXIT_USAGE;
            if (r == 0)
                return imrt_cli_usage_error(cmd, "option '%s' is not valid here",
                                            argv[optind - 1]);
        }
        }
    }
    if (argc - optind != 1)
        return imrt_cli_usage_error(cmd, "expected one SPEC file, got %d arguments",
                                    argc - optind);
    const char *spec = argv[optind];
    struct stat sb;
    errno = 0;
    if (access(spec, R_OK) != 0 || stat(spec, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "imrt phantom: cannot read spec '%s': %s\n", spec,
                errno ? strerror(errno) : "not a regular file");
        return IMRT_EXIT_INPUT;
    }
    if (dir && stat(dir, &sb) == 0 && !common.force) {
        fprintf(stderr, "imrt phantom: output folder '%s' exists; use --force to overwrite it\n",
                dir);
        return IMRT_EXIT_OUTPUT;
    }
    if (export_path && stat(export_path, &sb) == 0 && !common.force) {
        fprintf(stderr, "imrt phantom: '%s' exists; use --force to overwrite it\n", export_path);
        return IMRT_EXIT_OUTPUT;
    }

    imrt_context *ctx = imrt_cli_context(&common, cmd); /* the memory budget */
    if (!ctx)
        return IMRT_EXIT_RESOURCE;
    sopt.max_memory = imrt_context_max_memory(ctx);
    imrt_context_destroy(&ctx);
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_spec_info *info = NULL;
    uint8_t *labels = NULL;
    char *chars = NULL;
    int rc = IMRT_EXIT_OK;
    imrt_status st = imrt_spec_load_ex(spec, &sopt, &p, &plan, &info);
    if (st != IMRT_OK)
        return imrt_cli_fail_input(cmd, st);
    size_t nvox = (size_t)imrt_grid_nvox(&p->grid);
    labels = imrt_malloc(nvox);
    chars = imrt_calloc((size_t)p->nstructures + 1, 1);
    if (!labels || !chars) {
        fprintf(stderr, "imrt phantom: out of memory\n");
        rc = IMRT_EXIT_RESOURCE;
        goto done;
    }
    structure_chars(p, chars);
    display_labels(p, labels);
    if (!common.quiet) {
        print_table(stdout, p, info);
        print_plan(stdout, plan);
        if (preview) {
            fputc('\n', stdout);
            print_previews(stdout, p, plan, labels, chars, preview == 2, has_at ? at : NULL);
        }
    }
    if (dir) {
        /* staged: a failed run leaves no folder behind (imrt/io.h) */
        imrt_outdir *od = NULL;
        st = imrt_outdir_open(dir, common.force, &od);
        if (st != IMRT_OK) {
            rc = imrt_cli_fail(cmd, st);
            goto done;
        }
        if (!write_outputs(imrt_outdir_staging(od), p, plan, info, labels, chars)) {
            imrt_outdir_destroy(&od);
            rc = IMRT_EXIT_OUTPUT;
            goto done;
        }
        st = imrt_outdir_commit(od);
        imrt_outdir_destroy(&od);
        if (st != IMRT_OK) {
            rc = imrt_cli_fail(cmd, st);
            goto done;
        }
        if (!common.quiet)
            printf("wrote %s/{density,structures}.{mhd,raw}, structures.txt, preview.txt\n", dir);
    }
    if (export_path) {
        st = imrt_matrad_export(p, export_path);
        if (st != IMRT_OK) {
            rc = imrt_cli_fail(cmd, st);
            goto done;
        }
        if (!common.quiet)
            printf("wrote matRad file %s\n", export_path);
    }
done:
    imrt_free(labels);
    imrt_free(chars);
    imrt_spec_info_destroy(&info);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
    return rc;
}
