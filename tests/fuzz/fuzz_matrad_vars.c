/*
 * tests/fuzz/fuzz_matrad_vars.c - structure-aware libFuzzer harness for the
 * matRad importer (engine/matrad.c). fuzz_matrad mutates MAT bytes, and
 * nearly every mutant stops at the importer's structural check; this one
 * reads the input as a recipe for well-formed MAT variables (ct: a struct
 * whose fields are drawn from cubeHU, cube, resolution, cubeDim, x, y, z;
 * cst: a cell of drawn size), writes them with libmatio into a memfd and
 * imports that, so the fuzzing reaches the importer's checks of what the
 * variables hold: classes, ranks, sizes, cells inside cells, names, types,
 * voxel indices, priorities, resolutions and coordinates.
 */
#define _GNU_SOURCE
#include "imrt.h"

#include "fuzz_util.h"

#include <matio.h>
#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_memfile file = {-1, ""};

typedef struct {
    const uint8_t *p;
    size_t n;
} recipe;

static unsigned take(recipe *r, unsigned range)
{
    if (r->n == 0 || range == 0)
        return 0;
    unsigned v = *r->p++;
    r->n--;
    return v % range;
}

/* Values that sit on the importer's boundaries. */
static double take_value(recipe *r)
{
    static const double vals[] = {0.0, 1.0, 2.0, 3.0, 2.5, -1.0, 16.0, 17.0, -1000.0, 1000.0,
                                  0.5, 1e6, 1e9, 24.0, 1.5, 4.0, 6.0, 1e-300};
    unsigned k = take(r, 22);
    if (k == 18)
        return (double)NAN;
    if (k == 19)
        return (double)INFINITY;
    if (k == 20)
        return -(double)INFINITY;
    if (k == 21)
        return (double)take(r, 256);
    return vals[k];
}

static const char *take_text(recipe *r)
{
    static const char *texts[] = {"BODY", "PTV", "TARGET", "OAR", "External", "Cord",
                                  "", " ", "a b", "PTV", "target", "x"};
    return texts[take(r, 12)];
}

/* One variable of the recipe's choosing; depth limits cells in cells. */
static matvar_t *take_var(recipe *r, const char *name, int depth)
{
    unsigned kind = take(r, depth > 2 ? 4 : 7);
    size_t dims[3];
    dims[0] = take(r, 5); /* one statement each: the recipe is read in order */
    dims[1] = take(r, 5);
    dims[2] = take(r, 4);
    int rank = 2 + (int)take(r, 2);
    if (take(r, 4) != 0) /* mostly non-empty */
        for (int a = 0; a < 3; a++)
            dims[a] = dims[a] ? dims[a] : 1;
    size_t numel = dims[0] * dims[1] * (rank == 3 ? dims[2] : 1);
    switch (kind) {
    case 0: case 1: { /* double */
        double buf[64];
        for (size_t e = 0; e < numel; e++)
            buf[e] = take_value(r);
        return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, rank, dims, buf, 0);
    }
    case 2: { /* uint8 / int16 */
        int16_t buf[64];
        for (size_t e = 0; e < numel; e++)
            buf[e] = (int16_t)((int)take(r, 256) - 32);
        return Mat_VarCreate(name, MAT_C_INT16, MAT_T_INT16, rank, dims, buf, 0);
    }
    case 3: { /* text */
        const char *s = take_text(r);
        size_t d[2] = {1, strlen(s)};
        return Mat_VarCreate(name, MAT_C_CHAR, MAT_T_UTF8, 2, d, (void *)s, 0);
    }
    case 4: { /* struct with some of x, y, z, Priority */
        const char *fields[] = {"x", "y", "z", "Priority"};
        size_t d[2] = {1, take(r, 3)};
        matvar_t *s = Mat_VarCreateStruct(name, 2, d, fields, 4);
        for (size_t e = 0; s && e < d[1]; e++)
            for (int f = 0; f < 4; f++)
                if (take(r, 3))
                    Mat_VarSetStructFieldByName(s, fields[f], e, take_var(r, NULL, depth + 1));
        return s;
    }
    default: { /* cell */
        size_t d[2];
        d[0] = take(r, 3);
        d[1] = take(r, 3);
        matvar_t **cells = calloc(d[0] * d[1] + 1, sizeof *cells);
        for (size_t e = 0; e < d[0] * d[1]; e++)
            cells[e] = take_var(r, NULL, depth + 1);
        matvar_t *c = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, d, cells, 0);
        free(cells); /* copied: the cell owns the entries */
        return c;
    }
    }
}

