/*
 * tests/test_nifti.c - NIfTI-1 round trips (float32 and uint8, .nii.gz and
 * .nii), the header's affine checked with niftilib itself against positions
 * worked out by hand (LPS -> RAS flips x and y), reading files written by
 * other tools in other orientations, error cases, and the Slicer colour
 * table legend.
 */
#include "imrt/nifti.h"

#include "imrt/alloc.h"

#include "test_util.h"

#include <errno.h>

#include <nifti1_io.h>

/* Anisotropic, non-cubic grid so that any mix-up of axes shows:
 * 7 x 5 x 3 voxels of 1.5 x 2.0 x 3.0 mm, voxel (0,0,0) at LPS
 * (-100, -80, -30) mm. */
static imrt_grid test_grid(void)
{
    imrt_grid g;
    const double o[3] = {-100.0, -80.0, -30.0};
    assert_ok(imrt_grid_init(&g, 7, 5, 3, 1.5, 2.0, 3.0, o));
    return g;
}

/* A value that identifies its voxel: 100 i + 10 j + k + 0.25. */
static float voxel_value(int i, int j, int k) { return (float)(100 * i + 10 * j + k) + 0.25f; }

static void fill(const imrt_grid *g, float *a)
{
    for (int k = 0; k < g->nz; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++)
                a[imrt_grid_index(g, i, j, k)] = voxel_value(i, j, k);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void path_in(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static void assert_grid_close(const imrt_grid *a, const imrt_grid *b)
{
    assert_int_equal(a->nx, b->nx);
    assert_int_equal(a->ny, b->ny);
    assert_int_equal(a->nz, b->nz);
    /* the header stores float32: 1e-5 mm is far below any voxel size */
    assert_close(a->dx, b->dx, 0, 1e-5);
    assert_close(a->dy, b->dy, 0, 1e-5);
    assert_close(a->dz, b->dz, 0, 1e-5);
    for (int c = 0; c < 3; c++)
        assert_close(a->origin[c], b->origin[c], 0, 1e-4);
}

static void test_float_round_trip(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    imrt_grid g = test_grid();
    int64_t n = imrt_grid_nvox(&g);
    float *a = imrt_malloc((size_t)n * sizeof *a);
    assert_non_null(a);
    fill(&g, a);
    a[3] = -1.5e-7f; /* tiny and negative values survive too */
    const char *names[2] = {"dose.nii.gz", "dose.nii"};
    for (int f = 0; f < 2; f++) {
        char path[512];
        path_in(path, sizeof path, dir, names[f]);
        assert_ok(imrt_nifti_write_float(path, &g, a, "imrt dose IMRT Gy"));
        imrt_grid r;
        float *b = NULL;
        int dt = 0;
        assert_ok(imrt_nifti_read(path, &r, &b, &dt));
        assert_int_equal(dt, DT_FLOAT32);
        assert_grid_close(&r, &g);
        assert_memory_equal(a, b, (size_t)n * sizeof *a); /* bit for bit */
        imrt_free(b);
        /* gzip magic for .gz, plain header otherwise */
        FILE *fp = fopen(path, "rb");
        unsigned char magic[2];
        assert_int_equal(fread(magic, 1, 2, fp), 2);
        fclose(fp);
        if (f == 0) {
            assert_int_equal(magic[0], 0x1f);
            assert_int_equal(magic[1], 0x8b);
        } else {
            assert_int_equal(magic[0] | (magic[1] << 8), 348);
        }
    }
    imrt_free(a);
    rm_rf(dir);
}

static void test_labels_round_trip(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    imrt_grid g = test_grid();
    int64_t n = imrt_grid_nvox(&g);
    uint8_t *lab = imrt_malloc((size_t)n);
    assert_non_null(lab);
    for (int64_t v = 0; v < n; v++)
        lab[v] = (uint8_t)(v % 7 == 0 ? 0 : 1 + v % 250);
    lab[n - 1] = 255;
    char path[512];
    path_in(path, sizeof path, dir, "structures.nii.gz");
    assert_ok(imrt_nifti_write_labels(path, &g, lab, "imrt structures"));
    imrt_grid r;
    float *b = NULL;
    int dt = 0;
    assert_ok(imrt_nifti_read(path, &r, &b, &dt));
    assert_int_equal(dt, DT_UINT8);
    assert_grid_close(&r, &g);
    for (int64_t v = 0; v < n; v++)
        assert_true(b[v] == (float)lab[v]); /* small integers are exact in float */
    imrt_free(b);
    /* the header says "label map" */
    nifti_image *nim = nifti_image_read(path, 0);
    assert_non_null(nim);
    assert_int_equal(nim->intent_code, NIFTI_INTENT_LABEL);
    assert_int_equal(nim->datatype, DT_UINT8);
    assert_close(nim->cal_max, 255, 0, 0);
    assert_string_equal(nim->descrip, "imrt structures");
    nifti_image_free(nim);
    imrt_free(lab);
    rm_rf(dir);
}

/* Apply a niftilib mat44 to voxel (i,j,k). */
static void apply(mat44 m, double i, double j, double k, double out[3])
{
    for (int r = 0; r < 3; r++)
        out[r] = (double)m.m[r][0] * i + (double)m.m[r][1] * j + (double)m.m[r][2] * k + (double)m.m[r][3];
}

static void test_header_affine_is_ras(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    imrt_grid g = test_grid();
    float *a = imrt_calloc((size_t)imrt_grid_nvox(&g), sizeof *a);
    assert_non_null(a);
    char path[512];
    path_in(path, sizeof path, dir, "density.nii.gz");
    assert_ok(imrt_nifti_write_float(path, &g, a, "imrt density RED"));
    imrt_free(a);
    nifti_image *nim = nifti_image_read(path, 0);
    assert_non_null(nim);
    assert_int_equal(nim->qform_code, NIFTI_XFORM_SCANNER_ANAT);
    assert_int_equal(nim->sform_code, NIFTI_XFORM_SCANNER_ANAT);
    assert_int_equal(nim->xyz_units, NIFTI_UNITS_MM);
    assert_int_equal(nim->nx, 7);
    assert_int_equal(nim->ny, 5);
    assert_int_equal(nim->nz, 3);
    assert_close(nim->pixdim[1], 1.5, 0, 1e-6);
    assert_close(nim->pixdim[2], 2.0, 0, 1e-6);
    assert_close(nim->pixdim[3], 3.0, 0, 1e-6);
    /* Voxel (0,0,0) sits at LPS (-100, -80, -30), i.e. 100 mm to the
     * patient's right, 80 mm anterior, 30 mm inferior: RAS (100, 80, -30). */
    const double want0[3] = {100.0, 80.0, -30.0};
    /* The far corner (6,4,2) at LPS (-91, -72, -24) is RAS (91, 72, -24). */
    const double want1[3] = {91.0, 72.0, -24.0};
    mat44 mats[2] = {nim->sto_xyz, nim->qto_xyz}; /* both forms agree */
    for (int f = 0; f < 2; f++) {
        double p[3];
        apply(mats[f], 0, 0, 0, p);
        for (int c = 0; c < 3; c++)
            assert_close(p[c], want0[c], 0, 1e-4);
        apply(mats[f], 6, 4, 2, p);
        for (int c = 0; c < 3; c++)
            assert_close(p[c], want1[c], 0, 1e-4);
    }
    /* niftilib's own orientation reading: i runs Right-to-Left, j Anterior-
     * to-Posterior, k Inferior-to-Superior (the DICOM LPS axes). */
    int icod, jcod, kcod;
    nifti_mat44_to_orientation(nim->qto_xyz, &icod, &jcod, &kcod);
    assert_int_equal(icod, NIFTI_R2L);
    assert_int_equal(jcod, NIFTI_A2P);
    assert_int_equal(kcod, NIFTI_I2S);
    nifti_image_free(nim);
    /* the public helper gives the same matrix */
    double m[4][4];
    imrt_nifti_affine_ras(&g, m);
    assert_close(m[0][0], -1.5, 0, 0);
    assert_close(m[1][1], -2.0, 0, 0);
    assert_close(m[2][2], 3.0, 0, 0);
    assert_close(m[0][3], 100.0, 0, 0);
    assert_close(m[1][3], 80.0, 0, 0);
    assert_close(m[2][3], -30.0, 0, 0);
    rm_rf(dir);
}

/* Write a file the way another tool might: RAS-ordered voxels, or axes
 * permuted, with niftilib's own writer. */
static void write_foreign(const char *path, int nx, int ny, int nz, mat44 m, const float *data)
{
    const int dims[8] = {3, nx, ny, nz, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, DT_FLOAT32, 1);
    assert_non_null(nim);
    memcpy(nim->data, data, sizeof(float) * (size_t)nx * (size_t)ny * (size_t)nz);
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = m;
    nim->qform_code = 0;
    nim->pixdim[1] = nim->dx = 1;
    nim->pixdim[2] = nim->dy = 1;
    nim->pixdim[3] = nim->dz = 1;
    assert_int_equal(nifti_set_filenames(nim, path, 0, 1), 0);
    nifti_image_write(nim);
    nifti_image_free(nim);
}

static void test_reads_other_orientations(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    char path[512];
    /* (1) RAS voxel order (as many tools write): column i at RAS
     * x = 10 + 2 i, i.e. i runs towards the patient's right, j anterior.
     * 4 x 3 x 2 voxels of 2 x 3 x 4 mm. */
    const int nx = 4, ny = 3, nz = 2;
    float src[24];
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++)
                src[i + nx * (j + ny * k)] = voxel_value(i, j, k);
    mat44 m;
    memset(&m, 0, sizeof m);
    m.m[0][0] = 2.0f;
    m.m[1][1] = 3.0f;
    m.m[2][2] = 4.0f;
    m.m[0][3] = 10.0f;
    m.m[1][3] = 20.0f;
    m.m[2][3] = 30.0f;
    m.m[3][3] = 1.0f;
    path_in(path, sizeof path, dir, "ras.nii.gz");
    write_foreign(path, nx, ny, nz, m, src);
    imrt_grid g;
    float *d = NULL;
    assert_ok(imrt_nifti_read(path, &g, &d, NULL));
    /* RAS x in [10, 16] -> LPS x in [-16, -10]; y likewise [-26, -20]. */
    assert_int_equal(g.nx, 4);
    assert_int_equal(g.ny, 3);
    assert_int_equal(g.nz, 2);
    assert_close(g.origin[0], -16.0, 0, 1e-5);
    assert_close(g.origin[1], -26.0, 0, 1e-5);
    assert_close(g.origin[2], 30.0, 0, 1e-5);
    assert_close(g.dx, 2.0, 0, 1e-6);
    assert_close(g.dy, 3.0, 0, 1e-6);
    assert_close(g.dz, 4.0, 0, 1e-6);
    /* The value of foreign voxel (i,j,k) at RAS (10+2i, 20+3j, 30+4k) must sit
     * at LPS (-10-2i, -20-3j, 30+4k) = imrt voxel (3-i, 2-j, k). */
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++)
                assert_true(d[imrt_grid_index(&g, 3 - i, 2 - j, k)] == voxel_value(i, j, k));
    imrt_free(d);

    /* (2) permuted axes: foreign i runs along superior (z), j along LPS x
     * (RAS -x), k along posterior (RAS -y). Dims 2 x 4 x 3. */
    memset(&m, 0, sizeof m);
    m.m[2][0] = 4.0f;  /* i -> +z */
    m.m[0][1] = -2.0f; /* j -> -x RAS = +x LPS */
    m.m[1][2] = -3.0f; /* k -> -y RAS = +y LPS */
    m.m[0][3] = 5.0f;
    m.m[1][3] = 6.0f;
    m.m[2][3] = 7.0f;
    m.m[3][3] = 1.0f;
    const int fx = 2, fy = 4, fz = 3;
    for (int k = 0; k < fz; k++)
        for (int j = 0; j < fy; j++)
            for (int i = 0; i < fx; i++)
                src[i + fx * (j + fy * k)] = voxel_value(i, j, k);
    path_in(path, sizeof path, dir, "perm.nii");
    write_foreign(path, fx, fy, fz, m, src);
    assert_ok(imrt_nifti_read(path, &g, &d, NULL));
    assert_int_equal(g.nx, 4);
    assert_int_equal(g.ny, 3);
    assert_int_equal(g.nz, 2);
    assert_close(g.origin[0], -5.0, 0, 1e-5);
    assert_close(g.origin[1], -6.0, 0, 1e-5);
    assert_close(g.origin[2], 7.0, 0, 1e-5);
    /* foreign (i,j,k) -> LPS (-5 + 2j, -6 + 3k, 7 + 4i) = imrt voxel (j, k, i) */
    for (int k = 0; k < fz; k++)
        for (int j = 0; j < fy; j++)
            for (int i = 0; i < fx; i++)
                assert_true(d[imrt_grid_index(&g, j, k, i)] == voxel_value(i, j, k));
    imrt_free(d);

    /* (3) oblique: refused */
    memset(&m, 0, sizeof m);
    m.m[0][0] = 0.8f;
    m.m[1][0] = 0.6f;
    m.m[0][1] = -0.6f;
    m.m[1][1] = 0.8f;
    m.m[2][2] = 1.0f;
    m.m[3][3] = 1.0f;
    path_in(path, sizeof path, dir, "oblique.nii");
    write_foreign(path, nx, ny, nz, m, src);
    assert_int_equal(imrt_nifti_read(path, &g, &d, NULL), IMRT_ERR_UNSUPPORTED);
    assert_non_null(strstr(imrt_last_error(), "oblique"));
    assert_null(d);
    rm_rf(dir);
}

