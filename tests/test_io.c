/*
 * tests/test_io.c - atomic output: the staging folder appears under its
 * final name only at commit, refusal of existing folders, replacement with
 * force, clean-up of failed runs, single-file atomic writes, and error
 * messages that name the path and the system's reason (a file-size limit
 * stands in for a full disk; a read-only folder when not running as root).
 */
#include "imrt/io.h"

#include "imrt/alloc.h"

#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void rm_rf(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static void test_outdir_appears_only_at_commit(void **state)
{
    (void)state;
    char parent[256], dir[300], file[IMRT_PATH_MAX], final_file[400], marker[400];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/run1", parent);
    imrt_outdir *o = NULL;
    assert_ok(imrt_outdir_open(dir, 0, &o));
    assert_false(exists(dir));
    assert_true(exists(imrt_outdir_staging(o)));
    assert_string_equal(imrt_outdir_final(o), dir);
    assert_ok(imrt_outdir_path(o, "dose.txt", file, sizeof file));
    assert_ok(imrt_io_write_file(file, "12.5\n", 5));
    assert_false(exists(dir)); /* nothing under the final name before the commit */
    assert_int_equal(imrt_test_count_entries(parent), 1);
    assert_ok(imrt_outdir_commit(o));
    imrt_outdir_destroy(&o);
    assert_null(o);
    snprintf(final_file, sizeof final_file, "%s/dose.txt", dir);
    snprintf(marker, sizeof marker, "%s/%s", dir, IMRT_OUTDIR_MARKER);
    char buf[64];
    read_text(final_file, buf, sizeof buf);
    assert_string_equal(buf, "12.5\n");
    assert_true(exists(marker));
    assert_int_equal(imrt_test_count_entries(parent), 1); /* only run1: no staging, no temp files */
    assert_int_equal(imrt_test_count_entries(dir), 2);    /* dose.txt + marker */
    rm_rf(parent);
}

static void test_outdir_refuses_existing_without_force(void **state)
{
    (void)state;
    char parent[256], dir[300], old[400];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/out", parent);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(old, sizeof old, "%s/keep.txt", dir);
    write_text(old, "user data");
    imrt_outdir *o = NULL;
    assert_int_equal(imrt_outdir_open(dir, 0, &o), IMRT_ERR_EXISTS);
    assert_null(o);
    assert_non_null(strstr(imrt_last_error(), dir));
    assert_non_null(strstr(imrt_last_error(), "--force"));
    /* not an imrt folder and not empty: force does not delete it either */
    assert_int_equal(imrt_outdir_open(dir, 1, &o), IMRT_ERR_EXISTS);
    assert_non_null(strstr(imrt_last_error(), IMRT_OUTDIR_MARKER));
    assert_true(exists(old));
    /* a plain file of that name is never replaced */
    char plain[300];
    snprintf(plain, sizeof plain, "%s/afile", parent);
    write_text(plain, "x");
    assert_int_equal(imrt_outdir_open(plain, 1, &o), IMRT_ERR_EXISTS);
    assert_non_null(strstr(imrt_last_error(), "not a folder"));
    assert_int_equal(imrt_test_count_entries(parent), 2);
    rm_rf(parent);
}

static void test_outdir_force_replaces_at_commit(void **state)
{
    (void)state;
    char parent[256], dir[300], path[IMRT_PATH_MAX], check[400];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/out", parent);
    /* first run */
    imrt_outdir *o = NULL;
    assert_ok(imrt_outdir_open(dir, 0, &o));
    assert_ok(imrt_outdir_path(o, "old.txt", path, sizeof path));
    assert_ok(imrt_io_write_file(path, "old", 3));
    assert_ok(imrt_outdir_commit(o));
    imrt_outdir_destroy(&o);
    /* second run with force: the old folder stays complete until the commit */
    assert_ok(imrt_outdir_open(dir, 1, &o));
    assert_ok(imrt_outdir_path(o, "new.txt", path, sizeof path));
    assert_ok(imrt_io_write_file(path, "new", 3));
    snprintf(check, sizeof check, "%s/old.txt", dir);
    assert_true(exists(check));
    assert_ok(imrt_outdir_commit(o));
    imrt_outdir_destroy(&o);
    assert_false(exists(check));
    snprintf(check, sizeof check, "%s/new.txt", dir);
    assert_true(exists(check));
    assert_int_equal(imrt_test_count_entries(parent), 1); /* the old folder is gone too */
    /* an empty existing folder may be replaced with force */
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", parent);
    assert_int_equal(mkdir(empty, 0777), 0);
    assert_ok(imrt_outdir_open(empty, 1, &o));
    assert_ok(imrt_outdir_commit(o));
    imrt_outdir_destroy(&o);
    assert_int_equal(imrt_test_count_entries(empty), 1);
    rm_rf(parent);
}

