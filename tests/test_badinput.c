/*
 * tests/test_badinput.c - hostile input and resource limits through the
 * real imrt command: every case of tests/bad/cases.tsv is run with
 * fork/exec, and must exit with its expected code (no signal), print its
 * message fragments on stderr and leave no output behind. Also: allocation
 * failure injected at every point of a small end-to-end plan (in-process
 * and through the command), which must fail cleanly with a resource error.
 * docs/robustness.md describes the case file and how to add a case.
 */
#define _XOPEN_SOURCE 700 /* nftw, realpath */
#define _DEFAULT_SOURCE
#include "imrt.h"

#include "test_mat.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <matio.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#define BAD_DIR "tests/bad"
#define MAX_ARGS 32
#define SNAP_MAX 16384

/* Path buffers: globals are shorter than the paths built from them. */
#define G_PATH 1024
#define P1 1536 /* case folder */
#define P2 2048 /* its in/ and work/ folders */
static char g_root[G_PATH]; /* repository root (absolute) */
static char g_bin[PATH_MAX]; /* the imrt binary (absolute) */
static char g_tmp[G_PATH];  /* this program's scratch folder */
static char g_dij[P1];      /* a good dij of tests/bad/base.json */
static char g_data[G_PATH]; /* ../shared/data (absolute), "" if absent */

/* ---- small file helpers ----------------------------------------------------- */

static int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *g = realloc(buf, 2 * cap + 1);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        if (n)
            *n = len;
    }
    return buf;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    chmod(p, 0700);
    return remove(p);
}

static void rm_tree(const char *path)
{
    chmod(path, 0700);
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A listing of every entry under dir (name, type, size, mtime), sorted, so
 * that a run that created, removed or changed anything is caught. */
static int snap_entry_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char *items[512];
    int n;
} snapshot;

static void snap_walk(snapshot *s, const char *dir, const char *rel)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[PATH_MAX], r[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0)
            continue;
        char line[PATH_MAX + 96];
        snprintf(line, sizeof line, "%s %o %lld %lld.%09ld", r, (unsigned)sb.st_mode,
                 (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
        if (s->n < 512)
            s->items[s->n++] = strdup(line);
        if (S_ISDIR(sb.st_mode))
            snap_walk(s, p, r);
    }
    closedir(d);
}

static void snap_take(snapshot *s, const char *dir)
{
    s->n = 0;
    snap_walk(s, dir, "");
    qsort(s->items, (size_t)s->n, sizeof s->items[0], snap_entry_cmp);
}

static void snap_free(snapshot *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->items[i]);
    s->n = 0;
}

/* First difference between two snapshots, "" if none. */
static void snap_diff(const snapshot *a, const snapshot *b, char *out, size_t outsz)
{
    out[0] = '\0';
    int i = 0, j = 0;
    while (i < a->n || j < b->n) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->items[i], b->items[j]);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            snprintf(out, outsz, "gone or changed: %s", a->items[i]);
            return;
        } else {
            snprintf(out, outsz, "left behind: %s", b->items[j]);
            return;
        }
    }
}

/* ---- running the command ------------------------------------------------------ */

typedef struct {
    long fsize;    /* RLIMIT_FSIZE in bytes (0 = none) */
    int nobody;    /* drop to uid/gid 65534 when root (read-only folder cases) */
    long alloc_fail; /* IMRT_TEST_ALLOC_FAIL for the child (0 = none) */
} run_setup;

/* Run imrt with argv (argv[0] ignored) in folder cwd; stderr into errbuf.
 * Returns the wait status. */