static void test_read_errors(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    char path[512];
    imrt_grid g;
    float *d = NULL;
    path_in(path, sizeof path, dir, "missing.nii.gz");
    assert_int_equal(imrt_nifti_read(path, &g, &d, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), path));
    assert_non_null(strstr(imrt_last_error(), strerror(ENOENT)));
    path_in(path, sizeof path, dir, "text.nii");
    FILE *f = fopen(path, "w");
    fputs("this is not an image\n", f);
    fclose(f);
    assert_int_equal(imrt_nifti_read(path, &g, &d, NULL), IMRT_ERR_FORMAT);
    assert_non_null(strstr(imrt_last_error(), path));
    /* a truncated file: header intact, data cut short */
    imrt_grid tg = test_grid();
    float *a = imrt_calloc((size_t)imrt_grid_nvox(&tg), sizeof *a);
    path_in(path, sizeof path, dir, "cut.nii");
    assert_ok(imrt_nifti_write_float(path, &tg, a, NULL));
    imrt_free(a);
    assert_int_equal(truncate(path, 352 + 100), 0);
    assert_int_equal(imrt_nifti_read(path, &g, &d, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "ends after"));
    assert_null(d);
    /* writing bad data */
    float bad[105];
    memset(bad, 0, sizeof bad);
    bad[17] = NAN;
    path_in(path, sizeof path, dir, "nan.nii.gz");
    assert_int_equal(imrt_nifti_write_float(path, &tg, bad, NULL), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "voxel 17"));
    imrt_grid badg = tg;
    badg.dx = -1;
    assert_int_equal(imrt_nifti_write_float(path, &badg, bad, NULL), IMRT_ERR_RANGE);
    assert_int_equal(access(path, F_OK), -1);
    /* writing into a missing folder names the path */
    path_in(path, sizeof path, dir, "nofolder/dose.nii.gz");
    memset(bad, 0, sizeof bad);
    assert_int_equal(imrt_nifti_write_float(path, &tg, bad, NULL), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "nofolder"));
    rm_rf(dir);
}

