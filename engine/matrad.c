/*
 * engine/matrad.c - matRad MAT files: the HU <-> RED table, a structural
 * check of MAT v5 files (so that truncated or corrupt files are refused
 * before libmatio parses them), import of ct/cst into an imrt phantom and
 * export of an imrt phantom as ct/cst.
 */
#include "imrt/matrad.h"

#include "util_impl.h"

#include <errno.h>
#include <math.h>
#include <matio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ */
/* HU <-> RED                                                          */
/* ------------------------------------------------------------------ */

void imrt_hu_table_default(imrt_hu_table *t)
{
    static const double hu[] = {-1024.0, -1000.0, 0.0, 1000.0, 2000.0, 3071.0};
    static const double red[] = {0.001, 0.001, 1.0, 1.55, 2.1, 2.7};
    memset(t, 0, sizeof *t);
    t->n = 6;
    for (int i = 0; i < t->n; i++) {
        t->hu[i] = hu[i];
        t->red[i] = red[i];
    }
}

imrt_status imrt_hu_table_validate(const imrt_hu_table *t)
{
    if (!t)
        return imrt_error(IMRT_ERR_ARG, "HU table is NULL");
    if (t->n < 2 || t->n > IMRT_HU_TABLE_MAX)
        return imrt_error(IMRT_ERR_RANGE, "HU table: %d points; allowed 2..%d", t->n,
                          IMRT_HU_TABLE_MAX);
    for (int i = 0; i < t->n; i++) {
        if (!isfinite(t->hu[i]) || !isfinite(t->red[i]) || t->red[i] < 0.0)
            return imrt_error(IMRT_ERR_RANGE,
                              "HU table point %d (%g HU, RED %g): values must be finite, RED >= 0",
                              i, t->hu[i], t->red[i]);
        if (i > 0 && !(t->hu[i] > t->hu[i - 1]))
            return imrt_error(IMRT_ERR_RANGE,
                              "HU table point %d: HU %g must be greater than the previous %g", i,
                              t->hu[i], t->hu[i - 1]);
        if (i > 0 && t->red[i] < t->red[i - 1])
            return imrt_error(IMRT_ERR_RANGE,
                              "HU table point %d: RED %g must not be below the previous %g (the "
                              "table must be invertible)",
                              i, t->red[i], t->red[i - 1]);
    }
    return IMRT_OK;
}

double imrt_hu_to_red(const imrt_hu_table *t, double hu)
{
    if (!(hu > t->hu[0]))
        return t->red[0];
    if (hu >= t->hu[t->n - 1])
        return t->red[t->n - 1];
    int k = 0;
    while (k + 2 < t->n && hu > t->hu[k + 1])
        k++;
    double f = (hu - t->hu[k]) / (t->hu[k + 1] - t->hu[k]);
    return t->red[k] + f * (t->red[k + 1] - t->red[k]);
}

double imrt_red_to_hu(const imrt_hu_table *t, double red)
{
    if (!(red > t->red[0])) {
        /* on the first flat stretch: its highest HU */
        int k = 0;
        while (k + 1 < t->n && t->red[k + 1] <= t->red[0])
            k++;
        return red < t->red[0] ? t->hu[0] : t->hu[k];
    }
    if (red >= t->red[t->n - 1]) {
        int k = t->n - 1;
        return t->hu[k];
    }
    for (int k = 0; k + 1 < t->n; k++) {
        double r0 = t->red[k], r1 = t->red[k + 1];
        if (red >= r0 && red <= r1 && r1 > r0) {
            if (red == r1) {
                /* the top of this segment: take the highest HU of a flat run */
                int m = k + 1;
                while (m + 1 < t->n && t->red[m + 1] <= r1)
                    m++;
                return t->hu[m];
            }
            return t->hu[k] + (red - r0) / (r1 - r0) * (t->hu[k + 1] - t->hu[k]);
        }
    }
    return t->hu[t->n - 1];
}

/* ------------------------------------------------------------------ */
/* libmatio logging: silent, last message kept for our errors           */
/* ------------------------------------------------------------------ */

static _Thread_local char matio_msg[256];

static void matio_log(int level, char *message)
{
    (void)level;
    snprintf(matio_msg, sizeof matio_msg, "%s", message ? message : "");
}

static void matio_quiet(void)
{
    matio_msg[0] = '\0';
    Mat_LogInitFunc("imrt", matio_log);
}

/* ------------------------------------------------------------------ */
/* Structural check of a MAT v5 file                                   */
/* ------------------------------------------------------------------ */

static uint32_t rd32(const unsigned char *b, int swap)
{
    uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                 (uint32_t)b[3] << 24;
    if (swap)
        v = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
    return v;
}

/* A byte stream over one top-level variable: raw bytes of the file, or the
 * inflated bytes of a compressed variable. The structural check reads
 * headers and skips data through it, so nothing large is held in memory. */
typedef struct {
    FILE *f;
    int compressed;
    uint32_t left_in;          /* file bytes of this variable not read yet */
    z_stream zs;
    int zinit, zend;
    unsigned char *in, *out;   /* CHUNK_IN, CHUNK_OUT bytes */
    size_t out_pos, out_len;
    uint64_t consumed;         /* bytes delivered so far */
    int swap;
    const char *path;
    long offset;               /* of the variable in the file, for messages */
} mstream;

#define MS_CHUNK_IN (1u << 16)
#define MS_CHUNK_OUT (1u << 18)
#define MS_MAX_DEPTH 32