static int run_cmd(char *const *args, int nargs, const char *cwd, const run_setup *su,
                   char *errbuf, size_t errsz)
{
    char errpath[PATH_MAX];
    snprintf(errpath, sizeof errpath, "%.1020s/stderr.txt", g_tmp);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[MAX_ARGS + 2];
        argv[0] = g_bin;
        for (int i = 0; i < nargs; i++)
            argv[i + 1] = args[i];
        argv[nargs + 1] = NULL;
        int fe = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fo = open("/dev/null", O_WRONLY);
        if (fe < 0 || fo < 0 || chdir(cwd) != 0)
            _exit(120);
        dup2(fo, 1);
        dup2(fe, 2);
        if (su && su->fsize > 0) {
            struct rlimit rl = {(rlim_t)su->fsize, (rlim_t)su->fsize};
            signal(SIGXFSZ, SIG_IGN); /* writes beyond the limit fail with EFBIG */
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        /* under ASan: fontconfig's process-long cache is not a leak of ours,
         * and the statistics of that suppression are not the program's
         * output (the pictures are drawn beside the volumes, so fontconfig
         * may be loaded when a volume write fails) */
        char supp[PATH_MAX + 96];
        snprintf(supp, sizeof supp, "suppressions=%.1020s/%s/lsan.supp:print_suppressions=0",
                 g_root, BAD_DIR);
        setenv("LSAN_OPTIONS", supp, 1);
        if (su && su->alloc_fail > 0) {
            char v[32];
            snprintf(v, sizeof v, "%ld", su->alloc_fail);
            setenv("IMRT_TEST_ALLOC_FAIL", v, 1);
        }
        if (su && su->nobody && geteuid() == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(121);
        }
        execv(g_bin, argv);
        _exit(122);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    size_t n = 0;
    char *e = read_all(errpath, &n);
    snprintf(errbuf, errsz, "%s", e ? e : "");
    free(e);
    return ws;
}

/* ---- the case file ---------------------------------------------------------------- */

typedef struct {
    int line;
    char name[64];
    int exit_code;
    char frags[1024];
    char input[1024];
    char setup[128];
    char args[1024];
} bad_case;

/* Split s at tabs into at most n fields (in place). */
static int split_tabs(char *s, char **f, int n)
{
    int k = 0;
    f[k++] = s;
    for (char *p = s; *p && k < n; p++)
        if (*p == '\t') {
            *p = '\0';
            f[k++] = p + 1;
        }
    return k;
}

static int load_cases(bad_case **out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%.1020s/%s/cases.tsv", g_root, BAD_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int cap = 256, n = 0, lineno = 0;
    bad_case *c = calloc((size_t)cap, sizeof *c);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char *fld[6];
        if (split_tabs(line, fld, 6) != 6)
            fail_msg("%s:%d: expected 6 tab-separated fields", path, lineno);
        if (n == cap) {
            cap *= 2;
            c = realloc(c, (size_t)cap * sizeof *c);
        }
        bad_case *b = &c[n++];
        memset(b, 0, sizeof *b);
        b->line = lineno;
        snprintf(b->name, sizeof b->name, "%s", fld[0]);
        b->exit_code = atoi(fld[1]);
        snprintf(b->frags, sizeof b->frags, "%s", fld[2]);
        snprintf(b->input, sizeof b->input, "%s", fld[3]);
        snprintf(b->setup, sizeof b->setup, "%s", fld[4]);
        snprintf(b->args, sizeof b->args, "%s", fld[5]);
        for (int i = 0; i < n - 1; i++)
            if (!strcmp(c[i].name, b->name))
                fail_msg("%s:%d: duplicate case name '%s'", path, lineno, b->name);
    }
    fclose(f);
    *out = c;
    return n;
}

/* Replace every occurrence of key in s (size sz) by val. */
static void replace_all(char *s, size_t sz, const char *key, const char *val)
{
    size_t kl = strlen(key), vl = strlen(val);
    char *p;
    size_t from = 0;
    while ((p = strstr(s + from, key)) != NULL) {
        size_t pre = (size_t)(p - s), rest = strlen(p + kl);
        if (pre + vl + rest + 1 > sz)
            fail_msg("'%s' too long after replacing %s", s, key);
        memmove(s + pre + vl, p + kl, rest + 1);
        memcpy(s + pre, val, vl);
        from = pre + vl;
    }
}

/* Unescape \n, \t, \\ in place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* ---- input generators ---------------------------------------------------------------- */

/* A matRad file written with libmatio: cubeHU [ny nx nz] = [3 4 2] (24
 * voxels) and one structure "Marker" of kind `type` with `nind` indices. */
static int write_small_mat(const char *path, const double *ind, size_t nind, const char *type)
{
    mat_t *m = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    if (!m)
        return -1;
    double cube[24];
    for (int q = 0; q < 24; q++)
        cube[q] = 0.0;
    matvar_t *ct = imrt_test_mat_ct(cube);
    int rc = Mat_VarWrite(m, ct, MAT_COMPRESSION_NONE);
    Mat_VarFree(ct);
    matvar_t *cst = imrt_test_mat_cst(type, ind, nind);
    rc |= Mat_VarWrite(m, cst, MAT_COMPRESSION_NONE);
    Mat_VarFree(cst);
    Mat_Close(m);
    return rc;
}

