/*
 * tests/test_fuzz_corpus.c - replays the fuzzing corpus (tests/fuzz/corpus/:
 * seeds and every input that once crashed a reader) through the three
 * readers in the ordinary test build, so that the regressions are checked by
 * `make test` and `make asan` too, not only by the clang fuzzers. Each input
 * must either load and keep the reader's documented invariants, or fail with
 * a negative status, a message and no output; never crash.
 * Specs are parsed on a 5 mm grid (the grid option) to stay fast.
 */
#include "test_util.h"

#include "imrt.h"

#include <dirent.h>
#include <zlib.h>

#define CORPUS "tests/fuzz/corpus"

typedef void (*replay_fn)(const char *path, const char *tmpdir);

/* Call fn on every regular file of CORPUS/sub; returns how many. */
static int replay_dir(const char *sub, replay_fn fn, const char *tmpdir)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", CORPUS, sub);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s (tests run from the repository root)", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        fn(path, tmpdir);
        n++;
    }
    closedir(d);
    return n;
}

static void assert_failed_cleanly(imrt_status st, const char *path)
{
    if (st >= 0)
        fail_msg("%s: status %d", path, st);
    if (imrt_last_error()[0] == '\0')
        fail_msg("%s: failed (%d) without a message", path, st);
}

static void assert_phantom_sane(const imrt_phantom *p, const char *path)
{
    const int64_t nvox = imrt_grid_nvox(&p->grid);
    assert_true(nvox >= 1);
    for (int64_t v = 0; v < nvox; v++)
        if (!(isfinite(p->density[v]) && p->density[v] >= 0.0f))
            fail_msg("%s: density[%lld] = %g", path, (long long)v, (double)p->density[v]);
    for (int s = 0; s < p->nstructures; s++) {
        const imrt_structure *sd = &p->structures[s];
        int64_t n = 0;
        for (int64_t v = 0; v < nvox; v++)
            n += sd->mask[v] != 0;
        if (n != sd->count)
            fail_msg("%s: structure %s counts %lld voxels, its mask has %lld", path, sd->name,
                     (long long)sd->count, (long long)n);
        assert_int_equal(imrt_phantom_find(p, sd->name), s);
    }
}

static void replay_spec(const char *path, const char *tmpdir)
{
    char *text = NULL;
    size_t len = 0;
    assert_ok(imrt_io_read_file(path, &text, &len));
    imrt_spec_options opt = {.grid_mm = 5.0};
    imrt_phantom *p = NULL;
    imrt_plan *plan = NULL;
    imrt_spec_info *info = NULL;
    imrt_status st = imrt_spec_parse(text, len, path, tmpdir, &opt, &p, &plan, &info);
    if (st == IMRT_OK) {
        assert_non_null(p);
        assert_non_null(plan);
        assert_non_null(info);
        assert_int_equal(info->nstructures, p->nstructures);
        assert_phantom_sane(p, path);
    } else {
        assert_failed_cleanly(st, path);
        assert_null(p);
        assert_null(plan);
        assert_null(info);
    }
    imrt_phantom_destroy(&p);
    imrt_plan_destroy(&plan);
    imrt_spec_info_destroy(&info);
    imrt_free(text);
}

static void replay_matrad(const char *path, const char *tmpdir)
{
    (void)tmpdir;
    imrt_phantom *p = NULL;
    imrt_status st = imrt_matrad_import(path, NULL, &p);
    if (st == IMRT_OK) {
        assert_non_null(p);
        assert_phantom_sane(p, path);
    } else {
        assert_failed_cleanly(st, path);
        assert_null(p);
    }
    imrt_phantom_destroy(&p);
}

static void put32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* As tests/fuzz/fuzz_dij.c: a control byte (bit 0: fix the payload CRC,
 * bit 1: fix the header CRC), then the dij file. */
static void replay_dij(const char *path, const char *tmpdir)
{
    char *data = NULL;
    size_t len = 0;
    assert_ok(imrt_io_read_file(path, &data, &len));
    char file[512];
    snprintf(file, sizeof file, "%s/replay.dij", tmpdir);
    if (len >= 1) {
        unsigned char *b = (unsigned char *)data + 1;
        const size_t n = len - 1;
        if (n >= 124 && (data[0] & 1))
            put32(b + 116, (uint32_t)crc32(0, b + 124, (uInt)(n - 124)));
        if (n >= 124 && (data[0] & 2))
            put32(b + 120, (uint32_t)crc32(0, b, 120));
        FILE *f = fopen(file, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
        imrt_dij *d = NULL;
        imrt_status st = imrt_dij_load(file, 256u << 20, &d);
        if (st == IMRT_OK) {
            assert_non_null(d);
            assert_ok(imrt_dij_validate(d));
        } else {
            assert_failed_cleanly(st, path);
            assert_null(d);
        }
        imrt_dij_destroy(&d);
        unlink(file);
    }
    imrt_free(data);
}

static void test_spec_corpus(void **state)
{
    (void)state;
    /* the import seed names ct.mat in the spec's folder: give it one */
    const char *dir = imrt_test_tmpdir();
    char *mat = NULL, ct[512];
    size_t len = 0;
    assert_ok(imrt_io_read_file(CORPUS "/matrad/seed_small_z.mat", &mat, &len));
    snprintf(ct, sizeof ct, "%s/ct.mat", dir);
    assert_ok(imrt_io_write_file(ct, mat, len));
    imrt_free(mat);
    assert_true(replay_dir("spec", replay_spec, dir) >= 10);
    unlink(ct);
    rmdir(dir);
}

static void test_matrad_corpus(void **state)
{
    (void)state;
    assert_true(replay_dir("matrad", replay_matrad, NULL) >= 4);
}

static void test_dij_corpus(void **state)
{
    (void)state;
    const char *dir = imrt_test_tmpdir();
    assert_true(replay_dir("dij", replay_dij, dir) >= 3);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_corpus),
        cmocka_unit_test(test_matrad_corpus),
        cmocka_unit_test(test_dij_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
