/*
 * tests/test_matrad.c - matRad import and export: the HU <-> RED table, the
 * shared box phantom against numbers derived from the file by a separate
 * reader (a small MAT v5 walker in this test, not libmatio), MATLAB's
 * column-major [ny nx nz] order on a hand-made file, refusal of truncated,
 * corrupt and inconsistent files, the export -> import round trip, and
 * specs that import a matRad phantom.
 */
#include "imrt/alloc.h"
#include "imrt/matrad.h"
#include "imrt/phantom.h"
#include "imrt/spec.h"

#include "test_mat.h"
#include "test_util.h"

#include <matio.h>
#include <zlib.h>

/* ------------------------------------------------------------------ */
/* An independent MAT v5 reader (enough for cell, struct, char, numeric) */
/* ------------------------------------------------------------------ */

typedef struct mnode {
    int cls;                 /* MATLAB class: 1 cell, 2 struct, 4 char, 6 double, ... */
    uint32_t dims[8];
    int ndims;
    char name[64];
    int dtype;               /* data element type of numeric/char data */
    const uint8_t *data;     /* numeric/char data */
    uint32_t nbytes;
    int nchild;
    struct mnode *child;     /* cells in column-major order / struct fields */
    char (*fields)[64];      /* struct field names */
    uint8_t *owned;          /* decompressed buffer owned by a top-level node */
} mnode;

static uint32_t u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Read one tagged element at p (n bytes left): type, size, data, total length. */
static int mtag(const uint8_t *p, size_t n, uint32_t *type, uint32_t *size, const uint8_t **data,
                size_t *total)
{
    if (n < 8)
        return 0;
    uint32_t t = u32(p);
    if (t >> 16) { /* small data element */
        *type = t & 0xffff;
        *size = t >> 16;
        *data = p + 4;
        *total = 8;
        return *size <= 4;
    }
    *type = t;
    *size = u32(p + 4);
    *data = p + 8;
    *total = 8 + (((size_t)*size + 7) / 8) * 8;
    return (size_t)*size + 8 <= n;
}

static size_t mnumel(const mnode *m)
{
    size_t e = 1;
    for (int i = 0; i < m->ndims; i++)
        e *= m->dims[i];
    return e;
}

static void mfree(mnode *m)
{
    for (int i = 0; i < m->nchild; i++)
        mfree(&m->child[i]);
    free(m->child);
    free(m->fields);
    free(m->owned);
}

/* Parse the contents of a miMATRIX element (n bytes at p). */
static int mparse(const uint8_t *p, size_t n, mnode *m)
{
    memset(m, 0, sizeof *m);
    if (n == 0) { /* empty cell entry */
        m->cls = 0;
        return 1;
    }
    uint32_t type, size;
    const uint8_t *d;
    size_t tot, off = 0;
    if (!mtag(p, n, &type, &size, &d, &tot) || type != 6) /* array flags */
        return 0;
    m->cls = d[0];
    off += tot;
    if (!mtag(p + off, n - off, &type, &size, &d, &tot) || type != 5) /* dims */
        return 0;
    m->ndims = (int)(size / 4);
    if (m->ndims > 8)
        return 0;
    for (int i = 0; i < m->ndims; i++)
        m->dims[i] = u32(d + 4 * i);
    off += tot;
    if (!mtag(p + off, n - off, &type, &size, &d, &tot) || size >= sizeof m->name) /* name */
        return 0;
    memcpy(m->name, d, size);
    off += tot;
    if (m->cls == 1) { /* cell */
        m->nchild = (int)mnumel(m);
        m->child = calloc((size_t)m->nchild + 1, sizeof *m->child);
        for (int i = 0; i < m->nchild; i++) {
            if (!mtag(p + off, n - off, &type, &size, &d, &tot) || type != 14 ||
                !mparse(d, size, &m->child[i]))
                return 0;
            off += tot;
        }
        return 1;
    }
    if (m->cls == 2) { /* struct (1x1) */
        if (!mtag(p + off, n - off, &type, &size, &d, &tot))
            return 0;
        uint32_t flen = u32(d);
        off += tot;
        if (!mtag(p + off, n - off, &type, &size, &d, &tot) || flen == 0 || flen > 64)
            return 0;
        m->nchild = (int)(size / flen);
        m->fields = calloc((size_t)m->nchild + 1, sizeof *m->fields);
        m->child = calloc((size_t)m->nchild + 1, sizeof *m->child);
        for (int i = 0; i < m->nchild; i++)
            memcpy(m->fields[i], d + (size_t)i * flen, flen < 63 ? flen : 63);
        off += tot;
        for (int i = 0; i < m->nchild; i++) {
            if (!mtag(p + off, n - off, &type, &size, &d, &tot) || type != 14 ||
                !mparse(d, size, &m->child[i]))
                return 0;
            off += tot;
        }
        return 1;
    }
    if (!mtag(p + off, n - off, &type, &size, &d, &tot)) /* real part */
        return 0;
    m->dtype = (int)type;
    m->data = d;
    m->nbytes = size;
    return off + tot <= n + 7;
}