static void test_failed_run_leaves_nothing(void **state)
{
    (void)state;
    char parent[256], dir[300], path[IMRT_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/out", parent);
    imrt_outdir *o = NULL;
    assert_ok(imrt_outdir_open(dir, 0, &o));
    assert_ok(imrt_outdir_path(o, "a.bin", path, sizeof path));
    assert_ok(imrt_io_write_file(path, "abc", 3));
    /* a file left half-written by a writer that failed */
    imrt_atomic_file *f = NULL;
    assert_ok(imrt_outdir_path(o, "b.bin", path, sizeof path));
    assert_ok(imrt_atomic_open(path, &f));
    fputs("partial", imrt_atomic_stream(f));
    imrt_atomic_abort(&f);
    assert_null(f);
    imrt_outdir_destroy(&o); /* the run fails: no commit */
    assert_false(exists(dir));
    assert_int_equal(imrt_test_count_entries(parent), 0);

    /* a failed run with force leaves the previous output untouched */
    assert_ok(imrt_outdir_open(dir, 0, &o));
    assert_ok(imrt_outdir_commit(o));
    imrt_outdir_destroy(&o);
    assert_ok(imrt_outdir_open(dir, 1, &o));
    assert_ok(imrt_outdir_path(o, "c.bin", path, sizeof path));
    assert_ok(imrt_io_write_file(path, "c", 1));
    imrt_outdir_destroy(&o);
    assert_int_equal(imrt_test_count_entries(parent), 1);
    assert_int_equal(imrt_test_count_entries(dir), 1); /* just the marker of the first run */

    /* the final name appearing during a run without force is not overwritten */
    rm_rf(dir);
    assert_ok(imrt_outdir_open(dir, 0, &o));
    assert_int_equal(mkdir(dir, 0777), 0);
    assert_int_equal(imrt_outdir_commit(o), IMRT_ERR_EXISTS);
    imrt_outdir_destroy(&o);
    assert_int_equal(imrt_test_count_entries(parent), 1);
    assert_int_equal(imrt_test_count_entries(dir), 0);
    rm_rf(parent);
}

static void test_outdir_errors_name_path_and_reason(void **state)
{
    (void)state;
    char parent[256], dir[400], file[300];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    imrt_outdir *o = NULL;
    /* parent missing */
    snprintf(dir, sizeof dir, "%s/missing/out", parent);
    assert_int_equal(imrt_outdir_open(dir, 0, &o), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "missing"));
    assert_non_null(strstr(imrt_last_error(), strerror(ENOENT)));
    /* parent is a file */
    snprintf(file, sizeof file, "%s/plain", parent);
    write_text(file, "x");
    snprintf(dir, sizeof dir, "%s/out", file);
    assert_int_equal(imrt_outdir_open(dir, 0, &o), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), strerror(ENOTDIR)));
    /* bad arguments */
    assert_int_equal(imrt_outdir_open("", 0, &o), IMRT_ERR_ARG);
    assert_int_equal(imrt_outdir_open("/", 0, &o), IMRT_ERR_ARG);
    assert_int_equal(imrt_outdir_open("..", 0, &o), IMRT_ERR_ARG);
    assert_int_equal(imrt_outdir_open(NULL, 0, &o), IMRT_ERR_ARG);
    /* read-only parent (root bypasses permissions, so only as a user) */
    if (geteuid() != 0) {
        char ro[300];
        snprintf(ro, sizeof ro, "%s/ro", parent);
        assert_int_equal(mkdir(ro, 0555), 0);
        snprintf(dir, sizeof dir, "%s/out", ro);
        assert_int_equal(imrt_outdir_open(dir, 0, &o), IMRT_ERR_IO);
        assert_non_null(strstr(imrt_last_error(), ro));
        assert_non_null(strstr(imrt_last_error(), strerror(EACCES)));
        char fpath[400];
        snprintf(fpath, sizeof fpath, "%s/f.txt", ro);
        assert_int_equal(imrt_io_write_file(fpath, "x", 1), IMRT_ERR_IO);
        assert_non_null(strstr(imrt_last_error(), strerror(EACCES)));
        chmod(ro, 0755);
    } else {
        print_message("SKIP: read-only folder check (running as root, permissions are bypassed)\n");
    }
    /* names inside the folder */
    snprintf(dir, sizeof dir, "%s/ok", parent);
    assert_ok(imrt_outdir_open(dir, 0, &o));
    char buf[IMRT_PATH_MAX];
    assert_int_equal(imrt_outdir_path(o, "a/b", buf, sizeof buf), IMRT_ERR_ARG);
    assert_int_equal(imrt_outdir_path(o, "..", buf, sizeof buf), IMRT_ERR_ARG);
    assert_int_equal(imrt_outdir_path(o, "", buf, sizeof buf), IMRT_ERR_ARG);
    char tiny[8];
    assert_int_equal(imrt_outdir_path(o, "dose.nii.gz", tiny, sizeof tiny), IMRT_ERR_ARG);
    imrt_outdir_destroy(&o);
    imrt_outdir_destroy(&o); /* NULL is accepted */
    rm_rf(parent);
}

