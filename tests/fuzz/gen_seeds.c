/*
 * tests/fuzz/gen_seeds.c - writes the binary seed files of the fuzz corpus:
 * small matRad MAT files (written by the exporter, compressed, plus an
 * uncompressed copy so that mutations reach the array parser directly) and
 * small dij files (imrt_dij_save, prefixed with the harness's control byte).
 * Usage: gen_seeds DIR   (writes DIR/matrad/... and DIR/dij/...)
 * Built and run by `make fuzz-seeds`; the seeds it wrote are in git.
 */
#include "imrt.h"

#include <matio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(expr)                                                          \
    do {                                                                     \
        if ((expr) != IMRT_OK) {                                             \
            fprintf(stderr, "gen_seeds: %s: %s\n", #expr, imrt_last_error()); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* A phantom of nx x ny x nz voxels with `ns` structures (BODY first). */
static imrt_phantom *make_phantom(int nx, int ny, int nz, int ns)
{
    imrt_grid g;
    const double origin[3] = {-4, -3, -2};
    imrt_phantom *p = NULL;
    CHECK(imrt_grid_init(&g, nx, ny, nz, 2.0, 2.5, 3.0, origin));
    CHECK(imrt_phantom_create(&g, "seed", 0.001f, &p));
    const int64_t nvox = imrt_grid_nvox(&g);
    for (int64_t v = 0; v < nvox; v++)
        p->density[v] = (float)(0.25 + 0.1 * (double)(v % 13));
    static const char *names[] = {"BODY", "PTV", "Cord", "Lung L"};
    static const imrt_structure_kind kinds[] = {IMRT_KIND_BODY, IMRT_KIND_TARGET, IMRT_KIND_OAR,
                                                IMRT_KIND_OAR};
    for (int s = 0; s < ns && s < 4; s++) {
        int idx = -1;
        CHECK(imrt_phantom_add_structure(p, names[s], kinds[s], s == 0 ? 100 : s, &idx));
        for (int64_t v = 0; v < nvox; v++)
            p->structures[idx].mask[v] = (uint8_t)(s == 0 || v % (s + 2) == 0);
        imrt_structure_recount(p, &p->structures[idx]);
    }
    return p;
}

/* Copy a MAT file variable by variable without compression. */
static void uncompressed_copy(const char *from, const char *to)
{
    mat_t *in = Mat_Open(from, MAT_ACC_RDONLY);
    mat_t *out = Mat_CreateVer(to, NULL, MAT_FT_MAT5);
    if (!in || !out) {
        fprintf(stderr, "gen_seeds: cannot copy %s to %s\n", from, to);
        exit(1);
    }
    matvar_t *v;
    while ((v = Mat_VarReadNext(in)) != NULL) {
        if (Mat_VarWrite(out, v, MAT_COMPRESSION_NONE) != 0) {
            fprintf(stderr, "gen_seeds: cannot write %s\n", to);
            exit(1);
        }
        Mat_VarFree(v);
    }
    Mat_Close(in);
    Mat_Close(out);
}

static void mat_seeds(const char *dir)
{
    char a[512], b[512];
    imrt_phantom *p = make_phantom(4, 3, 2, 3);
    snprintf(a, sizeof a, "%s/matrad/seed_small_z.mat", dir);
    CHECK(imrt_matrad_export(p, a));
    snprintf(b, sizeof b, "%s/matrad/seed_small.mat", dir);
    uncompressed_copy(a, b);
    imrt_phantom_destroy(&p);
    p = make_phantom(3, 2, 1, 4); /* one slice: a 2-D cube */
    snprintf(a, sizeof a, "%s/matrad/seed_slice_z.mat", dir);
    CHECK(imrt_matrad_export(p, a));
    snprintf(b, sizeof b, "%s/matrad/seed_slice.mat", dir);
    uncompressed_copy(a, b);
    imrt_phantom_destroy(&p);
}

/* Save d under a temporary name and write it to `to` after a control byte. */
static void dij_seed(const imrt_dij *d, const char *to, unsigned char control)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    CHECK(imrt_dij_save(d, tmp));
    FILE *in = fopen(tmp, "rb"), *out = fopen(to, "wb");
    if (!in || !out || fputc(control, out) == EOF) {
        fprintf(stderr, "gen_seeds: cannot write %s\n", to);
        exit(1);
    }
    int c;
    while ((c = fgetc(in)) != EOF)
        fputc(c, out);
    fclose(in);
    if (fclose(out) != 0)
        exit(1);
    unlink(tmp);
}

static void dij_seeds(const char *dir)
{
    imrt_grid g;
    const double origin[3] = {0, 0, 0};
    CHECK(imrt_grid_init(&g, 3, 2, 2, 2.0, 2.0, 2.0, origin));
    imrt_dij *d = NULL;
    /* 5 rows, 4 beamlets in 2 beams, 9 entries */
    CHECK(imrt_dij_alloc(&g, 5, 4, 9, 2, &d));
    const int64_t voxel[5] = {0, 2, 3, 7, 11};
    const int64_t rowptr[6] = {0, 2, 3, 5, 8, 9};
    const int32_t col[9] = {0, 3, 1, 0, 2, 1, 2, 3, 0};
    for (int r = 0; r < 5; r++)
        d->voxel[r] = voxel[r];
    for (int r = 0; r < 6; r++)
        d->rowptr[r] = rowptr[r];
    for (int e = 0; e < 9; e++) {
        d->col[e] = col[e];
        d->val[e] = 0.01f * (float)(e + 1);
    }
    d->beam_start[0] = 0;
    d->beam_start[1] = 2;
    d->beam_start[2] = 4;
    d->beamlet_mm = 5.0;
    for (int c = 0; c < 8; c++)
        d->bixel_uv[c] = (float)(c - 4);
    for (int b = 0; b < 2; b++) {
        snprintf(d->beams[b].name, sizeof d->beams[b].name, "G%03d", 90 * b);
        d->beams[b].gantry_deg = 90.0 * b;
        d->beams[b].iso[0] = 1.0;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/dij/seed_small.bin", dir);
    dij_seed(d, path, 3);
    snprintf(path, sizeof path, "%s/dij/seed_small_crc.bin", dir);
    dij_seed(d, path, 0);
    imrt_dij_destroy(&d);
    /* format version 2: the same rows with scatter-map entries (two beams,
     * 2 x 2 x 2 nodes each: columns 4..19) after the beamlet entries */
    CHECK(imrt_dij_alloc(&g, 5, 4, 9 + 5 * 8, 2, &d));
    {
        int64_t e = 0;
        for (int r = 0; r < 5; r++) {
            d->voxel[r] = voxel[r];
            d->rowptr[r] = e;
            for (int64_t k = rowptr[r]; k < rowptr[r + 1]; k++) {
                d->col[e] = col[k];
                d->val[e++] = 0.01f * (float)(k + 1);
            }
            for (int c = 0; c < 8; c++) {
                d->col[e] = 4 + 8 * (r % 2) + c;
                d->val[e++] = 0.001f * (float)(c + 1);
            }
        }
        d->rowptr[5] = e;
    }
    d->beam_start[0] = 0;
    d->beam_start[1] = 2;
    d->beam_start[2] = 4;
    d->beamlet_mm = 5.0;
    for (int j = 0; j < 4; j++) {
        d->bixel_uv[2 * j] = 5.0f * (float)j;
        d->bixel_uv[2 * j + 1] = 0.0f;
    }
    d->nvirt = 16;
    d->smap = calloc(2, sizeof *d->smap);
    if (!d->smap)
        exit(1);
    for (int b = 0; b < 2; b++) {
        d->smap[b] = (imrt_dij_smap){.first = 4 + 8 * b, .np = 2, .nq = 2, .nk = 2, .u0 = -20,
                                     .v0 = -20, .h = 40, .s0 = 30, .ln_ratio = 0.5};
        snprintf(d->beams[b].name, sizeof d->beams[b].name, "G%03d", 90 * b);
    }
    CHECK(imrt_dij_scatter_prepare(d));
    snprintf(path, sizeof path, "%s/dij/seed_maps.bin", dir);
    dij_seed(d, path, 3);
    /* format version 3: the same maps with a 30 mm lateral cut-off */
    for (int b = 0; b < 2; b++)
        d->smap[b].cutoff = 30.0;
    CHECK(imrt_dij_scatter_prepare(d));
    snprintf(path, sizeof path, "%s/dij/seed_maps_cut.bin", dir);
    dij_seed(d, path, 3);
    imrt_dij_destroy(&d);
    CHECK(imrt_dij_alloc(&g, 0, 0, 0, 0, &d)); /* an empty dij */
    d->beamlet_mm = 5.0;
    snprintf(path, sizeof path, "%s/dij/seed_empty.bin", dir);
    dij_seed(d, path, 3);
    imrt_dij_destroy(&d);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR\n");
        return 2;
    }
    mat_seeds(argv[1]);
    dij_seeds(argv[1]);
    return 0;
}