/* Load every top-level variable of a MAT v5 file. */
static int mload(const char *path, mnode *vars, int maxvars)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    int nv = 0;
    size_t off = 128;
    while (off + 8 <= (size_t)n && nv < maxvars) {
        uint32_t type = u32(buf + off), size = u32(buf + off + 4);
        assert_true(off + 8 + size <= (size_t)n);
        if (type == 15) {
            uLongf cap = (uLongf)size * 4 + 1024;
            uint8_t *out = NULL;
            int zr;
            do { /* grow until the whole stream fits */
                cap *= 4;
                free(out);
                out = malloc(cap);
                uLongf got = cap;
                zr = uncompress(out, &got, buf + off + 8, size);
                if (zr == Z_OK)
                    cap = got;
            } while (zr == Z_BUF_ERROR);
            assert_int_equal(zr, Z_OK);
            uint32_t t2 = u32(out), s2 = u32(out + 4);
            assert_int_equal(t2, 14);
            assert_true((size_t)s2 + 8 <= cap);
            assert_true(mparse(out + 8, s2, &vars[nv]));
            vars[nv].owned = out;
            off += 8 + size;
        } else {
            assert_int_equal(type, 14);
            assert_true(mparse(buf + off + 8, size, &vars[nv]));
            /* uncompressed data points into buf: keep it alive */
            vars[nv].owned = NULL;
            off += 8 + ((size + 7) / 8) * 8;
            /* (the files this test reads are all compressed) */
            fail_msg("uncompressed MAT variables are not expected in %s", path);
        }
        nv++;
    }
    free(buf);
    return nv;
}

static mnode *mvar(mnode *vars, int nv, const char *name)
{
    for (int i = 0; i < nv; i++)
        if (strcmp(vars[i].name, name) == 0)
            return &vars[i];
    return NULL;
}

/* Text of a char node (8- or 16-bit). */
static void mtext(const mnode *m, char *out, size_t n)
{
    size_t len = mnumel(m), k = 0;
    int w = m->dtype == 3 || m->dtype == 4 || m->dtype == 17 ? 2 : 1;
    for (size_t i = 0; i < len && k + 1 < n; i++)
        out[k++] = (char)(w == 2 ? m->data[2 * i] : m->data[i]);
    out[k] = '\0';
}

/* ------------------------------------------------------------------ */

static int64_t need_count(const imrt_phantom *p, const char *name)
{
    int s = imrt_phantom_find(p, name);
    if (s < 0)
        fail_msg("no structure '%s'", name);
    return p->structures[s].count;
}

