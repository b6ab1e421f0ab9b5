/*
 * tests/fuzz/fuzz_matrad.c - libFuzzer harness for the matRad MAT importer
 * (engine/matrad.c): the input is a MAT file held in a memfd (libmatio and
 * the importer's own structural check open files by name), imported with
 * the default HU table; an imported phantom is checked against the
 * invariants imrt/phantom.h promises.
 */
#define _GNU_SOURCE
#include "imrt.h"

#include "fuzz_util.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_memfile file = {-1, ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_memfile_set(&file, data, size) != 0)
        abort();
    imrt_phantom *p = NULL;
    imrt_status st = imrt_matrad_import(file.path, NULL, &p);
    if (getenv("IMRT_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_matrad: %s\n", st == IMRT_OK ? "loaded" : imrt_last_error());
    if (st != IMRT_OK) {
        /* a failure leaves no phantom and a message that starts with the file name */
        FUZZ_CHECK(st < 0 && !p);
        FUZZ_CHECK(strncmp(imrt_last_error(), file.path, strlen(file.path)) == 0);
        return 0;
    }
    FUZZ_CHECK(p != NULL);
    const int64_t nvox = imrt_grid_nvox(&p->grid);
    FUZZ_CHECK(nvox >= 1);
    for (int64_t v = 0; v < nvox; v++)
        FUZZ_CHECK(isfinite(p->density[v]) && p->density[v] >= 0.0f);
    FUZZ_CHECK(p->nstructures >= 0 && p->nstructures <= IMRT_MAX_STRUCTURES);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *sd = &p->structures[s];
        FUZZ_CHECK(memchr(sd->name, '\0', sizeof sd->name) != NULL && sd->name[0]);
        FUZZ_CHECK(imrt_phantom_find(p, sd->name) == s);
        FUZZ_CHECK(sd->priority >= 1);
        int64_t n = 0;
        for (int64_t v = 0; v < nvox; v++) {
            FUZZ_CHECK(sd->mask[v] <= 1);
            n += sd->mask[v];
        }
        FUZZ_CHECK(n == sd->count);
    }
    imrt_phantom_destroy(&p);
    return 0;
}