/* A copy of src with the first `keep` bytes (keep < 0: all but -keep), and
 * the byte at `flip` (if >= 0; < -1: from the end) inverted. */
static int derive_file(const char *src, const char *dst, long keep, long flip)
{
    size_t n = 0;
    char *b = read_all(src, &n);
    if (!b)
        return -1;
    size_t k = n;
    if (keep >= 0 && (size_t)keep < n)
        k = (size_t)keep;
    else if (keep < 0 && (size_t)(-keep) < n)
        k = n - (size_t)(-keep);
    long at = flip >= 0 ? flip : flip < -1 ? (long)n + flip + 1 : -1;
    if (at >= 0 && (size_t)at < k)
        b[at] = (char)~b[at];
    int rc = write_bytes(dst, b, k);
    free(b);
    return rc;
}

/* The spec that imports `mat` (a file name in the same folder). */
static int write_import_spec(const char *path, const char *mat)
{
    char text[512];
    int n = snprintf(text, sizeof text,
                     "{\n  \"phantom\": {\"import\": \"matrad\", \"file\": \"%s\"}\n}\n", mat);
    return write_bytes(path, text, (size_t)n);
}

/* Materialise a case's input as inpath (or leave inpath as given); returns
 * 0, 1 to skip (shared data absent), -1 on failure. */