static void test_hu_table(void **state)
{
    (void)state;
    imrt_hu_table t;
    imrt_hu_table_default(&t);
    assert_ok(imrt_hu_table_validate(&t));
    /* the points of spec/physics.md section 2 and values between them */
    assert_close(imrt_hu_to_red(&t, -1024), 0.001, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, -3000), 0.001, 0, 1e-12); /* clamped */
    assert_close(imrt_hu_to_red(&t, -1000), 0.001, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, -500), 0.5005, 0, 1e-12); /* halfway (-1000, 0) */
    assert_close(imrt_hu_to_red(&t, 0), 1.0, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, 500), 1.275, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, 1000), 1.55, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, 1500), 1.825, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, 3071), 2.7, 0, 1e-12);
    assert_close(imrt_hu_to_red(&t, 9000), 2.7, 0, 1e-12);
    /* inverse */
    assert_close(imrt_red_to_hu(&t, 1.0), 0.0, 0, 1e-9);
    assert_close(imrt_red_to_hu(&t, 1.275), 500.0, 0, 1e-9);
    assert_close(imrt_red_to_hu(&t, 1.7), 1000.0 + 0.15 / 0.55 * 1000.0, 0, 1e-9);
    assert_close(imrt_red_to_hu(&t, 0.001), -1000.0, 0, 1e-9); /* top of the flat air stretch */
    assert_close(imrt_red_to_hu(&t, 0.0), -1024.0, 0, 1e-9);
    assert_close(imrt_red_to_hu(&t, 5.0), 3071.0, 0, 1e-9);
    for (double r = 0.001; r <= 2.7; r += 0.0137)
        assert_close(imrt_hu_to_red(&t, imrt_red_to_hu(&t, r)), r, 0, 1e-12);
    /* a table that cannot be inverted is refused */
    imrt_hu_table bad = t;
    bad.red[3] = 0.9;
    assert_int_equal(imrt_hu_table_validate(&bad), IMRT_ERR_RANGE);
    bad = t;
    bad.hu[2] = -1000;
    assert_int_equal(imrt_hu_table_validate(&bad), IMRT_ERR_RANGE);
    bad.n = 1;
    assert_int_equal(imrt_hu_table_validate(&bad), IMRT_ERR_RANGE);
}

/* BOXPHANTOM.mat: the cst index lists read by this test's own MAT walker are
 * 531441 = 81^3 (BODY) and 9261 = 21^3 (OuterTarget) voxels, both centred
 * cubes (the matRad box phantom: a 243 mm cube of water with a 63 mm cubic
 * target in a 160^3 grid of 3 mm voxels). The importer must agree. */