static void test_atomic_file_replaces_or_keeps(void **state)
{
    (void)state;
    char parent[256], path[300], buf[64];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(path, sizeof path, "%s/table.csv", parent);
    write_text(path, "old\n");
    imrt_atomic_file *f = NULL;
    assert_ok(imrt_atomic_open(path, &f));
    FILE *fp = imrt_atomic_stream(f);
    assert_non_null(fp);
    fputs("new\n", fp);
    read_text(path, buf, sizeof buf);
    assert_string_equal(buf, "old\n"); /* untouched until the commit */
    assert_int_equal(imrt_test_count_entries(parent), 2);
    imrt_atomic_abort(&f);
    read_text(path, buf, sizeof buf);
    assert_string_equal(buf, "old\n");
    assert_int_equal(imrt_test_count_entries(parent), 1);
    assert_ok(imrt_atomic_open(path, &f));
    fputs("new\n", imrt_atomic_stream(f));
    assert_ok(imrt_atomic_commit(&f));
    assert_null(f);
    read_text(path, buf, sizeof buf);
    assert_string_equal(buf, "new\n");
    assert_int_equal(imrt_test_count_entries(parent), 1);
    /* permissions follow the umask like an ordinary new file */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    mode_t mask = umask(022);
    umask(mask);
    assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
    /* round trip through imrt_io_read_file */
    char *data = NULL;
    size_t size = 0;
    assert_ok(imrt_io_read_file(path, &data, &size));
    assert_int_equal(size, 4);
    assert_string_equal(data, "new\n");
    imrt_free(data);
    assert_int_equal(imrt_io_read_file(parent, &data, &size), IMRT_ERR_IO);
    /* a folder in the way */
    assert_int_equal(imrt_io_write_file(parent, "x", 1), IMRT_ERR_IO);
    assert_non_null(strstr(imrt_last_error(), "folder"));
    rm_rf(parent);
}

static void test_write_failure_is_reported_and_cleaned(void **state)
{
    (void)state;
    /* A file-size limit makes write() fail with EFBIG past 4 KiB, like a full
     * disk would with ENOSPC: the error must name the path and the reason,
     * the previous file must survive and no temporary file may remain. */
    char parent[256], path[300], buf[64];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(path, sizeof path, "%s/big.bin", parent);
    write_text(path, "previous");
    static char big[1 << 16];
    memset(big, 'x', sizeof big);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    imrt_status st = imrt_io_write_file(path, big, sizeof big);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", imrt_last_error());
    /* and through a stdio stream, where the error surfaces at the commit */
    imrt_atomic_file *f = NULL;
    imrt_status st_open = imrt_atomic_open(path, &f);
    imrt_status st2 = IMRT_ERR_INTERNAL;
    char msg2[1024] = "";
    if (st_open == IMRT_OK) {
        fwrite(big, 1, sizeof big, imrt_atomic_stream(f));
        st2 = imrt_atomic_commit(&f);
        snprintf(msg2, sizeof msg2, "%s", imrt_last_error());
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, IMRT_ERR_IO);
    assert_non_null(strstr(msg1, path));
    assert_non_null(strstr(msg1, strerror(EFBIG)));
    assert_ok(st_open);
    assert_int_equal(st2, IMRT_ERR_IO);
    assert_non_null(strstr(msg2, path));
    assert_non_null(strstr(msg2, strerror(EFBIG)));
    read_text(path, buf, sizeof buf);
    assert_string_equal(buf, "previous");
    assert_int_equal(imrt_test_count_entries(parent), 1);
    rm_rf(parent);
}

static void test_outdir_allocation_failures_clean_up(void **state)
{
    (void)state;
    char parent[256], dir[300];
    snprintf(parent, sizeof parent, "%s", imrt_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/out", parent);
    int failures = 0;
    for (long n = 1; n < 20; n++) {
        imrt_outdir *o = NULL;
        imrt_alloc_fail_after(n);
        imrt_status st = imrt_outdir_open(dir, 0, &o);
        imrt_alloc_fail_after(0);
        if (st != IMRT_OK) {
            assert_int_equal(st, IMRT_ERR_NOMEM);
            assert_null(o);
            assert_int_equal(imrt_test_count_entries(parent), 0);
            failures++;
            continue;
        }
        imrt_outdir_destroy(&o);
        assert_int_equal(imrt_test_count_entries(parent), 0);
        break;
    }
    assert_true(failures >= 1);
    rm_rf(parent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outdir_appears_only_at_commit),
        cmocka_unit_test(test_outdir_refuses_existing_without_force),
        cmocka_unit_test(test_outdir_force_replaces_at_commit),
        cmocka_unit_test(test_failed_run_leaves_nothing),
        cmocka_unit_test(test_outdir_errors_name_path_and_reason),
        cmocka_unit_test(test_atomic_file_replaces_or_keeps),
        cmocka_unit_test(test_write_failure_is_reported_and_cleaned),
        cmocka_unit_test(test_outdir_allocation_failures_clean_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
