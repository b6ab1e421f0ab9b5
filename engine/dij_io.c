/*
 * engine/dij_io.c - the dij file: a versioned, checksummed little-endian
 * binary format (layout in imrt/dij.h), written atomically and read with
 * every size checked against the file before anything is allocated.
 */
#include "imrt/dij.h"

#include "dij_impl.h"

#include "util_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DIJ_MAGIC "IMRTDIJ"        /* 7 characters + NUL = 8 bytes */
#define DIJ_HEADER_BYTES 124u     /* version 1 */
#define DIJ_HEADER_BYTES_V2 132u  /* versions 2 and 3: + i32 nvirt, i32 reserved (version 2,
                                     0) or the maps' lateral cut-off in um (version 3) */
#define DIJ_BEAM_BYTES 104u        /* char[64] name + 5 doubles */
#define DIJ_SMAP_BYTES 56u         /* 4 x i32 (first, np, nq, nk) + 5 doubles */

/* ---- little-endian packing ---------------------------------------------- */

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void put(unsigned char **p, const void *v, size_t n)
{
    memcpy(*p, v, n);
    *p += n;
}

static void get(const unsigned char **p, void *v, size_t n)
{
    memcpy(v, *p, n);
    *p += n;
}

/* CRC-32 (zlib polynomial) of a buffer of any size, continuing from crc. */
static uint32_t crc_update(uint32_t crc, const void *buf, uint64_t n)
{
    const unsigned char *b = buf;
    uLong c = crc;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

/* One payload block: pointer and size. */
typedef struct {
    void *ptr;
    uint64_t bytes;
} block;

/* Payload blocks in file order; beams and maps go through packed buffers
 * (maps: version 2 only, else an empty block). */
#define DIJ_NBLOCKS 8
static void payload_blocks(const imrt_dij *d, unsigned char *beams_buf, unsigned char *smap_buf,
                           int version, block blk[DIJ_NBLOCKS])
{
    blk[0].ptr = beams_buf;
    blk[0].bytes = (uint64_t)d->nbeams * DIJ_BEAM_BYTES;
    blk[1].ptr = d->beam_start;
    blk[1].bytes = (uint64_t)(d->nbeams + 1) * sizeof(int32_t);
    blk[2].ptr = d->bixel_uv;
    blk[2].bytes = (uint64_t)d->ncols * 2 * sizeof(float);
    blk[3].ptr = smap_buf;
    blk[3].bytes = version >= 2 ? (uint64_t)d->nbeams * DIJ_SMAP_BYTES : 0;
    blk[4].ptr = d->voxel;
    blk[4].bytes = (uint64_t)d->nrows * sizeof(int64_t);
    blk[5].ptr = d->rowptr;
    blk[5].bytes = (uint64_t)(d->nrows + 1) * sizeof(int64_t);
    blk[6].ptr = d->col;
    blk[6].bytes = (uint64_t)d->nnz * sizeof(int32_t);
    blk[7].ptr = d->val;
    blk[7].bytes = (uint64_t)d->nnz * sizeof(float);
}

/* Payload size of a dij with these sizes; 0 on overflow (sizes validated
 * non-negative and bounded by the caller). */
static uint64_t payload_size(int64_t nrows, int32_t ncols, int nbeams, int64_t nnz, int version)
{
    const uint64_t lim = UINT64_MAX / 16;
    if ((uint64_t)nnz > lim || (uint64_t)nrows > lim)
        return 0;
    return (uint64_t)nbeams * DIJ_BEAM_BYTES + (uint64_t)(nbeams + 1) * 4 +
           (uint64_t)ncols * 8 + (version >= 2 ? (uint64_t)nbeams * DIJ_SMAP_BYTES : 0) +
           (uint64_t)nrows * 8 + (uint64_t)(nrows + 1) * 8 + (uint64_t)nnz * 8;
}

static void pack_smaps(const imrt_dij *d, unsigned char *buf)
{
    unsigned char *p = buf;
    for (int b = 0; b < d->nbeams && d->smap; b++) {
        const imrt_dij_smap *m = &d->smap[b];
        const int32_t i4[4] = {m->first, m->np, m->nq, m->nk};
        const double f8[5] = {m->u0, m->v0, m->h, m->s0, m->ln_ratio};
        put(&p, i4, 16);
        put(&p, f8, 40);
    }
}

static void unpack_smaps(imrt_dij *d, const unsigned char *buf)
{
    const unsigned char *p = buf;
    for (int b = 0; b < d->nbeams; b++) {
        imrt_dij_smap *m = &d->smap[b];
        int32_t i4[4];
        double f8[5];
        get(&p, i4, 16);
        get(&p, f8, 40);
        m->first = i4[0];
        m->np = i4[1];
        m->nq = i4[2];
        m->nk = i4[3];
        m->u0 = f8[0];
        m->v0 = f8[1];
        m->h = f8[2];
        m->s0 = f8[3];
        m->ln_ratio = f8[4];
    }
}

static void pack_beams(const imrt_dij *d, unsigned char *buf)
{
    unsigned char *p = buf;
    for (int b = 0; b < d->nbeams; b++) {
        char name[64];
        memset(name, 0, sizeof name);
        double g = 0, c = 0, iso[3] = {0, 0, 0};
        if (d->beams) {
            snprintf(name, sizeof name, "%s", d->beams[b].name);
            g = d->beams[b].gantry_deg;
            c = d->beams[b].couch_deg;
            memcpy(iso, d->beams[b].iso, sizeof iso);
        }
        put(&p, name, 64);
        put(&p, &g, 8);
        put(&p, &c, 8);
        put(&p, iso, 24);
    }
}

static void pack_header(const imrt_dij *d, int version_, uint64_t payload_bytes,
                        uint32_t payload_crc, unsigned char *h)
{
    unsigned char *p = h;
    const uint32_t version = (uint32_t)version_;
    const uint32_t hbytes = version >= 2 ? DIJ_HEADER_BYTES_V2 : DIJ_HEADER_BYTES;
    memset(h, 0, hbytes);
    put(&p, DIJ_MAGIC, 8);
    put(&p, &version, 4);
    put(&p, &hbytes, 4);
    const int32_t dims[3] = {d->grid.nx, d->grid.ny, d->grid.nz};
    const double sp[3] = {d->grid.dx, d->grid.dy, d->grid.dz};
    put(&p, dims, 12);
    put(&p, sp, 24);
    put(&p, d->grid.origin, 24);
    const int32_t ncols = d->ncols, nbeams = d->nbeams;
    put(&p, &d->nrows, 8);
    put(&p, &ncols, 4);
    put(&p, &nbeams, 4);
    put(&p, &d->nnz, 8);
    put(&p, &d->beamlet_mm, 8);
    if (version >= 2) {
        const int32_t v2[2] = {d->nvirt,
                               version >= 3 ? (int32_t)lround(d->smap[0].cutoff * 1000.0) : 0};
        put(&p, v2, 8);
    }
    put(&p, &payload_bytes, 8);
    put(&p, &payload_crc, 4);
    const uint32_t hcrc = crc_update(0, h, (uint64_t)(p - h));
    put(&p, &hcrc, 4);
}

static int write_all(FILE *f, const void *buf, uint64_t n)
{
    const unsigned char *b = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        if (fwrite(b, 1, chunk, f) != chunk)
            return 0;
        b += chunk;
        n -= chunk;
    }
    return 1;
}