static void test_box_phantom(void **state)
{
    (void)state;
    IMRT_REQUIRE_SHARED_DATA(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/BOXPHANTOM.mat", dir);

    mnode vars[8];
    int nv = mload(path, vars, 8);
    assert_true(nv >= 2);
    mnode *cst = mvar(vars, nv, "cst");
    assert_non_null(cst);
    assert_int_equal(cst->cls, 1);
    uint32_t rows = cst->dims[0];
    assert_int_equal(rows, 2);
    size_t counts[2];
    char names[2][64];
    for (uint32_t r = 0; r < rows; r++) {
        mtext(&cst->child[r + rows * 1], names[r], sizeof names[r]);
        const mnode *cell = &cst->child[r + rows * 3];
        assert_int_equal(cell->cls, 1);
        counts[r] = mnumel(&cell->child[0]);
    }
    assert_string_equal(names[0], "BODY");
    assert_string_equal(names[1], "OuterTarget");
    assert_int_equal(counts[0], 81 * 81 * 81);
    assert_int_equal(counts[1], 21 * 21 * 21);
    for (int i = 0; i < nv; i++)
        mfree(&vars[i]);

    imrt_phantom *p = NULL;
    assert_ok(imrt_matrad_import(path, NULL, &p));
    assert_string_equal(p->name, "BOXPHANTOM");
    assert_int_equal(p->grid.nx, 160);
    assert_int_equal(p->grid.ny, 160);
    assert_int_equal(p->grid.nz, 160);
    assert_close(p->grid.dx, 3.0, 0, 1e-12);
    assert_int_equal(p->nstructures, 2);
    const imrt_structure *body = &p->structures[0], *target = &p->structures[1];
    assert_string_equal(body->name, "BODY");
    assert_int_equal(body->kind, IMRT_KIND_BODY);
    assert_string_equal(target->name, "OuterTarget");
    assert_int_equal(target->kind, IMRT_KIND_TARGET);
    assert_int_equal(body->count, (int64_t)counts[0]);
    assert_int_equal(target->count, (int64_t)counts[1]);
    assert_int_equal(body->priority, 2);
    assert_int_equal(target->priority, 1);
    assert_close(imrt_structure_volume_cc(p, body), 531441 * 0.027, 1e-12, 0);
    assert_close(imrt_structure_volume_cc(p, target), 9261 * 0.027, 1e-12, 0);
    double cb[3], lob[3], hib[3], ct[3], lot[3], hit[3];
    assert_ok(imrt_structure_geometry(p, body, cb, lob, hib));
    assert_ok(imrt_structure_geometry(p, target, ct, lot, hit));
    for (int a = 0; a < 3; a++) {
        assert_close(hib[a] - lob[a], 80 * 3.0, 0, 1e-9); /* 81 centres */
        assert_close(hit[a] - lot[a], 20 * 3.0, 0, 1e-9); /* 21 centres */
        assert_close(ct[a], cb[a], 0, 1e-9);              /* concentric */
    }
    /* HU 0 inside (RED 1.0), -1024 outside (RED 0.001) */
    int64_t n = imrt_grid_nvox(&p->grid), dense = 0;
    for (int64_t v = 0; v < n; v++) {
        if (body->mask[v])
            assert_close(p->density[v], 1.0, 0, 1e-6);
        else
            assert_close(p->density[v], 0.001, 0, 1e-6);
        dense += p->density[v] > 0.5f;
    }
    assert_int_equal(dense, body->count);
    imrt_phantom_destroy(&p);
}

/* Write a hand-made matRad file with libmatio: cubeHU of [ny nx nz] =
 * [3 4 2] holding 100 r + 10 c + s (MATLAB 1-based row, column, slice) and
 * one structure with the given 1-based indices. */
static void write_small_mat(const char *path, const double *indices, size_t nind, int with_ct,
                            const char *type)
{
    mat_t *m = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    assert_non_null(m);
    if (with_ct) {
        double cube[24];
        for (int s = 1; s <= 2; s++)
            for (int c = 1; c <= 4; c++)
                for (int r = 1; r <= 3; r++)
                    cube[(r - 1) + 3 * ((c - 1) + 4 * (s - 1))] = 100.0 * r + 10.0 * c + s;
        matvar_t *ct = imrt_test_mat_ct(cube);
        assert_int_equal(Mat_VarWrite(m, ct, MAT_COMPRESSION_ZLIB), 0);
        Mat_VarFree(ct);
    }
    matvar_t *cst = imrt_test_mat_cst(type, indices, nind);
    assert_int_equal(Mat_VarWrite(m, cst, MAT_COMPRESSION_ZLIB), 0);
    Mat_VarFree(cst);
    Mat_Close(m);
}

static void test_axis_order(void **state)
{
    (void)state;
    const char *dir = imrt_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/small.mat", dir);
    /* MATLAB (row 2, column 3, slice 2): 2 + 3*(3-1) + 12*(2-1) = 20 */
    const double idx[2] = {20.0, 1.0};
    write_small_mat(path, idx, 2, 1, "OAR");
    imrt_phantom *p = NULL;
    imrt_hu_table t;
    imrt_hu_table_default(&t);
    assert_ok(imrt_matrad_import(path, NULL, &p));
    const imrt_grid *g = &p->grid;
    assert_int_equal(g->nx, 4); /* columns */
    assert_int_equal(g->ny, 3); /* rows */
    assert_int_equal(g->nz, 2);
    assert_close(g->dx, 2.0, 0, 1e-12);
    assert_close(g->dy, 3.0, 0, 1e-12);
    assert_close(g->dz, 4.0, 0, 1e-12);
    /* matRad's default coordinates: voxel (1,1,1) one step from zero */
    assert_close(g->origin[0], 2.0, 0, 1e-12);
    assert_close(g->origin[2], 4.0, 0, 1e-12);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++) {
                double hu = 100.0 * (j + 1) + 10.0 * (i + 1) + (k + 1);
                assert_close(p->density[imrt_grid_index(g, i, j, k)], imrt_hu_to_red(&t, hu), 1e-6,
                             0);
            }
    const imrt_structure *s = &p->structures[0];
    assert_string_equal(s->name, "Marker");
    assert_int_equal(s->kind, IMRT_KIND_OAR);
    assert_int_equal(s->count, 2);
    assert_int_equal(s->mask[imrt_grid_index(g, 2, 1, 1)], 1); /* (c-1, r-1, s-1) */
    assert_int_equal(s->mask[imrt_grid_index(g, 0, 0, 0)], 1);
    imrt_phantom_destroy(&p);
    remove(path);
    rmdir(dir);
}

