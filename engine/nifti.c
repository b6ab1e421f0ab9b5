/*
 * engine/nifti.c - NIfTI-1 volumes through niftilib (header layout,
 * qform quaternion) and znzlib (plain or gzip file access), with the
 * LPS <-> RAS conversion and atomic writes (imrt/nifti.h).
 *
 * Files are written by hand from the header niftilib builds (instead of
 * nifti_image_write) so that every write error is seen and reported, and
 * data are read with znzlib after niftilib parsed the header, so that the
 * library's own diagnostics never reach stderr for ordinary failures.
 */
#include "imrt/nifti.h"

#include "imrt/alloc.h"
#include "imrt/context.h"
#include "imrt/io.h"
#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <nifti1_io.h>

/* Bytes of a NIfTI-1 header and of the 4-byte extension flag that follows. */
#define NII_HDR_BYTES 348
#define NII_DATA_OFFSET 352
/* Data go through zlib in chunks of this many bytes (gzwrite takes an int). */
#define NII_CHUNK ((size_t)1 << 26)
/* An affine column counts as axis-aligned when its off-axis parts are below
 * this fraction of its length (headers store float32). */
#define NII_OBLIQUE_TOL 1e-4

void imrt_nifti_affine_ras(const imrt_grid *g, double m[4][4])
{
    memset(m, 0, 16 * sizeof(double));
    m[0][0] = -g->dx;
    m[1][1] = -g->dy;
    m[2][2] = g->dz;
    m[0][3] = -g->origin[0];
    m[1][3] = -g->origin[1];
    m[2][3] = g->origin[2];
    m[3][3] = 1.0;
}

static imrt_status check_grid(const char *path, const imrt_grid *g)
{
    imrt_grid tmp;
    imrt_status s = imrt_grid_init(&tmp, g->nx, g->ny, g->nz, g->dx, g->dy, g->dz, g->origin);
    if (s != IMRT_OK)
        return imrt_error(s, "NIfTI '%s': %s", path, imrt_last_error());
    return IMRT_OK;
}