/* Refill the output buffer; 0 at the end of the data, -1 on corrupt data. */
static int ms_fill(mstream *m)
{
    m->out_pos = m->out_len = 0;
    if (!m->compressed) {
        size_t want = m->left_in < MS_CHUNK_OUT ? m->left_in : MS_CHUNK_OUT;
        if (want == 0)
            return 0;
        size_t got = fread(m->out, 1, want, m->f);
        m->left_in -= (uint32_t)got;
        m->out_len = got;
        return got == want ? 1 : -1;
    }
    while (m->out_len == 0) {
        if (m->zend)
            return 0;
        if (m->zs.avail_in == 0) {
            size_t want = m->left_in < MS_CHUNK_IN ? m->left_in : MS_CHUNK_IN;
            if (want == 0)
                return -1; /* input ends before the stream does */
            size_t got = fread(m->in, 1, want, m->f);
            if (got != want)
                return -1;
            m->left_in -= (uint32_t)got;
            m->zs.next_in = m->in;
            m->zs.avail_in = (uInt)got;
        }
        m->zs.next_out = m->out;
        m->zs.avail_out = MS_CHUNK_OUT;
        int ret = inflate(&m->zs, Z_NO_FLUSH);
        if (ret != Z_OK && ret != Z_STREAM_END)
            return -1;
        if (ret == Z_STREAM_END)
            m->zend = 1;
        m->out_len = MS_CHUNK_OUT - m->zs.avail_out;
    }
    return 1;
}

/* Read (dst != NULL) or skip n bytes; 0 if the data ends first. */
static int ms_take(mstream *m, void *dst, uint64_t n)
{
    unsigned char *d = dst;
    while (n > 0) {
        if (m->out_pos == m->out_len && ms_fill(m) <= 0)
            return 0;
        size_t k = m->out_len - m->out_pos;
        if ((uint64_t)k > n)
            k = (size_t)n;
        if (d) {
            memcpy(d, m->out + m->out_pos, k);
            d += k;
        }
        m->out_pos += k;
        m->consumed += k;
        n -= k;
    }
    return 1;
}

#define MS_BAD(...)                                               \
    do {                                                          \
        return imrt_error(IMRT_ERR_FORMAT, __VA_ARGS__);          \
    } while (0)

/* One data-element tag: type, size, whether small (data inside the tag,
 * already consumed) and the bytes the element occupies after its tag. */
static imrt_status ms_tag(mstream *m, uint32_t *type, uint32_t *size, uint64_t *body,
                          unsigned char *small)
{
    unsigned char b[8];
    if (!ms_take(m, b, 4))
        MS_BAD("%s: variable at byte %ld ends inside an element tag (truncated or corrupt)", m->path,
               m->offset);
    uint32_t t = rd32(b, m->swap);
    if (t >> 16) { /* small data element: 4 bytes of data in the tag */
        *type = t & 0xffffu;
        *size = t >> 16;
        if (*size > 4 || !ms_take(m, small ? small : b + 4, 4))
            MS_BAD("%s: corrupt small element in the variable at byte %ld", m->path, m->offset);
        *body = 0;
        return IMRT_OK;
    }
    if (!ms_take(m, b + 4, 4))
        MS_BAD("%s: variable at byte %ld ends inside an element tag (truncated or corrupt)", m->path,
               m->offset);
    *type = t;
    *size = rd32(b + 4, m->swap);
    *body = ((uint64_t)*size + 7u) / 8u * 8u;
    return IMRT_OK;
}

/* Bytes per element of a MAT data type; 0 for non-numeric types. */
static uint32_t mat_type_size(uint32_t t)
{
    switch (t) {
    case 1: case 2: case 16: return 1; /* int8, uint8, utf8 */
    case 3: case 4: case 17: return 2; /* int16, uint16, utf16 */
    case 5: case 6: case 7: case 18: return 4; /* int32, uint32, single, utf32 */
    case 9: case 12: case 13: return 8; /* double, int64, uint64 */
    default: return 0;
    }
}

/* Check one array element (the contents of a miMATRIX of `size` bytes):
 * sub-elements fit, dimensions match the data, cells and structs recurse. */
