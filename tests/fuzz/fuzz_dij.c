/*
 * tests/fuzz/fuzz_dij.c - libFuzzer harness for the dij file reader
 * (engine/dij_io.c).
 *
 * Input layout: one control byte, then the file. The file carries two
 * CRC-32 checksums, which random mutations almost never keep right, so the
 * control byte lets the fuzzer ask for them to be recomputed before the
 * read: bit 0 the payload checksum, bit 1 the header checksum (at the
 * offsets of the file's format version, 1 or 2). Without
 * them the checksum tests themselves are fuzzed. A dij that loads must
 * validate and must give a dose product (imrt_dij_dose) without touching
 * memory outside its arrays; the product is skipped for dose grids of
 * more than 2^20 voxels (the header alone can ask for 2^31).
 */
#define _GNU_SOURCE
#include "imrt.h"

#include "fuzz_util.h"

#include <math.h>
#include <string.h>
#include <zlib.h>

/* version 1 layout; version 2 adds 8 header bytes (the map-column count)
 * before the payload size, so its checksums sit 8 bytes later */
#define HEADER_BYTES 124u
#define PAYLOAD_CRC_AT 116u
#define HEADER_CRC_AT 120u
#define V2_SHIFT 8u
#define BUDGET_BYTES (256u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_memfile file = {-1, ""};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned flags = data[0];
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    memcpy(buf, data + 1, n);
    const unsigned sh = n >= 12 && buf[8] == 2 && !buf[9] && !buf[10] && !buf[11] ? V2_SHIFT : 0;
    if (n >= HEADER_BYTES + sh) {
        if (flags & 1u)
            put32(buf + PAYLOAD_CRC_AT + sh,
                  (uint32_t)crc32(0, buf + HEADER_BYTES + sh, (uInt)(n - HEADER_BYTES - sh)));
        if (flags & 2u)
            put32(buf + HEADER_CRC_AT + sh, (uint32_t)crc32(0, buf, HEADER_CRC_AT + sh));
    }
    if (fuzz_memfile_set(&file, buf, n) != 0)
        abort();
    free(buf);
    imrt_dij *d = NULL;
    imrt_status st = imrt_dij_load(file.path, BUDGET_BYTES, &d);
    if (getenv("IMRT_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_dij: %s\n", st == IMRT_OK ? "loaded" : imrt_last_error());
    if (st != IMRT_OK) {
        /* a failure leaves no dij and a message that names the file */
        FUZZ_CHECK(st < 0 && !d);
        FUZZ_CHECK(strstr(imrt_last_error(), file.path) != NULL);
        return 0;
    }
    FUZZ_CHECK(d != NULL);
    FUZZ_CHECK(imrt_dij_validate(d) == IMRT_OK);
    const int64_t nvox = imrt_grid_nvox(&d->grid);
    if (nvox <= (1 << 20)) {
        double *x = malloc(sizeof(double) * (size_t)(d->ncols > 0 ? d->ncols : 1));
        float *dose = malloc(sizeof(float) * (size_t)nvox);
        if (!x || !dose)
            abort();
        for (int32_t c = 0; c < d->ncols; c++)
            x[c] = 1.0;
        FUZZ_CHECK(imrt_dij_dose(d, x, dose) == IMRT_OK);
        free(x);
        free(dose);
    }
    imrt_dij_destroy(&d);
    return 0;
}