/* Write header + data to path (gzip when the name ends in .gz). */
static imrt_status nifti_write(const char *path, const imrt_grid *g, const void *data,
                               int datatype, int intent, const char *descrip, double cal_min,
                               double cal_max)
{
    imrt_status status = IMRT_OK;
    nifti_image *nim = NULL;
    imrt_atomic_file *af = NULL;
    znzFile zf = NULL;

    const int dims[8] = {3, g->nx, g->ny, g->nz, 1, 1, 1, 1};
    nim = nifti_make_new_nim(dims, datatype, 0);
    if (!nim)
        IMRT_FAIL(IMRT_ERR_NOMEM, "NIfTI '%s': cannot allocate the header", path);
    nim->dx = nim->pixdim[1] = (float)g->dx;
    nim->dy = nim->pixdim[2] = (float)g->dy;
    nim->dz = nim->pixdim[3] = (float)g->dz;
    nim->xyz_units = NIFTI_UNITS_MM;
    nim->time_units = NIFTI_UNITS_UNKNOWN;

    double a[4][4];
    imrt_nifti_affine_ras(g, a);
    mat44 m;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            m.m[r][c] = (float)a[r][c];
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = m;
    nim->sto_ijk = nifti_mat44_inverse(m);
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    float qdx, qdy, qdz;
    nifti_mat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                           &nim->qoffset_y, &nim->qoffset_z, &qdx, &qdy, &qdz, &nim->qfac);
    nim->qto_xyz = nifti_quatern_to_mat44(nim->quatern_b, nim->quatern_c, nim->quatern_d,
                                          nim->qoffset_x, nim->qoffset_y, nim->qoffset_z,
                                          nim->dx, nim->dy, nim->dz, nim->qfac);
    nim->qto_ijk = nifti_mat44_inverse(nim->qto_xyz);
    nim->intent_code = intent;
    nim->cal_min = (float)cal_min;
    nim->cal_max = (float)cal_max;
    nim->scl_slope = 1.0f;
    nim->scl_inter = 0.0f;
    snprintf(nim->descrip, sizeof nim->descrip, "%s", descrip ? descrip : "imrt");
    nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    nim->iname_offset = NII_DATA_OFFSET;

    nifti_1_header hdr = nifti_convert_nim2nhdr(nim);
    hdr.vox_offset = (float)NII_DATA_OFFSET;

    size_t len = strlen(path);
    int gz = len > 3 && strcmp(path + len - 3, ".gz") == 0;
    IMRT_TRY(imrt_atomic_open(path, &af));
    zf = znzopen(imrt_atomic_tmp_path(af), gz ? "wb1" : "wb", gz);
    if (znz_isnull(zf))
        IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", path,
                  errno ? strerror(errno) : "cannot open the temporary file");
    const char ext[4] = {0, 0, 0, 0};
    errno = 0;
    if (znzwrite(&hdr, 1, NII_HDR_BYTES, zf) != NII_HDR_BYTES || znzwrite(ext, 1, 4, zf) != 4)
        IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", path,
                  errno ? strerror(errno) : "write error");
    size_t total = (size_t)imrt_grid_nvox(g) * (size_t)nim->nbyper;
    const char *p = data;
    while (total > 0) {
        size_t chunk = IMRT_MIN(total, NII_CHUNK);
        errno = 0;
        if (znzwrite(p, 1, chunk, zf) != chunk)
            IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", path,
                      errno ? strerror(errno) : "write error");
        p += chunk;
        total -= chunk;
    }
    errno = 0;
    int rc = znzclose(zf); /* also flushes the gzip stream: disk-full shows here */
    zf = NULL;
    if (rc != 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", path,
                  errno ? strerror(errno) : "error closing the compressed stream");
    status = imrt_atomic_commit(&af);
cleanup:
    if (zf)
        znzclose(zf);
    imrt_atomic_abort(&af);
    if (nim) {
        nim->data = NULL;
        nifti_image_free(nim);
    }
    return status;
}

imrt_status imrt_nifti_write_float(const char *path, const imrt_grid *g, const float *data,
                                   const char *descrip)
{
    if (!path || !g || !data)
        return imrt_error(IMRT_ERR_ARG, "imrt_nifti_write_float: NULL argument");
    imrt_status s = check_grid(path, g);
    if (s != IMRT_OK)
        return s;
    int64_t n = imrt_grid_nvox(g);
    float lo = data[0], hi = data[0];
    for (int64_t v = 0; v < n; v++) {
        if (!isfinite(data[v]))
            return imrt_error(IMRT_ERR_ARG, "NIfTI '%s': value %g at voxel %lld is not finite",
                              path, (double)data[v], (long long)v);
        lo = fminf(lo, data[v]);
        hi = fmaxf(hi, data[v]);
    }
    return nifti_write(path, g, data, DT_FLOAT32, NIFTI_INTENT_NONE, descrip, lo, hi);
}

imrt_status imrt_nifti_write_labels(const char *path, const imrt_grid *g, const uint8_t *labels,
                                    const char *descrip)
{
    if (!path || !g || !labels)
        return imrt_error(IMRT_ERR_ARG, "imrt_nifti_write_labels: NULL argument");
    imrt_status s = check_grid(path, g);
    if (s != IMRT_OK)
        return s;
    int64_t n = imrt_grid_nvox(g);
    uint8_t hi = 0;
    for (int64_t v = 0; v < n; v++)
        hi = labels[v] > hi ? labels[v] : hi;
    return nifti_write(path, g, labels, DT_UINT8, NIFTI_INTENT_LABEL, descrip, 0.0, hi);
}

/* ---- reading ------------------------------------------------------------------ */

/* Look at the first bytes before handing the file to niftilib (which would
 * print its own diagnostics for files that are not NIfTI-1). */