static imrt_status ms_matrix(mstream *m, uint32_t size, int depth)
{
    if (size == 0)
        return IMRT_OK; /* an empty cell entry */
    if (depth > MS_MAX_DEPTH)
        MS_BAD("%s: variable at byte %ld nests deeper than %d levels", m->path, m->offset,
               MS_MAX_DEPTH);
    uint64_t start = m->consumed, end = start + size;
    uint32_t type, esize;
    uint64_t body;
    imrt_status st;
#define MS_FITS(what)                                                                       \
    do {                                                                                    \
        if (m->consumed + body > end)                                                       \
            MS_BAD("%s: %s of the variable at byte %ld overruns its array (corrupt file)", \
                   m->path, what, m->offset);                                               \
    } while (0)
    /* array flags */
    if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
        return st;
    unsigned char flags[8] = {0};
    if (type != 6 || esize != 8 || body != 8)
        MS_BAD("%s: bad array flags in the variable at byte %ld", m->path, m->offset);
    MS_FITS("array flags");
    ms_take(m, flags, 8);
    uint32_t cls = rd32(flags, m->swap) & 0xffu;
    int complex = (rd32(flags, m->swap) >> 11) & 1u;
    /* dimensions */
    if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
        return st;
    if (type != 5 || esize < 8 || esize > 4 * 32 || esize % 4)
        MS_BAD("%s: bad dimensions in the variable at byte %ld", m->path, m->offset);
    MS_FITS("dimensions");
    unsigned char dims[128];
    ms_take(m, dims, body);
    uint64_t numel = 1;
    for (uint32_t i = 0; i < esize / 4; i++) {
        uint32_t d = rd32(dims + 4 * i, m->swap);
        if (d > 0x7fffffffu)
            MS_BAD("%s: negative dimension in the variable at byte %ld", m->path, m->offset);
        numel = d == 0 ? 0 : (numel > (UINT64_C(1) << 40) / d ? (UINT64_C(1) << 41) : numel * d);
    }
    if (numel > (UINT64_C(1) << 40))
        MS_BAD("%s: absurd array size in the variable at byte %ld", m->path, m->offset);
    /* name */
    if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
        return st;
    if ((type != 1 && type != 2) || esize > 4096)
        MS_BAD("%s: bad array name in the variable at byte %ld", m->path, m->offset);
    MS_FITS("array name");
    ms_take(m, NULL, body);
    if (cls == 1 || cls == 2) {
        uint64_t nfields = 1;
        if (cls == 2) {
            unsigned char fl[4] = {0};
            if ((st = ms_tag(m, &type, &esize, &body, fl)) != IMRT_OK)
                return st;
            if (type != 5 || esize != 4)
                MS_BAD("%s: bad struct field-name length in the variable at byte %ld", m->path,
                       m->offset);
            if (body) {
                MS_FITS("struct field-name length");
                ms_take(m, fl, 4);
                ms_take(m, NULL, body - 4);
            }
            uint32_t flen = rd32(fl, m->swap);
            if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
                return st;
            if (type != 1 && type != 2)
                MS_BAD("%s: bad struct field names in the variable at byte %ld", m->path, m->offset);
            MS_FITS("struct field names");
            ms_take(m, NULL, body);
            if (flen == 0 || flen > 4096 || esize % flen || esize / flen > 65536)
                MS_BAD("%s: inconsistent struct field names in the variable at byte %ld", m->path,
                       m->offset);
            nfields = esize / flen;
        }
        uint64_t nchild = numel * nfields;
        for (uint64_t i = 0; i < nchild; i++) {
            if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
                return st;
            if (type != 14)
                MS_BAD("%s: a cell or struct entry of the variable at byte %ld is not an array",
                       m->path, m->offset);
            if (m->consumed + esize > end)
                MS_BAD("%s: an entry of the variable at byte %ld overruns its array (corrupt file)",
                       m->path, m->offset);
            if ((st = ms_matrix(m, esize, depth + 1)) != IMRT_OK)
                return st;
        }
    } else if (cls == 4 || (cls >= 6 && cls <= 15)) {
        for (int part = 0; part < 1 + complex; part++) {
            if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
                return st;
            uint32_t w = mat_type_size(type);
            if (w == 0)
                MS_BAD("%s: unknown data type %u in the variable at byte %ld", m->path, type,
                       m->offset);
            int utf = type == 16 || type == 17;
            if (utf ? (uint64_t)esize > 4 * numel : (uint64_t)esize != numel * w)
                MS_BAD("%s: an array of %llu elements in the variable at byte %ld holds %u bytes "
                       "of %u-byte data (corrupt file)",
                       m->path, (unsigned long long)numel, m->offset, esize, w);
            MS_FITS("array data");
            ms_take(m, NULL, body);
        }
    } else if (cls == 5) { /* sparse: row indices, column starts, values */
        for (int part = 0; part < 3 + complex; part++) {
            if ((st = ms_tag(m, &type, &esize, &body, NULL)) != IMRT_OK)
                return st;
            MS_FITS("sparse data");
            ms_take(m, NULL, body);
        }
    }
    /* objects, function handles, opaque classes: not used here, skipped */
    if (m->consumed > end)
        MS_BAD("%s: the variable at byte %ld overruns its size (corrupt file)", m->path, m->offset);
    if (!ms_take(m, NULL, end - m->consumed))
        MS_BAD("%s: variable at byte %ld ends early (truncated or corrupt)", m->path, m->offset);
#undef MS_FITS
    return IMRT_OK;
}

/* Check the variable of `size` bytes at the file's current position. */
static imrt_status check_variable(FILE *f, const char *path, long offset, uint32_t size, int swap,
                                  int compressed)
{
    imrt_status status = IMRT_OK;
    mstream m;
    memset(&m, 0, sizeof m);
    m.f = f;
    m.compressed = compressed;
    m.left_in = size;
    m.swap = swap;
    m.path = path;
    m.offset = offset;
    IMRT_ALLOC(m.in, MS_CHUNK_IN);
    IMRT_ALLOC(m.out, MS_CHUNK_OUT);
    if (compressed) {
        if (inflateInit(&m.zs) != Z_OK)
            IMRT_FAIL(IMRT_ERR_NOMEM, "%s: cannot start zlib", path);
        m.zinit = 1;
        uint32_t type, esize;
        uint64_t body;
        IMRT_TRY(ms_tag(&m, &type, &esize, &body, NULL));
        if (type != 14)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: compressed variable at byte %ld is not a MATLAB array",
                      path, offset);
        IMRT_TRY(ms_matrix(&m, esize, 0));
        /* the zlib stream must end here, with all its input used */
        unsigned char extra;
        if (ms_take(&m, &extra, 1) || !m.zend)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: compressed variable at byte %ld has data after its "
                      "array or is corrupt", path, offset);
        if (m.left_in != 0 || m.zs.avail_in != 0)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: trailing bytes after the compressed variable at byte %ld",
                      path, offset);
    } else {
        IMRT_TRY(ms_matrix(&m, size, 0));
    }