static void test_read_allocation_failures(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    imrt_grid g = test_grid();
    float a[105];
    fill(&g, a);
    char path[512];
    path_in(path, sizeof path, dir, "a.nii.gz");
    assert_ok(imrt_nifti_write_float(path, &g, a, NULL));
    int failures = 0;
    for (long n = 1; n < 10; n++) {
        imrt_grid r;
        float *d = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_nifti_read(path, &r, &d, NULL);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK) {
            imrt_free(d);
            break;
        }
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(d);
        failures++;
    }
    assert_true(failures >= 2);
    /* and the writer */
    failures = 0;
    for (long n = 1; n < 10; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_nifti_write_float(path, &g, a, NULL);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK)
            break;
        assert_int_equal(st, IMRT_ERR_NOMEM);
        failures++;
    }
    assert_true(failures >= 1);
    rm_rf(dir);
}

static void test_legend_is_a_slicer_colour_table(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", imrt_test_tmpdir());
    char path[512];
    path_in(path, sizeof path, dir, "structures.ctbl");
    const imrt_label_entry e[3] = {
        {1, "PTV", IMRT_KIND_TARGET, {213, 94, 0}},
        {2, "Spinal cord", IMRT_KIND_OAR, {0, 114, 178}},
        {3, "Body", IMRT_KIND_BODY, {128, 128, 128}},
    };
    assert_ok(imrt_nifti_write_legend(path, e, 3));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int data_lines = 0, saw_header = 0, saw_kind = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') {
            if (strncmp(line, "# Color table file", 18) == 0)
                saw_header = 1;
            if (strstr(line, "Spinal cord") && strstr(line, "oar"))
                saw_kind = 1;
            continue;
        }
        int idx, r, gg, b, a;
        char name[64];
        assert_int_equal(sscanf(line, "%d %63s %d %d %d %d", &idx, name, &r, &gg, &b, &a), 6);
        if (data_lines == 0) {
            assert_int_equal(idx, 0);
            assert_string_equal(name, "Background");
            assert_int_equal(a, 0);
        } else {
            assert_int_equal(idx, e[data_lines - 1].value);
            assert_int_equal(r, e[data_lines - 1].rgb[0]);
            assert_int_equal(gg, e[data_lines - 1].rgb[1]);
            assert_int_equal(b, e[data_lines - 1].rgb[2]);
            assert_int_equal(a, 255);
        }
        if (data_lines == 2)
            assert_string_equal(name, "Spinal_cord"); /* Slicer splits on spaces */
        data_lines++;
    }
    fclose(f);
    assert_true(saw_header);
    assert_true(saw_kind);
    assert_int_equal(data_lines, 4);
    const imrt_label_entry dup[2] = {{1, "A", IMRT_KIND_OAR, {0, 0, 0}},
                                     {1, "B", IMRT_KIND_OAR, {0, 0, 0}}};
    assert_int_equal(imrt_nifti_write_legend(path, dup, 2), IMRT_ERR_ARG);
    const imrt_label_entry zero[1] = {{0, "A", IMRT_KIND_OAR, {0, 0, 0}}};
    assert_int_equal(imrt_nifti_write_legend(path, zero, 1), IMRT_ERR_ARG);
    assert_non_null(strstr(imrt_last_error(), "1..255"));
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_round_trip),
        cmocka_unit_test(test_labels_round_trip),
        cmocka_unit_test(test_header_affine_is_ras),
        cmocka_unit_test(test_reads_other_orientations),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_read_allocation_failures),
        cmocka_unit_test(test_legend_is_a_slicer_colour_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