static void expect_refused(const char *path, imrt_status want, const char *needle)
{
    imrt_phantom *p = NULL;
    imrt_status st = imrt_matrad_import(path, NULL, &p);
    print_message("%s -> %s\n", path, imrt_last_error());
    assert_int_equal(st, want);
    assert_null(p);
    if (needle && !strstr(imrt_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", imrt_last_error(), needle);
}

static void copy_prefix(const char *from, const char *to, long bytes, long flip_at)
{
    size_t n = 0;
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (flip_at >= 0 && flip_at < (long)n)
        buf[flip_at] ^= 0x5a;
    FILE *o = fopen(to, "wb");
    fwrite(buf, 1, bytes < (long)n ? (size_t)bytes : n, o);
    fclose(o);
    free(buf);
}

static void test_bad_files(void **state)
{
    (void)state;
    const char *dir = imrt_test_tmpdir();
    char path[512], cut[512];
    /* voxel index outside the 24-voxel cube */
    snprintf(path, sizeof path, "%s/badindex.mat", dir);
    const double idx[2] = {3.0, 25.0};
    write_small_mat(path, idx, 2, 1, "TARGET");
    expect_refused(path, IMRT_ERR_FORMAT, "voxel index 25");
    /* a fractional index */
    const double frac[1] = {2.5};
    write_small_mat(path, frac, 1, 1, "TARGET");
    expect_refused(path, IMRT_ERR_FORMAT, "2.5");
    /* no ct */
    write_small_mat(path, idx, 1, 0, "OAR");
    expect_refused(path, IMRT_ERR_FORMAT, "no variable 'ct'");
    /* truncated copies of a good file, at several lengths */
    write_small_mat(path, idx, 1, 1, "OAR");
    snprintf(cut, sizeof cut, "%s/cut.mat", dir);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    const long lengths[] = {0, 10, 127, 128, 135, 200, size / 2, size - 1};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        copy_prefix(path, cut, lengths[i], -1);
        expect_refused(cut, IMRT_ERR_FORMAT, NULL);
    }
    /* a corrupt byte inside the compressed data (zlib's checksum) */
    copy_prefix(path, cut, size, 160);
    expect_refused(cut, IMRT_ERR_FORMAT, NULL);
    /* a well-compressed variable whose array claims 10^10 elements but holds
     * one: refused before libmatio would allocate for it */
    {
        uint8_t inner[80];
        size_t k = 0;
        const uint32_t words[] = {14, 64,         /* miMATRIX, 64 bytes */
                                  6, 8, 6, 0,     /* flags: double */
                                  5, 8, 100000, 100000, /* dims 1e5 x 1e5 */
                                  1, 2,           /* name "ct" (padded to 8) */
                                  0x7463, 0,      /* 'c' 't' */
                                  9, 8, 0, 0};    /* 8 bytes of double data */
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            uint32_t w = words[i];
            for (int b = 0; b < 4; b++)
                inner[k++] = (uint8_t)(w >> (8 * b));
        }
        uint8_t comp[256];
        uLongf clen = sizeof comp;
        assert_int_equal(compress(comp, &clen, inner, k), Z_OK);
        uint8_t hdr[128];
        memset(hdr, ' ', sizeof hdr);
        memcpy(hdr, "MATLAB 5.0 MAT-file", 19);
        hdr[124] = 0x00;
        hdr[125] = 0x01;
        hdr[126] = 'I';
        hdr[127] = 'M';
        FILE *o = fopen(cut, "wb");
        fwrite(hdr, 1, 128, o);
        const uint32_t tag[2] = {15, (uint32_t)clen};
        fwrite(tag, 4, 2, o);
        fwrite(comp, 1, clen, o);
        fclose(o);
        expect_refused(cut, IMRT_ERR_FORMAT, "corrupt file");
    }
    /* not a MAT file at all */
    FILE *t = fopen(cut, "wb");
    for (int i = 0; i < 300; i++)
        fputs("not a mat file ", t);
    fclose(t);
    expect_refused(cut, IMRT_ERR_FORMAT, "not a MATLAB");
    snprintf(cut, sizeof cut, "%s/missing.mat", dir);
    expect_refused(cut, IMRT_ERR_IO, NULL);
    remove(path);
    snprintf(cut, sizeof cut, "%s/cut.mat", dir);
    remove(cut);
    rmdir(dir);
    IMRT_REQUIRE_SHARED_DATA(data);
    /* the box phantom truncated in the middle of its CT */
    char box[4200], tbox[600];
    snprintf(box, sizeof box, "%s/BOXPHANTOM.mat", data);
    const char *d2 = imrt_test_tmpdir();
    snprintf(tbox, sizeof tbox, "%s/box_truncated.mat", d2);
    copy_prefix(box, tbox, 400000, -1);
    expect_refused(tbox, IMRT_ERR_FORMAT, "truncated");
    remove(tbox);
    rmdir(d2);
}