static int read_all(FILE *f, void *buf, uint64_t n)
{
    unsigned char *b = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        if (fread(b, 1, chunk, f) != chunk)
            return 0;
        b += chunk;
        n -= chunk;
    }
    return 1;
}

imrt_status imrt_dij_save(const imrt_dij *d, const char *path)
{
    imrt_status status = IMRT_OK;
    unsigned char *beams_buf = NULL, *smap_buf = NULL;
    FILE *f = NULL;
    char *tmp = NULL;
    int fd = -1;
    if (!d || !path)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_save: NULL argument");
    if (!host_is_little_endian())
        return imrt_error(IMRT_ERR_UNSUPPORTED, "dij files are little-endian; this host is not");
    IMRT_TRY(imrt_dij_validate(d));
    /* the oldest version that holds the dij, so older readers keep working:
     * 1 without scatter maps, 2 with maps without a lateral cut-off */
    const double cut_mm = imrt_dij_cutoff(d);
    const int version = d->nvirt <= 0 ? 1 : cut_mm > 0.0 ? IMRT_DIJ_FORMAT_VERSION : 2;
    if (version == 3 && !(cut_mm <= IMRT_DIJ_CUTOFF_MAX_UM / 1000.0 &&
                          cut_mm == imrt_dij_cutoff_held(cut_mm)))
        IMRT_FAIL(IMRT_ERR_ARG, "imrt_dij_save: the maps' lateral cut-off %.9g mm is not a "
                  "whole number of micrometres up to %g mm", cut_mm,
                  IMRT_DIJ_CUTOFF_MAX_UM / 1000.0);
    IMRT_ALLOC(beams_buf, (uint64_t)d->nbeams * DIJ_BEAM_BYTES + 1);
    IMRT_ALLOC(smap_buf, (uint64_t)d->nbeams * DIJ_SMAP_BYTES + 1);
    pack_beams(d, beams_buf);
    pack_smaps(d, smap_buf);
    block blk[DIJ_NBLOCKS];
    payload_blocks(d, beams_buf, smap_buf, version, blk);
    uint32_t crc = 0;
    uint64_t total = 0;
    for (int q = 0; q < DIJ_NBLOCKS; q++) {
        if (blk[q].bytes)
            crc = crc_update(crc, blk[q].ptr, blk[q].bytes);
        total += blk[q].bytes;
    }
    unsigned char header[DIJ_HEADER_BYTES_V2];
    const uint32_t hsize = version >= 2 ? DIJ_HEADER_BYTES_V2 : DIJ_HEADER_BYTES;
    pack_header(d, version, total, crc, header);

    /* A fresh temporary name beside the target (mode 0666 less the umask). */
    size_t len = strlen(path) + 48;
    IMRT_ALLOC(tmp, len);
    for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
        snprintf(tmp, len, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        const int err = errno;
        imrt_free(tmp);
        tmp = NULL; /* nothing was created */
        IMRT_FAIL(IMRT_ERR_IO, "cannot create a temporary file beside %s: %s", path,
                  strerror(err));
    }
    f = fdopen(fd, "wb");
    if (!f)
        IMRT_FAIL(IMRT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fd = -1;
    int ok = write_all(f, header, hsize);
    for (int q = 0; q < DIJ_NBLOCKS && ok; q++)
        if (blk[q].bytes)
            ok = write_all(f, blk[q].ptr, blk[q].bytes);
    ok = (fflush(f) == 0) && ok;
    int err = errno;
    ok = (fclose(f) == 0) && ok;
    f = NULL;
    if (!ok)
        IMRT_FAIL(IMRT_ERR_IO, "error writing %s: %s", path, strerror(err ? err : errno));
    if (rename(tmp, path) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    imrt_free(tmp);
    tmp = NULL;
cleanup:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        imrt_free(tmp);
    }
    imrt_free(beams_buf);
    imrt_free(smap_buf);
    return status;
}

imrt_status imrt_dij_load(const char *path, uint64_t max_bytes, imrt_dij **out)
{
    imrt_status status = IMRT_OK;
    FILE *f = NULL;
    imrt_dij *d = NULL;
    unsigned char *beams_buf = NULL, *smap_buf = NULL;
    if (!path || !out)
        return imrt_error(IMRT_ERR_ARG, "imrt_dij_load: NULL argument");
    *out = NULL;
    if (!host_is_little_endian())
        return imrt_error(IMRT_ERR_UNSUPPORTED, "dij files are little-endian; this host is not");
    f = fopen(path, "rb");
    if (!f)
        IMRT_FAIL(IMRT_ERR_IO, "cannot open dij file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        IMRT_FAIL(IMRT_ERR_IO, "%s is not a regular file", path);
    const uint64_t fsize = (uint64_t)st.st_size;
    unsigned char h[DIJ_HEADER_BYTES_V2];
    memset(h, 0, sizeof h);
    uint64_t have = fsize < 16 ? fsize : 16;
    if (!read_all(f, h, have))
        IMRT_FAIL(IMRT_ERR_IO, "%s: read error in the dij header", path);
    if (have < 8 || memcmp(h, DIJ_MAGIC, 8) != 0)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s is not an imrt dij file (bad magic)", path);
    const unsigned char *p = h;
    char magic[8];
    uint32_t version = 0, hbytes = 0, pcrc, hcrc;
    int32_t dims[3], ncols, nbeams, nvirt = 0, reserved = 0;
    double sp[3], origin[3], beamlet_mm;
    int64_t nrows, nnz;
    uint64_t pbytes;
    get(&p, magic, 8);
    if (have >= 16) {
        get(&p, &version, 4);
        get(&p, &hbytes, 4);
    }
    if (have >= 16 && (version < 1 || version > IMRT_DIJ_FORMAT_VERSION))
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: dij format version %u; this build reads versions 1 to "
                  "%d", path, version, IMRT_DIJ_FORMAT_VERSION);
    const uint32_t hexpect = version >= 2 ? DIJ_HEADER_BYTES_V2 : DIJ_HEADER_BYTES;
    if (fsize < hexpect)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s is truncated: %llu bytes, shorter than the %u-byte dij "
                  "header", path, (unsigned long long)fsize, hexpect);
    if (hbytes != hexpect)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: dij header of %u bytes, expected %u", path, hbytes,
                  hexpect);
    if (!read_all(f, h + 16, hexpect - 16))
        IMRT_FAIL(IMRT_ERR_IO, "%s: read error in the dij header", path);
    get(&p, dims, 12);
    get(&p, sp, 24);
    get(&p, origin, 24);
    get(&p, &nrows, 8);
    get(&p, &ncols, 4);
    get(&p, &nbeams, 4);
    get(&p, &nnz, 8);
    get(&p, &beamlet_mm, 8);
    if (version >= 2) {
        get(&p, &nvirt, 4);
        get(&p, &reserved, 4);
    }
    get(&p, &pbytes, 8);
    get(&p, &pcrc, 4);
    const uint32_t hcrc_now = crc_update(0, h, (uint64_t)(p - h));
    get(&p, &hcrc, 4);
    if (hcrc != hcrc_now)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: dij header checksum mismatch (file corrupted)", path);
    imrt_grid g;
    if (imrt_grid_init(&g, dims[0], dims[1], dims[2], sp[0], sp[1], sp[2], origin) != IMRT_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", imrt_last_error());
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: invalid dose grid in the dij header: %s", path, msg);
    }
    if (nrows < 0 || nrows > imrt_grid_nvox(&g) || ncols < 0 || nbeams < 0 ||
        nbeams > IMRT_MAX(ncols, 0) || nnz < 0 || !isfinite(beamlet_mm) || nvirt < 0 ||
        (version == 2 && reserved != 0) ||
        (version >= 3 && (reserved < 1 || reserved > IMRT_DIJ_CUTOFF_MAX_UM || nvirt < 1)) ||
        (int64_t)ncols + nvirt > INT32_MAX || (version >= 2 && nbeams < 1))
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: inconsistent dij sizes (rows %lld, columns %d, map "
                  "columns %d, beams %d, entries %lld)", path, (long long)nrows, ncols, nvirt,
                  nbeams, (long long)nnz);
    const uint64_t expect = payload_size(nrows, ncols, nbeams, nnz, (int)version);
    if (expect == 0 || expect != pbytes)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: dij header sizes imply %llu payload bytes but it records "
                  "%llu", path, (unsigned long long)expect, (unsigned long long)pbytes);
    if (fsize - hexpect < expect)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s is truncated: %llu payload bytes of %llu", path,
                  (unsigned long long)(fsize - hexpect), (unsigned long long)expect);
    if (fsize - hexpect > expect)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s has %llu trailing bytes after the dij", path,
                  (unsigned long long)(fsize - hexpect - expect));
    if ((int64_t)nvirt > IMRT_DIJ_MAX_MAP_NODES)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: %d scatter-map columns (at most %lld)", path, nvirt,
                  (long long)IMRT_DIJ_MAX_MAP_NODES);
    /* the maps add vectors of ncols + nvirt doubles to every product: a few
     * of them count against the budget with the arrays */
    const uint64_t need = imrt_dij_bytes(nrows, ncols, nnz, nbeams) +
                          (uint64_t)nvirt * 4u * sizeof(double);
    if (max_bytes > 0 && need > max_bytes)
        IMRT_FAIL(IMRT_ERR_BUDGET, "%s: the dij needs %.1f MiB but the memory budget is %.1f MiB "
                  "(--max-memory)", path, (double)need / 1048576.0,
                  (double)max_bytes / 1048576.0);
    IMRT_TRY(imrt_dij_alloc(&g, nrows, ncols, nnz, nbeams, &d));
    d->beamlet_mm = beamlet_mm;
    IMRT_ALLOC(beams_buf, (uint64_t)nbeams * DIJ_BEAM_BYTES + 1);
    IMRT_ALLOC(smap_buf, (uint64_t)nbeams * DIJ_SMAP_BYTES + 1);
    block blk[DIJ_NBLOCKS];
    payload_blocks(d, beams_buf, smap_buf, (int)version, blk);
    uint32_t crc = 0;
    for (int q = 0; q < DIJ_NBLOCKS; q++) {
        if (!blk[q].bytes)
            continue;
        if (!read_all(f, blk[q].ptr, blk[q].bytes))
            IMRT_FAIL(IMRT_ERR_IO, "%s: read error in the dij payload", path);
        crc = crc_update(crc, blk[q].ptr, blk[q].bytes);
    }
    if (crc != pcrc)
        IMRT_FAIL(IMRT_ERR_FORMAT, "%s: dij payload checksum mismatch (file corrupted)", path);
    const unsigned char *q = beams_buf;
    for (int b = 0; b < nbeams; b++) {
        get(&q, d->beams[b].name, 64);
        d->beams[b].name[63] = '\0';
        get(&q, &d->beams[b].gantry_deg, 8);
        get(&q, &d->beams[b].couch_deg, 8);
        get(&q, d->beams[b].iso, 24);
    }
    if (version >= 2 && nvirt > 0) {
        IMRT_ALLOC(d->smap, nbeams);
        unpack_smaps(d, smap_buf);
        for (int b = 0; b < nbeams; b++)
            d->smap[b].cutoff = version >= 3 ? reserved / 1000.0 : 0.0;
        d->nvirt = nvirt;
    }
    imrt_status vs = imrt_dij_validate(d);
    if (vs == IMRT_OK)
        vs = imrt_dij_scatter_prepare(d);
    if (vs != IMRT_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", imrt_last_error());
        IMRT_FAIL(vs == IMRT_ERR_NOMEM ? IMRT_ERR_NOMEM : IMRT_ERR_FORMAT, "%s: %s", path, msg);
    }
    *out = d;
    d = NULL;
cleanup:
    if (f)
        fclose(f);
    imrt_free(beams_buf);
    imrt_free(smap_buf);
    imrt_dij_destroy(&d);
    return status;
}