cleanup:
    if (m.zinit)
        inflateEnd(&m.zs);
    imrt_free(m.in);
    imrt_free(m.out);
    return status;
}

/* 0 = MAT v5 (checked), 1 = v7.3 (HDF5; left to libmatio). */
static imrt_status check_mat_file(const char *path, int *is73)
{
    imrt_status status = IMRT_OK;
    FILE *f = fopen(path, "rb");
    *is73 = 0;
    if (!f)
        return imrt_error(IMRT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char hdr[128];
    if (fseek(f, 0, SEEK_END) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot read", path);
    long fsize = ftell(f);
    if (fsize < 0 || fseek(f, 0, SEEK_SET) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot read", path);
    if (fsize < 128 || fread(hdr, 1, 128, f) != 128)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: too short for a MAT file (%ld bytes)", path, fsize);
    if (memcmp(hdr, "MATLAB", 6) != 0)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: not a MATLAB MAT file (v5/v7/v7.3 header missing)", path);
    int swap;
    if (hdr[126] == 'I' && hdr[127] == 'M')
        swap = 0;
    else if (hdr[126] == 'M' && hdr[127] == 'I')
        swap = 1;
    else
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: bad MAT endian indicator", path);
    unsigned version = swap ? ((unsigned)hdr[124] << 8 | hdr[125]) : ((unsigned)hdr[125] << 8 | hdr[124]);
    if (version == 0x0200) {
        *is73 = 1;
        goto cleanup;
    }
    if (version != 0x0100)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: unsupported MAT version 0x%04x", path, version);
    long pos = 128;
    int nvars = 0;
    while (pos < fsize) {
        unsigned char tag[8];
        if (fsize - pos < 8 || fseek(f, pos, SEEK_SET) != 0 || fread(tag, 1, 8, f) != 8)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: file ends inside a variable header at byte %ld "
                      "(truncated)", path, pos);
        uint32_t type = rd32(tag, swap), size = rd32(tag + 4, swap);
        if (type >> 16)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: corrupt variable header at byte %ld", path, pos);
        if ((int64_t)size > (int64_t)fsize - pos - 8)
            IMRT_FAIL(IMRT_ERR_FORMAT,
                      "%s: variable at byte %ld needs %u bytes but the file has %ld left "
                      "(truncated)",
                      path, pos, size, fsize - pos - 8);
        if (type == 15u) {
            IMRT_TRY(check_variable(f, path, pos, size, swap, 1));
            pos += 8 + (long)size;
        } else if (type == 14u) {
            IMRT_TRY(check_variable(f, path, pos, size, swap, 0));
            pos += 8 + (long)size;
            pos += (8 - pos % 8) % 8 > fsize - pos ? 0 : (8 - pos % 8) % 8;
        } else {
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: unexpected element type %u at byte %ld", path, type,
                      pos);
        }
        nvars++;
    }
    if (nvars == 0)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: the MAT file holds no variables", path);
cleanup:
    fclose(f);
    return status;
}

/* ------------------------------------------------------------------ */
/* Import                                                              */
/* ------------------------------------------------------------------ */

/* Element e of a real numeric array as double; 0 if the class is not numeric. */
static int numeric_at(const matvar_t *v, size_t e, double *out)
{
    const void *d = v->data;
    switch (v->class_type) {
    case MAT_C_DOUBLE:
        *out = ((const double *)d)[e];
        return 1;
    case MAT_C_SINGLE:
        *out = (double)((const float *)d)[e];
        return 1;
    case MAT_C_INT8:
        *out = ((const int8_t *)d)[e];
        return 1;
    case MAT_C_UINT8:
        *out = ((const uint8_t *)d)[e];
        return 1;
    case MAT_C_INT16:
        *out = ((const int16_t *)d)[e];
        return 1;
    case MAT_C_UINT16:
        *out = ((const uint16_t *)d)[e];
        return 1;
    case MAT_C_INT32:
        *out = ((const int32_t *)d)[e];
        return 1;
    case MAT_C_UINT32:
        *out = ((const uint32_t *)d)[e];
        return 1;
    case MAT_C_INT64:
        *out = (double)((const int64_t *)d)[e];
        return 1;
    case MAT_C_UINT64:
        *out = (double)((const uint64_t *)d)[e];
        return 1;
    default:
        return 0;
    }
}

/* Elements of a variable (product of dims), 0 on overflow or NULL. */
static size_t var_numel(const matvar_t *v)
{
    if (!v || !v->dims || v->rank < 1)
        return 0;
    size_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        if (v->dims[i] && n > SIZE_MAX / v->dims[i])
            return 0;
        n *= v->dims[i];
    }
    return n;
}

static int numeric_class(enum matio_classes c)
{
    switch (c) {
    case MAT_C_DOUBLE:
    case MAT_C_SINGLE:
    case MAT_C_INT8:
    case MAT_C_UINT8:
    case MAT_C_INT16:
    case MAT_C_UINT16:
    case MAT_C_INT32:
    case MAT_C_UINT32:
    case MAT_C_INT64:
    case MAT_C_UINT64:
        return 1;
    default:
        return 0;
    }
}

/* A real numeric array whose data really holds numel elements (empty
 * arrays count as numeric with no elements). */
