/*
 * tests/test_cli.c - the imrt command as a user runs it: version, help,
 * usage errors and their exit codes. The binary comes from $IMRT (set by
 * tests/run.sh), else build/imrt.
 */
#include "imrt.h"

#include "test_util.h"

#include <sys/wait.h>

static const char *imrt_bin(void)
{
    const char *b = getenv("IMRT");
    return b && *b ? b : "build/imrt";
}

/* Run `imrt ARGS`, capture stdout+stderr into out (truncated), return exit code. */
static int run_imrt(const char *args, char *out, size_t outsz)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", imrt_bin(), args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, outsz - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_version(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_imrt("--version", out, sizeof out), 0);
    char expect[64];
    snprintf(expect, sizeof expect, "imrt %s\n", imrt_version());
    assert_string_equal(out, expect);
}

static void test_help_lists_every_command(void **state)
{
    (void)state;
    char out[8192];
    assert_int_equal(run_imrt("--help", out, sizeof out), 0);
    const char *cmds[] = {"plan", "compare", "phantom", "dij", "optimize", "dose", "dvh", "gamma",
                          "bench"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", cmds[i]);
        if (!strstr(out, line))
            fail_msg("help does not list '%s'", cmds[i]);
        char args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        char sub[4096];
        assert_int_equal(run_imrt(args, sub, sizeof sub), 0);
        assert_non_null(strstr(sub, "usage: imrt"));
    }
}

static void test_usage_errors_exit_2_with_one_line(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_imrt("frobnicate", out, sizeof out), 2);
    assert_string_equal(out, "imrt: unknown command 'frobnicate'; see 'imrt --help'\n");
    assert_int_equal(run_imrt("--frobnicate", out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown option '--frobnicate'"));
    assert_int_equal(run_imrt("", out, sizeof out), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help_lists_every_command),
        cmocka_unit_test(test_usage_errors_exit_2_with_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