static imrt_status precheck(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return imrt_error(IMRT_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return imrt_error(IMRT_ERR_IO, "cannot read '%s': not a regular file", path);
    znzFile zf = znzopen(path, "rb", nifti_is_gzfile(path));
    if (znz_isnull(zf))
        return imrt_error(IMRT_ERR_IO, "cannot read '%s': %s", path,
                          errno ? strerror(errno) : "cannot open");
    unsigned char h[NII_HDR_BYTES];
    size_t got = znzread(h, 1, sizeof h, zf);
    znzclose(zf);
    if (got != sizeof h)
        return imrt_error(IMRT_ERR_FORMAT, "'%s' is not a NIfTI-1 file: only %zu bytes of header",
                          path, got);
    int32_t sz;
    memcpy(&sz, h, 4);
    const int32_t swapped = (int32_t)(((uint32_t)NII_HDR_BYTES << 24) | ((NII_HDR_BYTES >> 8) << 16));
    if (sz != NII_HDR_BYTES && sz != swapped)
        return imrt_error(IMRT_ERR_FORMAT, "'%s' is not a NIfTI-1 file (header size %d, not 348)",
                          path, (int)sz);
    if (memcmp(h + 344, "n+1", 4) != 0)
        return imrt_error(IMRT_ERR_FORMAT,
                          "'%s' is not a one-file NIfTI-1 image (magic is not \"n+1\"; .hdr/.img "
                          "pairs and ANALYZE files are not supported)",
                          path);
    return IMRT_OK;
}

/* Stored value v (datatype dt) of raw buffer at voxel index n, as double. */
static double raw_value(const void *raw, int dt, size_t n)
{
    switch (dt) {
    case DT_UINT8:
        return ((const uint8_t *)raw)[n];
    case DT_INT8:
        return ((const int8_t *)raw)[n];
    case DT_INT16:
        return ((const int16_t *)raw)[n];
    case DT_UINT16:
        return ((const uint16_t *)raw)[n];
    case DT_INT32:
        return ((const int32_t *)raw)[n];
    case DT_UINT32:
        return ((const uint32_t *)raw)[n];
    case DT_FLOAT32:
        return ((const float *)raw)[n];
    default: /* DT_FLOAT64 */
        return ((const double *)raw)[n];
    }
}

imrt_status imrt_nifti_read(const char *path, imrt_grid *g, float **data, int *datatype)
{
    imrt_status status = IMRT_OK;
    nifti_image *nim = NULL;
    znzFile zf = NULL;
    void *raw = NULL;
    float *out = NULL;
    if (!path || !g || !data)
        return imrt_error(IMRT_ERR_ARG, "imrt_nifti_read: NULL argument");
    *data = NULL;
    IMRT_TRY(precheck(path));
    nim = nifti_image_read(path, 0);
    if (!nim)
        IMRT_FAIL(IMRT_ERR_FORMAT, "'%s': niftilib cannot parse the header", path);
    for (int d = 4; d <= nim->dim[0] && d < 8; d++)
        if (nim->dim[d] > 1)
            IMRT_FAIL(IMRT_ERR_FORMAT, "'%s': %d-dimensional image (dim[%d] = %d); only 3D volumes are read",
                      path, nim->dim[0], d, nim->dim[d]);
    const int dt = nim->datatype;
    if (dt != DT_UINT8 && dt != DT_INT8 && dt != DT_INT16 && dt != DT_UINT16 && dt != DT_INT32 &&
        dt != DT_UINT32 && dt != DT_FLOAT32 && dt != DT_FLOAT64)
        IMRT_FAIL(IMRT_ERR_FORMAT, "'%s': datatype %s (%d) is not supported", path,
                  nifti_datatype_string(dt), dt);
    const int n[3] = {nim->nx > 0 ? nim->nx : 1, nim->dim[0] >= 2 ? nim->ny : 1,
                      nim->dim[0] >= 3 ? nim->nz : 1};

    /* World (RAS) affine -> LPS, then one voxel axis per world axis. */
    mat44 m;
    if (nim->sform_code > 0)
        m = nim->sto_xyz;
    else if (nim->qform_code > 0)
        m = nim->qto_xyz;
    else
        IMRT_FAIL(IMRT_ERR_FORMAT,
                  "'%s': neither sform nor qform is set, so the orientation is unknown", path);
    double lps[3][4];
    for (int c = 0; c < 4; c++) {
        lps[0][c] = -(double)m.m[0][c];
        lps[1][c] = -(double)m.m[1][c];
        lps[2][c] = (double)m.m[2][c];
    }
    int world_of[3], used[3] = {0, 0, 0};
    double step[3];
    for (int a = 0; a < 3; a++) {
        double norm = sqrt(lps[0][a] * lps[0][a] + lps[1][a] * lps[1][a] + lps[2][a] * lps[2][a]);
        int w = 0;
        for (int r = 1; r < 3; r++)
            if (fabs(lps[r][a]) > fabs(lps[w][a]))
                w = r;
        if (!(norm > 0.0))
            IMRT_FAIL(IMRT_ERR_FORMAT, "'%s': voxel axis %d has zero length in the affine", path, a);
        for (int r = 0; r < 3; r++)
            if (r != w && fabs(lps[r][a]) > NII_OBLIQUE_TOL * norm)
                IMRT_FAIL(IMRT_ERR_UNSUPPORTED,
                          "'%s': oblique orientation (voxel axis %d is not along a patient axis); "
                          "resample it to an axis-aligned grid first",
                          path, a);
        if (used[w])
            IMRT_FAIL(IMRT_ERR_FORMAT, "'%s': two voxel axes map to the same patient axis", path);
        used[w] = 1;
        world_of[a] = w;
        step[a] = lps[w][a];
    }
    int gn[3];
    double gd[3], go[3];
    for (int a = 0; a < 3; a++) {
        int w = world_of[a];
        gn[w] = n[a];
        gd[w] = fabs(step[a]);
        go[w] = lps[w][3] + (step[a] < 0 ? (n[a] - 1) * step[a] : 0.0);
    }
    imrt_grid grid;
    status = imrt_grid_init(&grid, gn[0], gn[1], gn[2], gd[0], gd[1], gd[2], go);
    if (status != IMRT_OK)
        IMRT_FAIL(status, "'%s': %s", path, imrt_last_error());

    /* Data: read with znzlib at the header's offset, swap if needed. */
    size_t nvox = (size_t)n[0] * (size_t)n[1] * (size_t)n[2];
    size_t bytes = nvox * (size_t)nim->nbyper;
    raw = imrt_malloc(bytes);
    if (!raw)
        IMRT_FAIL(IMRT_ERR_NOMEM, "'%s': cannot allocate %zu bytes", path, bytes);
    zf = znzopen(path, "rb", nifti_is_gzfile(path));
    if (znz_isnull(zf))
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': %s", path, errno ? strerror(errno) : "cannot open");
    if (znzseek(zf, (znz_off_t)nim->iname_offset, SEEK_SET) < 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': cannot seek to the data at byte %d", path,
                  nim->iname_offset);
    size_t got = 0;
    while (got < bytes) {
        size_t chunk = IMRT_MIN(bytes - got, NII_CHUNK);
        size_t r = znzread((char *)raw + got, 1, chunk, zf);
        got += r;
        if (r < chunk)
            break;
    }
    if (got != bytes)
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': the file ends after %zu of %zu data bytes", path,
                  got, bytes);
    if (nim->byteorder != nifti_short_order() && nim->swapsize > 1)
        nifti_swap_Nbytes(nvox, nim->swapsize, raw);

    double slope = nim->scl_slope, inter = nim->scl_inter;
    int scale = isfinite(slope) && slope != 0.0 && (slope != 1.0 || inter != 0.0);
    IMRT_ALLOC(out, nvox);
    /* Scatter into imrt's LPS order: along voxel axis a, output index runs
     * forward when the axis points along +world, backward otherwise. */
    int64_t stride_w[3] = {1, grid.nx, (int64_t)grid.nx * grid.ny};
    int64_t inc[3], base = 0;
    for (int a = 0; a < 3; a++) {
        int64_t s = stride_w[world_of[a]];
        if (step[a] < 0) {
            base += (int64_t)(n[a] - 1) * s;
            inc[a] = -s;
        } else {
            inc[a] = s;
        }
    }
    size_t src = 0;
    for (int k = 0; k < n[2]; k++)
        for (int j = 0; j < n[1]; j++) {
            int64_t dst = base + k * inc[2] + j * inc[1];
            for (int i = 0; i < n[0]; i++, src++, dst += inc[0]) {
                double v = raw_value(raw, dt, src);
                out[dst] = (float)(scale ? slope * v + inter : v);
            }
        }
    *g = grid;
    *data = out;
    out = NULL;
    if (datatype)
        *datatype = dt;
cleanup:
    if (zf)
        znzclose(zf);
    imrt_free(raw);
    imrt_free(out);
    if (nim)
        nifti_image_free(nim);
    return status;
}