/* Export any phantom, import it back: same grid, densities within the
 * table's inversion (exact up to float rounding inside the table's RED
 * range; RED below 0.001 comes back as 0.001), same structure voxels,
 * names, kinds and priorities; the file's layout checked by the walker. */
static void test_round_trip(void **state)
{
    (void)state;
    imrt_phantom *p = NULL, *q = NULL;
    assert_ok(imrt_spec_load("tests/specs/roundtrip.json", NULL, &p, NULL));
    const char *dir = imrt_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/roundtrip.mat", dir);
    assert_ok(imrt_matrad_export(p, path));
    assert_ok(imrt_matrad_import(path, NULL, &q));
    assert_true(imrt_grid_equal(&p->grid, &q->grid));
    int64_t n = imrt_grid_nvox(&p->grid);
    int low = 0;
    for (int64_t v = 0; v < n; v++) {
        double want = p->density[v] < 0.001f ? 0.001 : (double)p->density[v];
        low += p->density[v] < 0.001f;
        assert_close(q->density[v], want, 1e-6, 1e-7);
    }
    assert_true(low > 0); /* the spec's vacuum background exercised the clamp */
    assert_int_equal(q->nstructures, p->nstructures);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *a = &p->structures[s], *b = &q->structures[s];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->kind, b->kind);
        assert_int_equal(a->priority, b->priority);
        assert_int_equal(a->count, b->count);
        assert_memory_equal(a->mask, b->mask, (size_t)n);
    }
    /* the file as matRad sees it, through the independent walker */
    mnode vars[8];
    int nv = mload(path, vars, 8);
    mnode *ct = mvar(vars, nv, "ct"), *cst = mvar(vars, nv, "cst");
    assert_non_null(ct);
    assert_non_null(cst);
    assert_int_equal(ct->cls, 2);
    int found = 0;
    for (int i = 0; i < ct->nchild; i++)
        if (strcmp(ct->fields[i], "cubeHU") == 0) {
            const mnode *cube = &ct->child[i].child[0];
            assert_int_equal(cube->ndims, 3);
            assert_int_equal(cube->dims[0], (uint32_t)p->grid.ny); /* rows = y */
            assert_int_equal(cube->dims[1], (uint32_t)p->grid.nx);
            assert_int_equal(cube->dims[2], (uint32_t)p->grid.nz);
            found = 1;
        }
    assert_true(found);
    assert_int_equal(cst->dims[0], (uint32_t)p->nstructures);
    assert_int_equal(cst->dims[1], 6);
    for (int s = 0; s < p->nstructures; s++) {
        char name[64], type[16];
        mtext(&cst->child[s + p->nstructures], name, sizeof name);
        mtext(&cst->child[s + 2 * p->nstructures], type, sizeof type);
        assert_string_equal(name, p->structures[s].name);
        assert_string_equal(type, p->structures[s].kind == IMRT_KIND_TARGET ? "TARGET" : "OAR");
        assert_int_equal(mnumel(&cst->child[s + 3 * p->nstructures].child[0]),
                         (size_t)p->structures[s].count);
    }
    for (int i = 0; i < nv; i++)
        mfree(&vars[i]);
    imrt_phantom_destroy(&p);
    imrt_phantom_destroy(&q);
    remove(path);
    rmdir(dir);
}

/* A spec that imports the box phantom, renames its target, adds a ring,
 * and plans on it; and the same at a 5 mm grid (resampled). */