static int make_input(const bad_case *c, const char *indir, char *inpath, size_t insz)
{
    char spec[PATH_MAX];
    snprintf(inpath, insz, "%.2040s/%.60s.json", indir, c->name);
    if (!strcmp(c->input, "-")) {
        inpath[0] = '\0';
        return 0;
    }
    if (!strncmp(c->input, "file:", 5)) {
        snprintf(inpath, insz, "%.1020s/%s/%.1000s", g_root, BAD_DIR, c->input + 5);
        return 0;
    }
    if (!strncmp(c->input, "sub:", 4)) {
        /* edits of base.json: OLD=>NEW pairs separated by " ;; " */
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
        size_t n = 0;
        char *text = read_all(base, &n);
        if (!text)
            return -1;
        char edits[1024];
        snprintf(edits, sizeof edits, "%s", c->input + 4);
        char *save = NULL;
        size_t cap = n + 4096;
        char *out = malloc(cap);
        snprintf(out, cap, "%s", text);
        free(text);
        for (char *e = strtok_r(edits, ";;", &save); e; e = strtok_r(NULL, ";;", &save)) {
            while (*e == ' ')
                e++;
            char *arrow = strstr(e, "=>");
            if (!arrow)
                break; /* caught below: the file then equals base.json */
            *arrow = '\0';
            char *old = e, *new = arrow + 2;
            size_t ol = strlen(old);
            while (ol > 0 && old[ol - 1] == ' ')
                old[--ol] = '\0';
            while (*new == ' ')
                new++;
            unescape(old);
            unescape(new);
            char *at = strstr(out, old);
            if (!at) {
                printf("case %s: '%s' is not in tests/bad/base.json\n", c->name, old);
                free(out);
                return -1;
            }
            size_t pre = (size_t)(at - out);
            char *tmp = malloc(cap);
            snprintf(tmp, cap, "%.*s%s%s", (int)pre, out, new, at + strlen(old));
            free(out);
            out = tmp;
        }
        int rc = write_bytes(inpath, out, strlen(out));
        free(out);
        return rc;
    }
    if (!strncmp(c->input, "text:", 5)) {
        char t[1024];
        snprintf(t, sizeof t, "%s", c->input + 5);
        unescape(t);
        return write_bytes(inpath, t, strlen(t));
    }
    if (strncmp(c->input, "gen:", 4) != 0)
        fail_msg("case %s: unknown input '%s'", c->name, c->input);
    const char *g = c->input + 4;
    char mat[PATH_MAX];
    snprintf(mat, sizeof mat, "%.2040s/ct.mat", indir);
    snprintf(spec, sizeof spec, "%s", inpath);
    long a = 0, b = -1;
    if (sscanf(g, "mat_trunc:%ld", &a) == 1 || sscanf(g, "mat_flip:%ld", &b) == 1) {
        if (!g_data[0])
            return 1;
        char src[PATH_MAX];
        snprintf(src, sizeof src, "%.1020s/BOXPHANTOM.mat", g_data);
        if (derive_file(src, mat, strncmp(g, "mat_flip", 8) ? a : LONG_MAX, b) != 0)
            return -1;
        return write_import_spec(spec, "ct.mat");
    }
    if (!strncmp(g, "mat_cst:", 8)) {
        /* mat_cst:TYPE:i1,i2,... (1-based indices into a 24-voxel cube) */
        char type[32];
        double ind[16];
        size_t nind = 0;
        const char *p = g + 8, *colon = strchr(p, ':');
        if (!colon)
            return -1;
        snprintf(type, sizeof type, "%.*s", (int)(colon - p), p);
        for (p = colon + 1; *p && nind < 16;) {
            char *end = NULL;
            ind[nind++] = strtod(p, &end);
            p = *end == ',' ? end + 1 : end;
            if (end == p && *p != ',')
                break;
        }
        if (write_small_mat(mat, ind, nind, type) != 0)
            return -1;
        return write_import_spec(spec, "ct.mat");
    }
    if (!strcmp(g, "mat_empty"))
        return write_bytes(mat, "", 0) || write_import_spec(spec, "ct.mat");
    if (!strcmp(g, "mat_text"))
        return write_bytes(mat, "not a MAT file\n", 15) || write_import_spec(spec, "ct.mat");
    if (sscanf(g, "dij_trunc:%ld", &a) == 1 || sscanf(g, "dij_flip:%ld", &b) == 1) {
        snprintf(inpath, insz, "%.2040s/%.60s.dij", indir, c->name);
        return derive_file(g_dij, inpath, strncmp(g, "dij_flip", 8) ? a : LONG_MAX, b);
    }
    if (sscanf(g, "big:%ld", &a) == 1) {
        /* a valid spec padded with white space to a bytes */
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
        size_t n = 0;
        char *text = read_all(base, &n);
        if (!text || (long)n > a)
            return -1;
        char *big = malloc((size_t)a);
        memcpy(big, text, n);
        memset(big + n, ' ', (size_t)a - n);
        free(text);
        int rc = write_bytes(inpath, big, (size_t)a);
        free(big);
        return rc;
    }
    if (sscanf(g, "deep:%ld", &a) == 1) {
        /* a structure expression nested a levels deep */
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
        char *text = read_all(base, NULL);
        if (!text)
            return -1;
        const char *key = "{\"name\": \"Rod\", \"kind\": \"oar\", \"shape\": \"rod\"}";
        char *at = strstr(text, key);
        if (!at) {
            free(text);
            return -1;
        }
        size_t cap = strlen(text) + 64 * (size_t)a + 256;
        char *out = malloc(cap);
        size_t w = (size_t)snprintf(out, cap, "%.*s{\"name\": \"Rod\", \"kind\": \"oar\", ",
                                    (int)(at - text), text);
        for (long q = 0; q < a; q++)
            w += (size_t)snprintf(out + w, cap - w, "\"union\": [{");
        w += (size_t)snprintf(out + w, cap - w, "\"shape\": \"rod\"");
        for (long q = 0; q < a; q++)
            w += (size_t)snprintf(out + w, cap - w, "}]");
        snprintf(out + w, cap - w, "}%s", at + strlen(key));
        free(text);
        int rc = write_bytes(inpath, out, strlen(out));
        free(out);
        return rc;
    }
    if (!strcmp(g, "binary")) {
        unsigned char junk[256];
        for (int q = 0; q < 256; q++)
            junk[q] = (unsigned char)(q * 37 + 11);
        return write_bytes(inpath, junk, sizeof junk);
    }
    fail_msg("case %s: unknown generator '%s'", c->name, g);
    return -1;
}

/* Does `text` contain `pat`, where '#' in pat matches one or more digits? */
static int match_at(const char *t, const char *p)
{
    while (*p) {
        if (*p == '#') {
            if (*t < '0' || *t > '9')
                return 0;
            while (*t >= '0' && *t <= '9')
                t++;
            p++;
        } else if (*t++ != *p++) {
            return 0;
        }
    }
    return 1;
}

