/*
 * tests/test_util.h - helpers shared by the cmocka test programs: closeness
 * of doubles (cmocka 1.1.5's assert_float_equal casts to float), the shared
 * data folder, and temporary folders.
 */
#ifndef IMRT_TEST_UTIL_H
#define IMRT_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* |a - b| <= abs_tol + rel_tol * max(|a|, |b|), else fail with both values. */
#define assert_close(a, b, rel_tol, abs_tol)                                                \
    do {                                                                                    \
        double imrt_a_ = (double)(a), imrt_b_ = (double)(b);                                \
        double imrt_tol_ = (abs_tol) + (rel_tol) * fmax(fabs(imrt_a_), fabs(imrt_b_));      \
        if (!(fabs(imrt_a_ - imrt_b_) <= imrt_tol_))                                        \
            fail_msg("%s = %.10g and %s = %.10g differ by %.3g (allowed %.3g)", #a, imrt_a_, \
                     #b, imrt_b_, fabs(imrt_a_ - imrt_b_), imrt_tol_);                      \
    } while (0)

/* lo <= v <= hi, else fail naming the range. */
#define assert_in_range_d(v, lo, hi)                                                     \
    do {                                                                                 \
        double imrt_v_ = (double)(v);                                                    \
        if (!(imrt_v_ >= (double)(lo) && imrt_v_ <= (double)(hi)))                       \
            fail_msg("%s = %.6g is outside [%.6g, %.6g]", #v, imrt_v_, (double)(lo),     \
                     (double)(hi));                                                      \
    } while (0)

/* Assert an imrt call succeeded, printing the library's message otherwise. */
#define assert_ok(expr)                                                                  \
    do {                                                                                 \
        int imrt_st_ = (int)(expr);                                                      \
        if (imrt_st_ != 0)                                                               \
            fail_msg("%s returned %d: %s", #expr, imrt_st_, imrt_last_error());          \
    } while (0)

/* The shared data folder: $IMRT_SHARED_DATA, else ../shared/data beside the
 * checkout (tests run from the repository root). NULL if it does not exist. */
static inline const char *imrt_test_shared_data(void)
{
    static char path[4096];
    const char *env = getenv("IMRT_SHARED_DATA");
    snprintf(path, sizeof path, "%s", env && *env ? env : "../shared/data");
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return path;
}

/* Skip the current test with a message when the shared data folder is absent. */
#define IMRT_REQUIRE_SHARED_DATA(var)                                                   \
    const char *var = imrt_test_shared_data();                                          \
    if (!var) {                                                                         \
        print_message("SKIP: ../shared/data does not exist (outside the project's CI)\n"); \
        skip();                                                                         \
    }

/* Make a fresh temporary folder; returns a static buffer. */
static inline const char *imrt_test_tmpdir(void)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "/tmp/imrt-test-XXXXXX");
    if (!mkdtemp(dir))
        fail_msg("mkdtemp failed");
    return dir;
}

/* Number of entries other than "." and ".." in a folder (staging folders and
 * temporary files included); -1 if it cannot be read. */
static inline int imrt_test_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

#endif /* IMRT_TEST_UTIL_H */