static int is_numeric(const matvar_t *v)
{
    if (!v || v->isComplex || !numeric_class(v->class_type))
        return 0;
    if (var_numel(v) == 0)
        return 1;
    if (!v->data)
        return 0;
    size_t esize = Mat_SizeOfClass((int)v->class_type);
    size_t n = var_numel(v);
    if (esize == 0 || (n && v->nbytes / esize < n))
        return 0;
    return 1;
}

/* Unwrap a 1x1 (or 1xK: first) cell; pass other variables through. */
static matvar_t *unwrap_cell(matvar_t *v)
{
    if (v && v->class_type == MAT_C_CELL) {
        if (var_numel(v) < 1 || !v->data)
            return NULL;
        return Mat_VarGetCell(v, 0);
    }
    return v;
}

/* A MATLAB char array into out (ASCII; other characters become '?'). */
static int char_value(const matvar_t *v, char *out, size_t n)
{
    out[0] = '\0';
    if (!v || v->class_type != MAT_C_CHAR || !v->data)
        return 0;
    size_t len = var_numel(v);
    size_t esize = v->data_size > 0 ? (size_t)v->data_size : 1;
    if (esize != 1 && esize != 2 && esize != 4)
        return 0;
    if (v->nbytes / esize < len)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < n; i++) {
        uint32_t ch;
        if (esize == 1)
            ch = ((const uint8_t *)v->data)[i];
        else if (esize == 2)
            ch = ((const uint16_t *)v->data)[i];
        else
            ch = ((const uint32_t *)v->data)[i];
        out[k++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    out[k] = '\0';
    /* trim */
    while (k > 0 && out[k - 1] == ' ')
        out[--k] = '\0';
    size_t s = 0;
    while (out[s] == ' ')
        s++;
    if (s)
        memmove(out, out + s, k - s + 1);
    return 1;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int scalar_field(matvar_t *s, const char *name, double *out)
{
    matvar_t *f = Mat_VarGetStructFieldByName(s, name, 0);
    if (!is_numeric(f) || var_numel(f) < 1)
        return 0;
    return numeric_at(f, 0, out);
}

imrt_status imrt_matrad_import(const char *path, const imrt_hu_table *table, imrt_phantom **out)
{
    imrt_status status = IMRT_OK;
    mat_t *mat = NULL;
    matvar_t *ct = NULL, *cst = NULL;
    imrt_phantom *p = NULL;
    imrt_hu_table def;
    if (!path || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_matrad_import: NULL argument");
    *out = NULL;
    if (!table) {
        imrt_hu_table_default(&def);
        table = &def;
    }
    IMRT_TRY(imrt_hu_table_validate(table));
    int is73 = 0;
    IMRT_TRY(check_mat_file(path, &is73));
    matio_quiet();
    mat = Mat_Open(path, MAT_ACC_RDONLY);
    if (!mat)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: libmatio cannot open it%s%s", path,
                  matio_msg[0] ? ": " : "", matio_msg);
    ct = Mat_VarRead(mat, "ct");
    if (!ct)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: no variable 'ct' (a matRad CT struct) in the file", path);
    if (ct->class_type != MAT_C_STRUCT || var_numel(ct) < 1)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: 'ct' is not a struct", path);
    cst = Mat_VarRead(mat, "cst");
    if (!cst)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: no variable 'cst' (matRad structure set) in the file", path);

    /* the CT cube */
    int cube_is_hu = 1;
    const char *cube_name = "ct.cubeHU";
    matvar_t *cube = unwrap_cell(Mat_VarGetStructFieldByName(ct, "cubeHU", 0));
    if (!cube) {
        cube = unwrap_cell(Mat_VarGetStructFieldByName(ct, "cube", 0));
        cube_name = "ct.cube";
        cube_is_hu = -1; /* decide from the values */
    }
    if (!cube)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: ct has neither cubeHU nor cube", path);
    if (!is_numeric(cube) || cube->rank < 2 || cube->rank > 3)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: %s{1} is not a real numeric 2-D or 3-D array", path,
                  cube_name);
    size_t ny = cube->dims[0], nx = cube->dims[1], nz = cube->rank == 3 ? cube->dims[2] : 1;
    if (nx < 1 || ny < 1 || nz < 1 || nx > IMRT_GRID_MAX_DIM || ny > IMRT_GRID_MAX_DIM ||
        nz > IMRT_GRID_MAX_DIM || (double)nx * (double)ny * (double)nz > (double)IMRT_GRID_MAX_VOXELS)
        IMRT_FAIL(IMRT_ERR_RANGE, "%s: %s is %zu x %zu x %zu; each axis must be 1..%d", path,
                  cube_name, ny, nx, nz, IMRT_GRID_MAX_DIM);
    /* resolution: struct x/y/z or [x y z] */
    double res[3] = {(double)NAN, (double)NAN, (double)NAN};
    matvar_t *rv = Mat_VarGetStructFieldByName(ct, "resolution", 0);
    if (rv && rv->class_type == MAT_C_STRUCT) {
        if (!scalar_field(rv, "x", &res[0]) || !scalar_field(rv, "y", &res[1]) ||
            !scalar_field(rv, "z", &res[2]))
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: ct.resolution lacks numeric x, y, z", path);
    } else if (is_numeric(rv) && var_numel(rv) == 3) {
        for (size_t a = 0; a < 3; a++)
            numeric_at(rv, a, &res[a]);
    } else {
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: ct.resolution is missing (struct with x, y, z in mm)", path);
    }
    for (int a = 0; a < 3; a++)
        if (!isfinite(res[a]) || res[a] <= 0.0 || res[a] > 1000.0)
            IMRT_FAIL(IMRT_ERR_RANGE, "%s: ct.resolution.%c = %g mm is outside (0, 1000]", path,
                      "xyz"[a], res[a]);
    matvar_t *cd = Mat_VarGetStructFieldByName(ct, "cubeDim", 0);
    if (is_numeric(cd) && var_numel(cd) >= 2) {
        double d0, d1, d2 = 1.0;
        numeric_at(cd, 0, &d0);
        numeric_at(cd, 1, &d1);
        if (var_numel(cd) >= 3)
            numeric_at(cd, 2, &d2);
        if (d0 != (double)ny || d1 != (double)nx || d2 != (double)nz)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: ct.cubeDim [%g %g %g] disagrees with %s [%zu %zu %zu]",
                      path, d0, d1, d2, cube_name, ny, nx, nz);
    }
    double origin[3] = {res[0], res[1], res[2]};
    const char *axn[3] = {"x", "y", "z"};
    const size_t naxis[3] = {nx, ny, nz};
    for (int a = 0; a < 3; a++) {
        matvar_t *av = Mat_VarGetStructFieldByName(ct, axn[a], 0);
        if (!av)
            continue;
        double first;
        if (!is_numeric(av) || var_numel(av) != naxis[a] || !numeric_at(av, 0, &first) ||
            !isfinite(first) || fabs(first) > 1e7)
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: ct.%s must be %zu finite voxel coordinates", path,
                      axn[a], naxis[a]);
        origin[a] = first;
    }
    imrt_grid g;
    IMRT_TRY(imrt_grid_init(&g, (int)nx, (int)ny, (int)nz, res[0], res[1], res[2], origin));
    char stem[IMRT_NAME_MAX];
    const char *base = strrchr(path, '/');
    snprintf(stem, sizeof stem, "%s", base ? base + 1 : path);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem)
        *dot = '\0';
    IMRT_TRY(imrt_phantom_create(&g, stem, 0.0f, &p));
    size_t nvox = nx * ny * nz;
    if (cube_is_hu < 0) {
        cube_is_hu = 0;
        for (size_t e = 0; e < nvox; e++) {
            double x;
            numeric_at(cube, e, &x);
            if (!(x >= 0.0 && x <= 16.0)) {
                cube_is_hu = 1;
                break;
            }
        }
    }
    for (size_t s = 0; s < nz; s++)
        for (size_t c = 0; c < nx; c++)
            for (size_t r = 0; r < ny; r++) {
                double x;
                numeric_at(cube, r + ny * (c + nx * s), &x);
                if (!isfinite(x))
                    IMRT_FAIL(IMRT_ERR_FORMAT, "%s: %s(%zu,%zu,%zu) is not finite", path,
                              cube_name, r + 1, c + 1, s + 1);
                double red = cube_is_hu ? imrt_hu_to_red(table, x) : x;
                p->density[c + nx * (r + ny * s)] = (float)red;
            }

    /* the structure set */
    if (cst->class_type != MAT_C_CELL || cst->rank != 2 || !cst->data)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: cst is not a 2-D cell array", path);
    size_t nrows = cst->dims[0], ncols = cst->dims[1];
    if (nrows > 0 && ncols < 4)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: cst has %zu columns; matRad's has at least 4 (index, "
                  "name, type, voxel indices)", path, ncols);
    if (nrows > IMRT_MAX_STRUCTURES)
        IMRT_FAIL(IMRT_ERR_RANGE, "%s: cst has %zu structures; at most %d are supported", path,
                  nrows, IMRT_MAX_STRUCTURES);
    for (size_t i = 0; i < nrows; i++) {
        char name[IMRT_NAME_MAX], type[32];
        matvar_t *nv = Mat_VarGetCell(cst, (int)(i + nrows * 1));
        matvar_t *tv = Mat_VarGetCell(cst, (int)(i + nrows * 2));
        matvar_t *iv = unwrap_cell(Mat_VarGetCell(cst, (int)(i + nrows * 3)));
        if (!char_value(nv, name, sizeof name))
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: cst{%zu,2} (structure name) is not text", path, i + 1);
        if (!name[0])
            snprintf(name, sizeof name, "structure_%zu", i + 1);
        for (char *q = name; *q; q++)
            if (*q == ' ')
                *q = '_';
        if (imrt_phantom_find(p, name) >= 0) {
            char alt[IMRT_NAME_MAX + 16];
            snprintf(alt, sizeof alt, "%.50s_%zu", name, i + 1);
            size_t L = strlen(alt);
            L = L < sizeof name ? L : sizeof name - 1;
            memcpy(name, alt, L);
            name[L] = '\0';
        }
        if (!char_value(tv, type, sizeof type))
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: cst{%zu,3} (type of '%s') is not text", path, i + 1,
                      name);
        imrt_structure_kind kind = ieq(type, "TARGET") ? IMRT_KIND_TARGET : IMRT_KIND_OAR;
        if (ieq(name, "BODY") || ieq(name, "External"))
            kind = IMRT_KIND_BODY;
        int priority = (int)i + 1;
        if (ncols >= 5) {
            matvar_t *props = Mat_VarGetCell(cst, (int)(i + nrows * 4));
            double pr;
            if (props && props->class_type == MAT_C_STRUCT &&
                scalar_field(props, "Priority", &pr) && pr >= 1.0 && pr <= 1e6)
                priority = (int)pr;
        }
        if (iv && iv->class_type == MAT_C_EMPTY)
            iv = NULL;
        if (iv && !is_numeric(iv))
            IMRT_FAIL(IMRT_ERR_FORMAT, "%s: cst{%zu,4} (voxel indices of '%s') is not numeric",
                      path, i + 1, name);
        int idx = -1;
        IMRT_TRY(imrt_phantom_add_structure(p, name, kind, priority, &idx));
        imrt_structure *st = &p->structures[idx];
        size_t nind = iv ? var_numel(iv) : 0;
        for (size_t e = 0; e < nind; e++) {
            double x;
            numeric_at(iv, e, &x);
            if (!(x >= 1.0 && x <= (double)nvox) || x != floor(x))
                IMRT_FAIL(IMRT_ERR_FORMAT,
                          "%s: cst{%zu,4} of '%s': voxel index %g (entry %zu) is not a whole number in the "
                          "cube's 1..%zu",
                          path, i + 1, name, x, e + 1, nvox);
            size_t lin = (size_t)x - 1;
            size_t r = lin % ny, c = (lin / ny) % nx, s = lin / (ny * nx);
            st->mask[c + nx * (r + ny * s)] = 1;
        }
        imrt_structure_recount(p, st);
    }
    *out = p;
    p = NULL;