/* ---- label legend ----------------------------------------------------------------- */

imrt_status imrt_nifti_write_legend(const char *path, const imrt_label_entry *e, int n)
{
    imrt_status status = IMRT_OK;
    imrt_atomic_file *af = NULL;
    if (!path || (!e && n > 0) || n < 0)
        return imrt_error(IMRT_ERR_ARG, "imrt_nifti_write_legend: NULL argument or n < 0");
    unsigned char seen[256] = {0};
    for (int s = 0; s < n; s++) {
        if (e[s].value < 1 || e[s].value > 255)
            return imrt_error(IMRT_ERR_ARG, "legend '%s': label value %d of '%s' is outside 1..255",
                              path, e[s].value, e[s].name ? e[s].name : "");
        if (seen[e[s].value])
            return imrt_error(IMRT_ERR_ARG, "legend '%s': label value %d appears twice", path,
                              e[s].value);
        seen[e[s].value] = 1;
        if (!e[s].name || !*e[s].name)
            return imrt_error(IMRT_ERR_ARG, "legend '%s': label %d has no name", path, e[s].value);
    }
    IMRT_TRY(imrt_atomic_open(path, &af));
    FILE *fp = imrt_atomic_stream(af);
    if (!fp)
        IMRT_FAIL(IMRT_ERR_IO, "%s", imrt_last_error());
    const char *slash = strrchr(path, '/');
    fprintf(fp, "# Color table file %s\n", slash ? slash + 1 : path);
    fprintf(fp, "# Written by imrt %s: legend of the structure label map.\n", imrt_version());
    fprintf(fp, "# Columns: label name R G B A (0-255). Structures:\n");
    fprintf(fp, "#   label  name  kind\n");
    for (int s = 0; s < n; s++)
        fprintf(fp, "#   %d  %s  %s\n", e[s].value, e[s].name, imrt_structure_kind_name(e[s].kind));
    fprintf(fp, "# %d values\n", n + 1);
    fprintf(fp, "0 Background 0 0 0 0\n");
    for (int s = 0; s < n; s++) {
        char name[IMRT_NAME_MAX * 2];
        size_t len = 0;
        for (const char *c = e[s].name; *c && len + 1 < sizeof name; c++)
            name[len++] = (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r') ? '_' : *c;
        name[len] = '\0';
        fprintf(fp, "%d %s %d %d %d 255\n", e[s].value, name, e[s].rgb[0], e[s].rgb[1],
                e[s].rgb[2]);
    }
    status = imrt_atomic_commit(&af);
cleanup:
    imrt_atomic_abort(&af);
    return status;
}