static void test_spec_import(void **state)
{
    (void)state;
    IMRT_REQUIRE_SHARED_DATA(data);
    char abs_data[8192], cwd[2048];
    if (data[0] == '/')
        snprintf(abs_data, sizeof abs_data, "%s", data);
    else {
        assert_non_null(getcwd(cwd, sizeof cwd));
        snprintf(abs_data, sizeof abs_data, "%s/%s", cwd, data);
    }
    const char *dir = imrt_test_tmpdir();
    char spec[600];
    snprintf(spec, sizeof spec, "%s/box.json", dir);
    FILE *f = fopen(spec, "w");
    fprintf(f,
            "{\n  \"phantom\": {\"import\": \"matrad\", \"file\": \"%s/BOXPHANTOM.mat\",\n"
            "    \"rename\": {\"OuterTarget\": \"PTV\"},\n"
            "    \"structures\": [{\"name\": \"Ring\", \"kind\": \"oar\", \"priority\": 5,\n"
            "                    \"shell\": \"PTV\", \"outer_mm\": 15}]},\n"
            "  \"prescription\": {\"dose_gy\": 60, \"fractions\": 30},\n"
            "  \"beams\": [0, 72, 144, 216, 288],\n"
            "  \"goals\": [{\"structure\": \"PTV\", \"metric\": \"D95\", \"op\": \">=\", \"value\": 57}]\n}\n",
            abs_data);
    fclose(f);
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_spec_info *info = NULL;
    assert_ok(imrt_spec_load_ex(spec, NULL, &p, &plan, &info));
    assert_int_equal(info->imported, 1);
    assert_int_equal(need_count(p, "PTV"), 9261);
    assert_int_equal(p->structures[imrt_phantom_find(p, "BODY")].kind, IMRT_KIND_BODY);
    assert_string_equal(plan->rx.target, "PTV");
    assert_int_equal(plan->nbeams, 5);
    /* the ring: the voxels outside the 21^3-voxel cube whose centre lies
     * within 15 mm + 0.3 spacing (imrt/phantom.h) of a cube voxel, counted
     * here on the integer lattice */
    double reach = (15.0 + IMRT_MARGIN_BOUNDARY_OFFSET * 3.0) / 3.0;
    int64_t expected = 0;
    for (int i = -8; i <= 28; i++)
        for (int j = -8; j <= 28; j++)
            for (int k = -8; k <= 28; k++) {
                int e[3] = {i < 0 ? -i : i > 20 ? i - 20 : 0, j < 0 ? -j : j > 20 ? j - 20 : 0,
                            k < 0 ? -k : k > 20 ? k - 20 : 0};
                int d2 = e[0] * e[0] + e[1] * e[1] + e[2] * e[2];
                expected += d2 > 0 && d2 <= reach * reach + 1e-9;
            }
    assert_int_equal(need_count(p, "Ring"), expected);
    imrt_spec_info_destroy(&info);
    imrt_plan_destroy(&plan);
    imrt_phantom_destroy(&p);
    /* resampled to 5 mm: the 243 mm body cube keeps its extent within a voxel */
    imrt_spec_options opt = {5.0, 0};
    assert_ok(imrt_spec_load_ex(spec, &opt, &p, NULL, &info));
    assert_int_equal(info->resampled, 1);
    assert_close(p->grid.dx, 5.0, 0, 1e-12);
    double lo[3], hi[3];
    assert_ok(imrt_structure_geometry(p, &p->structures[imrt_phantom_find(p, "BODY")], NULL, lo, hi));
    assert_close(hi[0] - lo[0] + 5.0, 243.0, 0, 5.0);
    imrt_spec_info_destroy(&info);
    imrt_phantom_destroy(&p);
    remove(spec);
    rmdir(dir);
}

/* Allocation failures in import and export leak nothing. */
static void test_allocation_failures(void **state)
{
    (void)state;
    imrt_phantom *p = NULL, *q = NULL;
    assert_ok(imrt_spec_load("tests/specs/roundtrip.json", NULL, &p, NULL));
    const char *dir = imrt_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/rt.mat", dir);
    int failures = 0;
    for (long n = 1; n < 1000; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_matrad_export(p, path);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK)
            break;
        assert_int_equal(st, IMRT_ERR_NOMEM);
        failures++;
    }
    assert_true(failures > 0);
    failures = 0;
    for (long n = 1; n < 1000; n++) {
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_matrad_import(path, NULL, &q);
        imrt_alloc_fail_after(0);
        if (st == IMRT_OK)
            break;
        assert_int_equal(st, IMRT_ERR_NOMEM);
        assert_null(q);
        failures++;
    }
    assert_true(failures > 0);
    imrt_phantom_destroy(&q);
    imrt_phantom_destroy(&p);
    remove(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hu_table),
        cmocka_unit_test(test_box_phantom),
        cmocka_unit_test(test_axis_order),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_spec_import),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