cleanup:
    if (ct)
        Mat_VarFree(ct);
    if (cst)
        Mat_VarFree(cst);
    if (mat)
        Mat_Close(mat);
    imrt_phantom_destroy(&p);
    return status;
}

/* ------------------------------------------------------------------ */
/* Export                                                              */
/* ------------------------------------------------------------------ */

static matvar_t *mk_double(const double *x, size_t rows, size_t cols)
{
    size_t d[2] = {rows, cols};
    return Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d, (void *)(uintptr_t)x, 0);
}

static matvar_t *mk_scalar(double x)
{
    return mk_double(&x, 1, 1);
}

/* A MATLAB char row vector. Written as 16-bit characters, as MATLAB does
 * (libmatio 1.5.23 sizes 8-bit char elements as if they were 16-bit and
 * writes an inconsistent file for names whose length is 5-8 mod 8). */
static matvar_t *mk_string(const char *s)
{
    uint16_t wide[IMRT_NAME_MAX];
    size_t n = strlen(s);
    n = n < IMRT_NAME_MAX ? n : IMRT_NAME_MAX;
    for (size_t i = 0; i < n; i++)
        wide[i] = (uint8_t)s[i];
    size_t d[2] = {1, n};
    return Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT16, 2, d, wide, 0);
}

static matvar_t *mk_cell(size_t rows, size_t cols)
{
    size_t d[2] = {rows, cols};
    return Mat_VarCreate(NULL, MAT_C_CELL, MAT_T_CELL, 2, d, NULL, 0);
}

