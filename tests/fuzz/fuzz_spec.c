/*
 * tests/fuzz/fuzz_spec.c - libFuzzer harness for the JSON phantom/plan spec
 * reader (engine/spec.c): parses the input with imrt_spec_parse, which
 * rasterises the phantom, and checks the invariants of what it returns.
 *
 * Memory and time cap: before parsing, the harness reads phantom.grid itself
 * and, when the grid would exceed FUZZ_SPEC_MAX_VOXELS, passes the reader's
 * grid option (imrt_spec_options.grid_mm) with the finest spacing that fits,
 * so every spec is still parsed in full but on a small grid; a spec that does
 * not fit even at the coarsest allowed spacing is skipped. Imports: relative
 * file names resolve in a private temporary folder that holds one tiny matRad
 * file, ct.mat (written at start-up by the exporter); absolute names and
 * names containing ".." are skipped, so the fuzzer never reads other files.
 * IMRT_FUZZ_VERBOSE=1 prints the reader's verdict on each input.
 */
#define _GNU_SOURCE
#include "imrt.h"

#include "fuzz_util.h"

#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#define FUZZ_SPEC_MAX_VOXELS 32768 /* 32^3 */

static char import_dir[64];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_import_dir(void)
{
    if (import_dir[0])
        nftw(import_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* A 4 x 3 x 2 phantom with a target and a body, exported as ct.mat. */
static void write_import_file(void)
{
    snprintf(import_dir, sizeof import_dir, "/tmp/imrt-fuzz-spec-XXXXXX");
    if (!mkdtemp(import_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(remove_import_dir);
    imrt_grid g;
    const double origin[3] = {-3, -2, -1};
    imrt_phantom *p = NULL;
    int t = -1, b = -1;
    if (imrt_grid_init(&g, 4, 3, 2, 2.0, 2.0, 2.0, origin) != IMRT_OK ||
        imrt_phantom_create(&g, "ct", 1.0f, &p) != IMRT_OK ||
        imrt_phantom_add_structure(p, "PTV", IMRT_KIND_TARGET, 1, &t) != IMRT_OK ||
        imrt_phantom_add_structure(p, "BODY", IMRT_KIND_BODY, 100, &b) != IMRT_OK) {
        fprintf(stderr, "fuzz_spec: %s\n", imrt_last_error());
        abort();
    }
    for (int v = 0; v < 24; v++) {
        p->density[v] = 0.2f + 0.05f * (float)v;
        p->structures[b].mask[v] = 1;
        p->structures[t].mask[v] = (uint8_t)(v % 5 == 0);
    }
    imrt_structure_recount(p, &p->structures[t]);
    imrt_structure_recount(p, &p->structures[b]);
    char path[128];
    snprintf(path, sizeof path, "%s/ct.mat", import_dir);
    if (imrt_matrad_export(p, path) != IMRT_OK) {
        fprintf(stderr, "fuzz_spec: %s\n", imrt_last_error());
        abort();
    }
    imrt_phantom_destroy(&p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    write_import_file();
    return 0;
}

/* Voxels of a grid of this size at spacing sp (the reader's rule). */
static double grid_voxels(const double size[3], const double sp[3])
{
    double total = 1.0;
    for (int a = 0; a < 3; a++) {
        double cnt = ceil(size[a] / sp[a] - 1e-9);
        total *= cnt < 1.0 ? 1.0 : cnt;
    }
    return total;
}

/* Read n numbers from an array (or one number repeated when `scalar`);
 * 0 when the value does not have that form (the reader rejects it then). */
static int numbers(json_t *v, int scalar, double *out)
{
    if (scalar && json_is_number(v)) {
        out[0] = out[1] = out[2] = json_number_value(v);
        return 1;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x))
            return 0;
        out[i] = json_number_value(x);
    }
    return 1;
}

/* Decide how to parse: 1 = parse (opt set), 0 = skip the input. */
static int gate(json_t *root, imrt_spec_options *opt)
{
    json_t *ph = json_object_get(root, "phantom");
    if (!json_is_object(ph))
        return 1;
    if (json_object_get(ph, "import")) {
        json_t *f = json_object_get(ph, "file");
        if (json_is_string(f)) {
            const char *s = json_string_value(f);
            if (s[0] == '/' || strstr(s, ".."))
                return 0;
        }
        return 1;
    }
    json_t *gj = json_object_get(ph, "grid");
    if (!json_is_object(gj))
        return 1;
    double size[3], sp[3];
    if (!numbers(json_object_get(gj, "size_mm"), 0, size) ||
        !numbers(json_object_get(gj, "spacing_mm"), 1, sp))
        return 1; /* the reader refuses it */
    for (int a = 0; a < 3; a++) {
        if (!(size[a] > 0.0) || !(size[a] <= 5000.0))
            return 1;
        if (!(sp[a] >= IMRT_SPEC_MIN_GRID_MM) || !(sp[a] <= IMRT_SPEC_MAX_GRID_MM))
            return 1;
    }
    if (grid_voxels(size, sp) <= FUZZ_SPEC_MAX_VOXELS)
        return 1;
    double h = cbrt(size[0] * size[1] * size[2] / FUZZ_SPEC_MAX_VOXELS);
    if (h < IMRT_SPEC_MIN_GRID_MM)
        h = IMRT_SPEC_MIN_GRID_MM;
    for (; h <= IMRT_SPEC_MAX_GRID_MM; h *= 1.05) {
        const double iso[3] = {h, h, h};
        if (grid_voxels(size, iso) <= FUZZ_SPEC_MAX_VOXELS) {
            opt->grid_mm = h;
            return 1;
        }
    }
    return 0;
}

static void check_result(const imrt_phantom *p, const imrt_plan *plan, const imrt_spec_info *info)
{
    FUZZ_CHECK(p && plan && info);
    const int64_t nvox = imrt_grid_nvox(&p->grid);
    FUZZ_CHECK(nvox >= 1);
    if (!info->imported)
        FUZZ_CHECK(nvox <= FUZZ_SPEC_MAX_VOXELS);
    for (int64_t v = 0; v < nvox; v++)
        FUZZ_CHECK(isfinite(p->density[v]) && p->density[v] >= 0.0f);
    FUZZ_CHECK(p->nstructures >= 1 && p->nstructures <= IMRT_MAX_STRUCTURES);
    FUZZ_CHECK(info->nstructures == p->nstructures);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *st = &p->structures[s];
        FUZZ_CHECK(memchr(st->name, '\0', sizeof st->name) != NULL && st->name[0]);
        FUZZ_CHECK(imrt_phantom_find(p, st->name) == s);
        FUZZ_CHECK(st->priority >= 1);
        int64_t n = 0;
        for (int64_t v = 0; v < nvox; v++) {
            FUZZ_CHECK(st->mask[v] <= 1);
            n += st->mask[v];
        }
        FUZZ_CHECK(n == st->count);
        FUZZ_CHECK(info->volumes[s].voxels == st->count);
    }
    FUZZ_CHECK(plan->nbeams >= 0 && (plan->nbeams == 0 || plan->beams));
    FUZZ_CHECK(plan->nobjectives >= 0 && (plan->nobjectives == 0 || plan->objectives));
    FUZZ_CHECK(plan->ngoals >= 0 && (plan->ngoals == 0 || plan->goals));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imrt_spec_options opt = {.grid_mm = 0.0};
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    int go = json_is_object(root) ? gate(root, &opt) : 1;
    json_decref(root);
    if (!go)
        return 0;
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_spec_info *info = NULL;
    imrt_status st = imrt_spec_parse((const char *)data, size, "fuzz.json", import_dir, &opt, &p,
                                     &plan, &info);
    if (getenv("IMRT_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_spec: %s\n", st == IMRT_OK ? "parsed" : imrt_last_error());
    if (st == IMRT_OK) {
        check_result(p, plan, info);
    } else {
        FUZZ_CHECK(st < 0 && !p && !plan && !info);
        /* imrt/spec.h: every problem is reported as "FILE:LINE: KEY.PATH: ..." */
        FUZZ_CHECK(strncmp(imrt_last_error(), "fuzz.json", 9) == 0);
    }
    imrt_phantom_destroy(&p);
    imrt_plan_destroy(&plan);
    imrt_spec_info_destroy(&info);
    return 0;
}