static int contains(const char *text, const char *pat)
{
    for (const char *t = text; *t; t++)
        if (match_at(t, pat))
            return 1;
    return 0;
}

/* Run one case; returns NULL if it passes, else a static failure message. */
static const char *run_case(const bad_case *c, int *skipped)
{
    static char why[16384];
    char dir[P1], indir[P2], work[P2], out[PATH_MAX], inpath[PATH_MAX];
    *skipped = 0;
    snprintf(dir, sizeof dir, "%.1020s/%.60s", g_tmp, c->name);
    rm_tree(dir);
    snprintf(indir, sizeof indir, "%.1530s/in", dir);
    snprintf(work, sizeof work, "%.1530s/work", dir);
    snprintf(out, sizeof out, "%.2040s/out", work);
    if (mkdir(dir, 0755) || mkdir(indir, 0755) || mkdir(work, 0755))
        return "cannot create the case folders";
    int mk = make_input(c, indir, inpath, sizeof inpath);
    if (mk == 1) {
        *skipped = 1;
        return NULL;
    }
    if (mk != 0)
        return "cannot create the input";
    run_setup su = {0, 0, 0};
    if (!strncmp(c->setup, "fsize:", 6))
        su.fsize = atol(c->setup + 6);
    if (!strcmp(c->setup, "exists")) {
        char keep[PATH_MAX];
        mkdir(out, 0755);
        snprintf(keep, sizeof keep, "%.4000s/keep.txt", out);
        write_bytes(keep, "user data\n", 10);
    }
    if (!strcmp(c->setup, "exists_file"))
        write_bytes(out, "user data\n", 10);
    if (!strcmp(c->setup, "readonly")) {
        chmod(indir, 0755);
        chmod(dir, 0755);
        chmod(work, 0555);
        su.nobody = 1; /* root ignores folder permissions */
    }
    char args[4096];
    snprintf(args, sizeof args, "%s", c->args);
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
    replace_all(args, sizeof args, "$IN", inpath);
    replace_all(args, sizeof args, "$OUT", out);
    replace_all(args, sizeof args, "$WORK", work);
    replace_all(args, sizeof args, "$BASE", base);
    replace_all(args, sizeof args, "$DIJ", g_dij);
    char *argv[MAX_ARGS];
    int nargs = 0;
    char *save = NULL;
    for (char *t = strtok_r(args, " ", &save); t && nargs < MAX_ARGS;
         t = strtok_r(NULL, " ", &save)) {
        unescape(t);
        argv[nargs++] = strcmp(t, "''") ? t : (char *)"";
    }
    snapshot before, after;
    snap_take(&before, work);
    char err[8192];
    int ws = run_cmd(argv, nargs, work, &su, err, sizeof err);
    snap_take(&after, work);
    char diff[PATH_MAX + 128];
    snap_diff(&before, &after, diff, sizeof diff);
    snap_free(&before);
    snap_free(&after);
    chmod(work, 0755);
    if (WIFSIGNALED(ws)) {
        snprintf(why, sizeof why, "killed by signal %d; stderr:\n%s", WTERMSIG(ws), err);
        return why;
    }
    int code = WEXITSTATUS(ws);
    if (code != c->exit_code) {
        snprintf(why, sizeof why, "exit code %d, expected %d; stderr:\n%s", code, c->exit_code,
                 err);
        return why;
    }
    char frags[2048];
    snprintf(frags, sizeof frags, "%s", c->frags);
    replace_all(frags, sizeof frags, "$IN", inpath);
    replace_all(frags, sizeof frags, "$OUT", out);
    replace_all(frags, sizeof frags, "$WORK", work);
    replace_all(frags, sizeof frags, "$BASE", base);
    replace_all(frags, sizeof frags, "$DIJ", g_dij);
    save = NULL;
    for (char *f = strtok_r(frags, "|", &save); f; f = strtok_r(NULL, "|", &save))
        if (!contains(err, f)) {
            snprintf(why, sizeof why, "stderr lacks '%s':\n%s", f, err);
            return why;
        }
    /* one message, on one line, prefixed by the command */
    if (strncmp(err, "imrt", 4) != 0 || strchr(err, '\n') != err + strlen(err) - 1) {
        snprintf(why, sizeof why, "stderr is not a single 'imrt ...' line:\n%s", err);
        return why;
    }
    if (diff[0]) {
        snprintf(why, sizeof why, "output not clean: %s; stderr:\n%s", diff, err);
        return why;
    }
    if (getenv("IMRT_BADINPUT_VERBOSE")) /* show every message (docs/robustness.md) */
        printf("%-36s %d  %s", c->name, code, err);
    rm_tree(dir);
    return NULL;
}