/* Put v into cell c at index i; on failure frees v. Returns 1 on success. */
static int cell_put(matvar_t *c, size_t i, matvar_t *v)
{
    if (!c || !v) {
        if (v)
            Mat_VarFree(v);
        return 0;
    }
    Mat_VarSetCell(c, (int)i, v);
    return 1;
}

static matvar_t *mk_struct(const char *name, const char **fields, unsigned nfields)
{
    size_t d[2] = {1, 1};
    return Mat_VarCreateStruct(name, 2, d, fields, nfields);
}

static int struct_put(matvar_t *s, const char *field, matvar_t *v)
{
    if (!s || !v) {
        if (v)
            Mat_VarFree(v);
        return 0;
    }
    Mat_VarSetStructFieldByName(s, field, 0, v);
    return 1;
}

imrt_status imrt_matrad_export_table(const imrt_phantom *p, const imrt_hu_table *table,
                                     const char *path)
{
    imrt_status status = IMRT_OK;
    double *red = NULL, *hu = NULL, *ind = NULL, *axis = NULL;
    matvar_t *ct = NULL, *cst = NULL;
    mat_t *mat = NULL;
    char *tmp = NULL;
    imrt_hu_table def;
    if (!p || !path)
        return imrt_error(IMRT_ERR_ARG, "imrt_matrad_export: NULL argument");
    if (!table) {
        imrt_hu_table_default(&def);
        table = &def;
    }
    IMRT_TRY(imrt_hu_table_validate(table));
    const imrt_grid *g = &p->grid;
    size_t nx = (size_t)g->nx, ny = (size_t)g->ny, nz = (size_t)g->nz, nvox = nx * ny * nz;
    IMRT_ALLOC(red, nvox);
    IMRT_ALLOC(hu, nvox);
    for (size_t s = 0; s < nz; s++)
        for (size_t r = 0; r < ny; r++)
            for (size_t c = 0; c < nx; c++) {
                double d = (double)p->density[c + nx * (r + ny * s)];
                size_t m = r + ny * (c + nx * s);
                red[m] = d;
                hu[m] = imrt_red_to_hu(table, d);
            }
    matio_quiet();
    static const char *ct_fields[] = {"cube", "cubeHU", "resolution", "cubeDim", "numOfCtScen",
                                      "x",    "y",      "z"};
    static const char *res_fields[] = {"x", "y", "z"};
    ct = mk_struct("ct", ct_fields, 8);
    if (!ct)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the matRad ct struct");
    size_t dims3[3] = {ny, nx, nz};
    matvar_t *cube = Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 3, dims3, red, 0);
    matvar_t *cubehu = Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 3, dims3, hu, 0);
    matvar_t *cc = mk_cell(1, 1), *ch = mk_cell(1, 1);
    int ok = cell_put(cc, 0, cube);
    ok = cell_put(ch, 0, cubehu) && ok;
    ok = struct_put(ct, "cube", cc) && ok;
    ok = struct_put(ct, "cubeHU", ch) && ok;
    matvar_t *res = mk_struct(NULL, res_fields, 3);
    ok = struct_put(res, "x", mk_scalar(g->dx)) && ok;
    ok = struct_put(res, "y", mk_scalar(g->dy)) && ok;
    ok = struct_put(res, "z", mk_scalar(g->dz)) && ok;
    ok = struct_put(ct, "resolution", res) && ok;
    const double cdim[3] = {(double)ny, (double)nx, (double)nz};
    ok = struct_put(ct, "cubeDim", mk_double(cdim, 1, 3)) && ok;
    ok = struct_put(ct, "numOfCtScen", mk_scalar(1.0)) && ok;
    size_t nmax = IMRT_MAX(nx, IMRT_MAX(ny, nz));
    IMRT_ALLOC(axis, nmax);
    const size_t na[3] = {nx, ny, nz};
    const double sp[3] = {g->dx, g->dy, g->dz};
    for (int a = 0; a < 3; a++) {
        for (size_t i = 0; i < na[a]; i++)
            axis[i] = g->origin[a] + (double)i * sp[a];
        ok = struct_put(ct, res_fields[a], mk_double(axis, 1, na[a])) && ok;
    }
    if (!ok)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the matRad ct struct");

    size_t ns = (size_t)p->nstructures;
    {
        size_t d[2] = {ns, 6};
        cst = Mat_VarCreate("cst", MAT_C_CELL, MAT_T_CELL, 2, d, NULL, 0);
    }
    if (!cst)
        IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the matRad cst");
    static const char *prop_fields[] = {"Priority", "Visible", "visibleColor"};
    int64_t maxcount = 0;
    for (size_t s = 0; s < ns; s++)
        maxcount = IMRT_MAX(maxcount, p->structures[s].count);
    IMRT_ALLOC(ind, maxcount > 0 ? maxcount : 1);
    for (size_t s = 0; s < ns; s++) {
        const imrt_structure *st = &p->structures[s];
        size_t k = 0;
        /* MATLAB linear order: row (y) fastest, then column (x), then slice */
        for (size_t sl = 0; sl < nz; sl++)
            for (size_t c = 0; c < nx; c++)
                for (size_t r = 0; r < ny; r++)
                    if (st->mask[c + nx * (r + ny * sl)] && k < (size_t)maxcount)
                        ind[k++] = (double)(r + ny * (c + nx * sl) + 1);
        matvar_t *ic = mk_cell(1, 1);
        ok = cell_put(ic, 0, mk_double(ind, k, 1));
        ok = cell_put(cst, s, mk_scalar((double)s)) && ok;
        ok = cell_put(cst, s + ns, mk_string(st->name)) && ok;
        ok = cell_put(cst, s + 2 * ns,
                      mk_string(st->kind == IMRT_KIND_TARGET ? "TARGET" : "OAR")) && ok;
        ok = cell_put(cst, s + 3 * ns, ic) && ok;
        matvar_t *props = mk_struct(NULL, prop_fields, 3);
        const double colour[3] = {st->kind == IMRT_KIND_TARGET ? 1.0 : 0.0, 0.5,
                                  st->kind == IMRT_KIND_TARGET ? 0.0 : 1.0};
        ok = struct_put(props, "Priority", mk_scalar((double)st->priority)) && ok;
        ok = struct_put(props, "Visible", mk_scalar(1.0)) && ok;
        ok = struct_put(props, "visibleColor", mk_double(colour, 1, 3)) && ok;
        ok = cell_put(cst, s + 4 * ns, props) && ok;
        ok = cell_put(cst, s + 5 * ns, mk_cell(0, 0)) && ok;
        if (!ok)
            IMRT_FAIL(IMRT_ERR_NOMEM, "cannot build the matRad cst entry of '%s'", st->name);
    }
    size_t plen = strlen(path);
    IMRT_ALLOC(tmp, plen + 32);
    snprintf(tmp, plen + 32, "%s.tmp-%ld", path, (long)getpid());
    mat = Mat_CreateVer(tmp, NULL, MAT_FT_MAT5);
    if (!mat)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot create%s%s", tmp, matio_msg[0] ? ": " : "", matio_msg);
    if (Mat_VarWrite(mat, ct, MAT_COMPRESSION_ZLIB) != 0 ||
        Mat_VarWrite(mat, cst, MAT_COMPRESSION_ZLIB) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot write (disk full?)%s%s", tmp,
                  matio_msg[0] ? ": " : "", matio_msg);
    int closed = Mat_Close(mat);
    mat = NULL;
    if (closed != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot close%s%s", tmp, matio_msg[0] ? ": " : "", matio_msg);
    if (rename(tmp, path) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    imrt_free(tmp);
    tmp = NULL;
cleanup:
    if (mat)
        Mat_Close(mat);
    if (tmp)
        unlink(tmp);
    if (ct)
        Mat_VarFree(ct);
    if (cst)
        Mat_VarFree(cst);
    imrt_free(red);
    imrt_free(hu);
    imrt_free(ind);
    imrt_free(axis);
    imrt_free(tmp);
    return status;
}

imrt_status imrt_matrad_export(const imrt_phantom *p, const char *path)
{
    return imrt_matrad_export_table(p, NULL, path);
}