/* ct: a struct with the fields the recipe picks; cubes mostly as cells. */
static matvar_t *take_ct(recipe *r)
{
    static const char *all[] = {"cubeHU", "cube", "resolution", "cubeDim", "x", "y", "z"};
    const char *fields[7];
    matvar_t *vals[7];
    unsigned n = 0;
    for (int f = 0; f < 7; f++) {
        if (!take(r, 2))
            continue;
        matvar_t *v = take_var(r, NULL, 1);
        if (f < 2 && take(r, 2)) { /* {cube} */
            size_t one[2] = {1, 1};
            matvar_t *cells[1] = {v};
            v = Mat_VarCreate(NULL, MAT_C_CELL, MAT_T_CELL, 2, one, cells, 0);
        }
        fields[n] = all[f];
        vals[n++] = v;
    }
    size_t d[2] = {1, 1};
    matvar_t *ct = Mat_VarCreateStruct("ct", 2, d, n ? fields : NULL, n);
    for (unsigned f = 0; f < n; f++)
        Mat_VarSetStructFieldByName(ct, fields[f], 0, vals[f]);
    return ct;
}

/* cst: rows x cols cell; column 2 and 3 mostly text, 4 mostly {indices}. */
static matvar_t *take_cst(recipe *r)
{
    size_t d[2];
    d[0] = take(r, 4);
    d[1] = 3 + take(r, 4);
    matvar_t **cells = calloc(d[0] * d[1] + 1, sizeof *cells);
    for (size_t c = 0; c < d[1]; c++)
        for (size_t i = 0; i < d[0]; i++) {
            matvar_t *v;
            if ((c == 1 || c == 2) && take(r, 4)) {
                const char *s = take_text(r);
                size_t td[2] = {1, strlen(s)};
                v = Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UTF8, 2, td, (void *)s, 0);
            } else if (c == 3 && take(r, 4)) {
                double idx[16];
                size_t id[2] = {take(r, 16), 1};
                for (size_t e = 0; e < id[0]; e++)
                    idx[e] = take(r, 8) ? (double)(1 + take(r, 24)) : take_value(r);
                matvar_t *in = Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, id, idx, 0);
                size_t one[2] = {1, 1};
                matvar_t *w[1] = {in};
                v = take(r, 2) ? Mat_VarCreate(NULL, MAT_C_CELL, MAT_T_CELL, 2, one, w, 0) : in;
            } else {
                v = take_var(r, NULL, 1);
            }
            cells[i + d[0] * c] = v;
        }
    matvar_t *cst = Mat_VarCreate("cst", MAT_C_CELL, MAT_T_CELL, 2, d, cells, 0);
    free(cells);
    return cst;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    recipe r = {data, size};
    if (fuzz_memfile_set(&file, NULL, 0) != 0)
        abort();
    mat_t *mat = Mat_CreateVer(file.path, NULL, MAT_FT_MAT5);
    if (!mat)
        abort();
    const unsigned order = take(&r, 4); /* which variables, in which order */
    matvar_t *ct = order != 3 ? take_ct(&r) : NULL;
    matvar_t *cst = order != 2 ? take_cst(&r) : NULL;
    const enum matio_compression z = take(&r, 2) ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
    if (order == 1) {
        if (cst)
            Mat_VarWrite(mat, cst, z);
        if (ct)
            Mat_VarWrite(mat, ct, z);
    } else {
        if (ct)
            Mat_VarWrite(mat, ct, z);
        if (cst)
            Mat_VarWrite(mat, cst, z);
    }
    Mat_VarFree(ct);
    Mat_VarFree(cst);
    Mat_Close(mat);
    imrt_phantom *p = NULL;
    imrt_status st = imrt_matrad_import(file.path, NULL, &p);
    if (getenv("IMRT_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_matrad_vars: %s\n", st == IMRT_OK ? "loaded" : imrt_last_error());
    if (st != IMRT_OK) {
        /* a failure leaves no phantom and a message that starts with the file name */
        FUZZ_CHECK(st < 0 && !p);
        FUZZ_CHECK(strncmp(imrt_last_error(), file.path, strlen(file.path)) == 0);
        return 0;
    }
    const int64_t nvox = imrt_grid_nvox(&p->grid);
    for (int64_t v = 0; v < nvox; v++)
        FUZZ_CHECK(isfinite(p->density[v]) && p->density[v] >= 0.0f);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *sd = &p->structures[s];
        FUZZ_CHECK(sd->name[0] && imrt_phantom_find(p, sd->name) == s && sd->priority >= 1);
        int64_t n = 0;
        for (int64_t v = 0; v < nvox; v++)
            n += sd->mask[v];
        FUZZ_CHECK(n == sd->count);
    }
    imrt_phantom_destroy(&p);
    return 0;
}