/* ---- group setup ------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    if (!getcwd(g_root, sizeof g_root))
        return -1;
    char data_abs[PATH_MAX];
    const char *b = getenv("IMRT");
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s", b && *b ? b : "build/imrt");
    if (!realpath(rel, g_bin))
        return -1;
    const char *d = imrt_test_shared_data();
    g_data[0] = '\0';
    if (d && realpath(d, data_abs) && strlen(data_abs) < sizeof g_data)
        snprintf(g_data, sizeof g_data, "%.1000s", data_abs);
    /* tmpfs where there is one: the outputs are fsynced, and on a disk the
     * syncs would dominate the run time */
    struct stat shm;
    const int use_shm = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) &&
                        access("/dev/shm", W_OK) == 0;
    snprintf(g_tmp, sizeof g_tmp, "%s/imrt-badinput-XXXXXX", use_shm ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_tmp))
        return -1;
    chmod(g_tmp, 0755);
    /* a good dij of the base spec, for the corrupted-dij cases */
    snprintf(g_dij, sizeof g_dij, "%.1020s/good.dij", g_tmp);
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
    char *args[] = {(char *)"dij", base, (char *)"-o", g_dij, (char *)"--quiet"};
    char err[4096];
    int ws = run_cmd(args, 5, g_tmp, NULL, err, sizeof err);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        fprintf(stderr, "cannot make the good dij: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_tmp[0])
        rm_tree(g_tmp);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_catalogue(void **state)
{
    (void)state;
    bad_case *cases = NULL;
    int n = load_cases(&cases);
    assert_true(n >= 40);
    int failed = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        int sk = 0;
        const char *why = run_case(&cases[i], &sk);
        skipped += sk;
        if (sk)
            printf("SKIP: %s (no shared data)\n", cases[i].name);
        if (why) {
            failed++;
            printf("case %s (cases.tsv:%d): %s\n", cases[i].name, cases[i].line, why);
        }
    }
    printf("%d cases, %d failed, %d skipped\n", n, failed, skipped);
    free(cases);
    assert_int_equal(failed, 0);
}

/* ---- allocation failure at every point of a small plan -------------------------------- */

/* One in-process plan of base.json, written to dir unless dir is NULL. */
static imrt_status plan_once(const char *spec, const char *dir)
{
    imrt_context *ctx = NULL;
    imrt_run *run = NULL;
    imrt_status st = imrt_context_create(&ctx);
    if (st == IMRT_OK)
        st = imrt_context_set_threads(ctx, 1); /* no thread start-up per point */
    if (st == IMRT_OK)
        st = imrt_run_plan(ctx, spec, NULL, &run);
    if (st == IMRT_OK && dir)
        st = imrt_run_write(run, dir, 0);
    imrt_run_destroy(&run);
    imrt_context_destroy(&ctx);
    return st;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Make the n-th allocation fail for every n of the in-process run (the
 * library's own allocations; jansson, cairo and zlib allocate elsewhere):
 * each must end in IMRT_ERR_NOMEM, or succeed where a failed allocation
 * only loses optional text (the run log), with nothing left in the folder.
 * Every point of the stages before the output folder; an even sample of 8
 * points of the output stage (each costs a whole plan). Leaks show under
 * ASan at exit. */
static void test_alloc_failure_sweep(void **state)
{
    (void)state;
    char spec[PATH_MAX], parent[P1], dir[P2];
    /* base.json with 3 solver iterations: every stage runs, quickly */
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
    snprintf(spec, sizeof spec, "%.1020s/sweep.json", g_tmp);
    char *text = read_all(base, NULL);
    assert_non_null(text);
    char *it = strstr(text, "\"max_iterations\": 30");
    assert_non_null(it);
    it[strlen("\"max_iterations\": ")] = ' ';
    it[strlen("\"max_iterations\": ") + 1] = '3';
    assert_int_equal(write_bytes(spec, text, strlen(text)), 0);
    free(text);
    snprintf(parent, sizeof parent, "%.1020s/sweep", g_tmp);
    snprintf(dir, sizeof dir, "%.1530s/plan", parent);
    rm_tree(parent);
    assert_int_equal(mkdir(parent, 0755), 0);
    imrt_alloc_fail_after(0);
    long c0 = imrt_alloc_count();
    double t0 = now_s();
    assert_ok(plan_once(spec, NULL));
    const long nplan = imrt_alloc_count() - c0;
    double t1 = now_s();
    assert_ok(plan_once(spec, dir));
    const long total = imrt_alloc_count() - c0 - nplan;
    double t2 = now_s();
    rm_tree(dir);
    assert_true(nplan > 10 && total > nplan);
    const long wstep = (total - nplan + 7) / 8;
    int nomem = 0, tolerated = 0, points = 0;
    for (long n = 1; n <= total; n += n <= nplan ? 1 : wstep) {
        imrt_alloc_fail_after(n);
        imrt_status st = plan_once(spec, dir);
        imrt_alloc_fail_after(0);
        points++;
        if (st == IMRT_OK) {
            tolerated++;
            rm_tree(dir);
        } else if (st == IMRT_ERR_NOMEM) {
            nomem++;
        } else {
            fail_msg("allocation %ld of %ld: status %s (%s), expected IMRT_ERR_NOMEM", n, total,
                     imrt_status_name(st), imrt_last_error());
        }
        if (imrt_test_count_entries(parent) != 0)
            fail_msg("allocation %ld of %ld: the failed run left files in %s", n, total, parent);
    }
    printf("alloc sweep: %ld allocations (%ld before the outputs; a plan %.2f s, with outputs "
           "%.2f s), %d points: %d IMRT_ERR_NOMEM, %d tolerated\n",
           total, nplan, t1 - t0, t2 - t1, points, nomem, tolerated);
    assert_true(nomem >= points / 2);
    rm_tree(parent);
}

/* The same through the command (IMRT_TEST_ALLOC_FAIL): exit code 4, one
 * message, no signal, nothing left in the working folder. */
static void test_alloc_failure_command(void **state)
{
    (void)state;
    char base[PATH_MAX], work[P2], out[PATH_MAX];
    snprintf(base, sizeof base, "%.1020s/%s/base.json", g_root, BAD_DIR);
    snprintf(work, sizeof work, "%.1020s/sweep-cli", g_tmp);
    snprintf(out, sizeof out, "%.2040s/out", work);
    rm_tree(work);
    assert_int_equal(mkdir(work, 0755), 0);
    char *args[] = {(char *)"plan", base, (char *)"-o", out, (char *)"--quiet"};
    char err[8192];
    /* points spread over the run (its length varies little with the command) */
    const long points[] = {1, 3, 8, 21, 55, 144, 233, 400, 520};
    int checked = 0;
    for (size_t q = 0; q < sizeof points / sizeof points[0]; q++) {
        run_setup su = {0, 0, points[q]};
        int ws = run_cmd(args, 5, work, &su, err, sizeof err);
        if (WIFSIGNALED(ws))
            fail_msg("allocation %ld: killed by signal %d: %s", points[q], WTERMSIG(ws), err);
        int code = WEXITSTATUS(ws);
        if (code == 0) {
            rm_tree(out); /* the point lies beyond the run or in optional text */
            continue;
        }
        checked++;
        if (code != 4 || !strstr(err, "allocate"))
            fail_msg("allocation %ld: exit %d, expected 4 with a message naming the allocation; "
                     "stderr:\n%s", points[q], code, err);
        if (imrt_test_count_entries(work) != 0)
            fail_msg("allocation %ld: output left in %s", points[q], work);
    }
    assert_true(checked >= 6);
    rm_tree(work);
}

/* LeakSanitizer hook for this program (the in-process sweep draws
 * pictures): fontconfig keeps its configuration for the life of the process
 * and frees it only in FcFini, which cairo never calls. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalogue),
        cmocka_unit_test(test_alloc_failure_sweep),
        cmocka_unit_test(test_alloc_failure_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
