/*
 * engine/io.c - atomic output: whole folders through a staging folder and
 * single files through a temporary name, fsync and rename (imrt/io.h).
 */
#define _GNU_SOURCE /* renameat2 with RENAME_EXCHANGE / RENAME_NOREPLACE (glibc >= 2.28) */

#include "imrt/io.h"

#include "imrt/alloc.h"
#include "imrt/context.h"
#include "util_impl.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Attempts at finding an unused temporary name before giving up. */
#define IO_NAME_TRIES 100
/* Deepest folder nesting remove_tree descends into. */
#define IO_REMOVE_DEPTH 32

struct imrt_outdir {
    char final_path[IMRT_PATH_MAX]; /* folder the user asked for */
    char parent[IMRT_PATH_MAX];     /* folder that holds it ("." if none given) */
    char base[IMRT_PATH_MAX];       /* last component of final_path */
    char staging[IMRT_PATH_MAX];    /* hidden staging folder in parent */
    int force;                      /* replace an existing folder at commit */
    int committed;                  /* 1 after a successful commit */
};

struct imrt_atomic_file {
    char path[IMRT_PATH_MAX]; /* final path */
    char tmp[IMRT_PATH_MAX];  /* temporary path in the same folder */
    int fd;                   /* open descriptor of tmp, -1 once closed */
    FILE *fp;                 /* stdio stream on fd, or NULL */
};

/* ---- helpers ------------------------------------------------------------ */

/* Split `path` into folder and last component, ignoring trailing slashes.
 * Returns 0 on success, -1 if the path is empty, "/", "." or "..", or too long. */
static int split_path(const char *path, char *dir, char *base, size_t size)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0 || len >= size)
        return -1;
    size_t slash = len;
    while (slash > 0 && path[slash - 1] != '/')
        slash--;
    size_t blen = len - slash;
    if (blen == 0 || (blen == 1 && path[slash] == '.') ||
        (blen == 2 && path[slash] == '.' && path[slash + 1] == '.'))
        return -1;
    memcpy(base, path + slash, blen);
    base[blen] = '\0';
    if (slash == 0) {
        snprintf(dir, size, ".");
    } else if (slash == 1) {
        snprintf(dir, size, "/");
    } else {
        memcpy(dir, path, slash - 1);
        dir[slash - 1] = '\0';
    }
    return 0;
}

/* fsync a folder so that a rename inside it is durable; file systems that
 * cannot sync folders (EINVAL) are accepted. Returns 0 or an errno value. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        err = errno;
    close(fd);
    return err;
}

/* Remove `name` in folder dirfd and, when it is a folder, everything in it
 * (symbolic links are removed, never followed). Returns 0 or -1 with errno. */
static int remove_tree_at(int dirfd, const char *name, int depth)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0);
    if (depth > IO_REMOVE_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (remove_tree_at(fd, e->d_name, depth + 1) != 0)
            rc = -1;
    }
    int saved = errno;
    closedir(d);
    if (rc != 0) {
        errno = saved;
        return -1;
    }
    return unlinkat(dirfd, name, AT_REMOVEDIR);
}

static int remove_tree(const char *path) { return remove_tree_at(AT_FDCWD, path, 0); }

/* 1 if folder `path` has no entries other than . and .., or holds the
 * marker file; 0 otherwise (also when it cannot be read). */
static int replaceable_folder(const char *path)
{
    char marker[IMRT_PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(marker, sizeof marker, "%s/%s", path, IMRT_OUTDIR_MARKER) < sizeof marker &&
        lstat(marker, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* rename with "do not replace" semantics where the kernel offers it. */
static int rename_noreplace(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -1;
#endif
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

/* ---- output folder -------------------------------------------------------- */

static void staging_register(const imrt_outdir *o, int on);

imrt_status imrt_outdir_open(const char *dir, int force, imrt_outdir **out)
{
    imrt_status status = IMRT_OK;
    imrt_outdir *o = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_outdir_open: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return imrt_error(IMRT_ERR_ARG, "output folder: the path is empty");
    IMRT_ALLOC(o, 1);
    o->force = force != 0;
    if (strlen(dir) >= sizeof o->final_path - 64 ||
        split_path(dir, o->parent, o->base, sizeof o->parent) != 0)
        IMRT_FAIL(IMRT_ERR_ARG,
                  "output folder '%s': not a usable folder path (empty, '/', '.', '..' or "
                  "longer than %d characters)",
                  dir, IMRT_PATH_MAX - 64);
    snprintf(o->final_path, sizeof o->final_path, "%s", dir);

    struct stat st;
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            IMRT_FAIL(IMRT_ERR_EXISTS, "output folder '%s': a file of that name exists and is not a folder",
                      dir);
        if (!force)
            IMRT_FAIL(IMRT_ERR_EXISTS,
                      "output folder '%s' already exists (use --force to replace it)", dir);
        if (!replaceable_folder(dir))
            IMRT_FAIL(IMRT_ERR_EXISTS,
                      "output folder '%s' exists, is not empty and is not an imrt output folder "
                      "(no %s file): refusing to replace it even with --force",
                      dir, IMRT_OUTDIR_MARKER);
    } else if (errno != ENOENT) {
        IMRT_FAIL(IMRT_ERR_IO, "output folder '%s': %s", dir, strerror(errno));
    }
    if (stat(o->parent, &st) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "output folder '%s': its parent folder '%s' is not usable: %s", dir,
                  o->parent, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        IMRT_FAIL(IMRT_ERR_IO, "output folder '%s': '%s' is not a folder", dir, o->parent);

    int made = 0;
    for (int t = 0; t < IO_NAME_TRIES && !made; t++) {
        int n = snprintf(o->staging, sizeof o->staging, "%s/.%s.imrt-staging-%ld-%lx-%d",
                         o->parent, o->base, (long)getpid(), (unsigned long)(uintptr_t)o, t);
        if (n < 0 || (size_t)n >= sizeof o->staging)
            IMRT_FAIL(IMRT_ERR_ARG, "output folder '%s': path too long", dir);
        if (mkdir(o->staging, 0777) == 0)
            made = 1;
        else if (errno != EEXIST)
            IMRT_FAIL(IMRT_ERR_IO, "output folder '%s': cannot create a folder in '%s': %s", dir,
                      o->parent, strerror(errno));
    }
    if (!made)
        IMRT_FAIL(IMRT_ERR_IO, "output folder '%s': no free staging name in '%s'", dir, o->parent);
    staging_register(o, 1);

    char marker[IMRT_PATH_MAX];
    IMRT_TRY(imrt_outdir_path(o, IMRT_OUTDIR_MARKER, marker, sizeof marker));
    char text[160];
    int tn = snprintf(text, sizeof text,
                      "imrt %s output folder (this marker lets --force replace the folder)\n",
                      imrt_version());
    IMRT_TRY(imrt_io_write_file(marker, text, (size_t)tn));
    *out = o;
    o = NULL;
cleanup:
    imrt_outdir_destroy(&o);
    return status;
}

const char *imrt_outdir_staging(const imrt_outdir *o) { return o ? o->staging : NULL; }

const char *imrt_outdir_final(const imrt_outdir *o) { return o ? o->final_path : NULL; }

imrt_status imrt_outdir_path(const imrt_outdir *o, const char *name, char *buf, size_t size)
{
    if (!o || !name || !buf || size == 0)
        return imrt_error(IMRT_ERR_ARG, "imrt_outdir_path: NULL argument");
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return imrt_error(IMRT_ERR_ARG,
                          "output file name '%s' must be a plain file name (no '/', not '.' or '..')",
                          name);
    if (o->committed)
        return imrt_error(IMRT_ERR_ARG, "output folder '%s' is already committed", o->final_path);
    int n = snprintf(buf, size, "%s/%s", o->staging, name);
    if (n < 0 || (size_t)n >= size)
        return imrt_error(IMRT_ERR_ARG, "output file '%s/%s': path longer than %zu characters",
                          o->final_path, name, size - 1);
    return IMRT_OK;
}

/* Replace the existing final folder by the staging folder. */
static imrt_status outdir_replace(imrt_outdir *o)
{
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, o->staging, AT_FDCWD, o->final_path, RENAME_EXCHANGE) == 0) {
        /* the staging name now holds the old folder */
        remove_tree(o->staging);
        return IMRT_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return imrt_error(IMRT_ERR_IO, "output folder '%s': cannot replace it: %s", o->final_path,
                          strerror(errno));
#endif
    /* Two renames with roll-back where the exchange is not available. */
    char old[IMRT_PATH_MAX];
    int moved = 0;
    for (int t = 0; t < IO_NAME_TRIES && !moved; t++) {
        int n = snprintf(old, sizeof old, "%s/.%s.imrt-old-%ld-%d", o->parent, o->base,
                         (long)getpid(), t);
        if (n < 0 || (size_t)n >= sizeof old)
            return imrt_error(IMRT_ERR_ARG, "output folder '%s': path too long", o->final_path);
        if (rename_noreplace(o->final_path, old) == 0)
            moved = 1;
        else if (errno != EEXIST && errno != ENOTEMPTY)
            return imrt_error(IMRT_ERR_IO, "output folder '%s': cannot move the old folder aside: %s",
                              o->final_path, strerror(errno));
    }
    if (!moved)
        return imrt_error(IMRT_ERR_IO, "output folder '%s': no free name to move the old folder to",
                          o->final_path);
    if (rename(o->staging, o->final_path) != 0) {
        int err = errno;
        rename(old, o->final_path); /* put the old folder back */
        return imrt_error(IMRT_ERR_IO, "output folder '%s': cannot rename '%s' into place: %s",
                          o->final_path, o->staging, strerror(err));
    }
    remove_tree(old);
    return IMRT_OK;
}

imrt_status imrt_outdir_commit(imrt_outdir *o)
{
    if (!o)
        return imrt_error(IMRT_ERR_ARG, "imrt_outdir_commit: NULL handle");
    if (o->committed)
        return imrt_error(IMRT_ERR_ARG, "output folder '%s' is already committed", o->final_path);
    /* the files were not synced one by one (above): one sync of the file
     * system for all of them, then the folder itself */
    int err = 0;
    {
        const int fd = open(o->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0)
            err = errno ? errno : EIO;
        if (fd >= 0)
            close(fd);
    }
    staging_register(o, 0);
    if (!err)
        err = fsync_dir(o->staging);
    if (err)
        return imrt_error(IMRT_ERR_IO, "output folder '%s': cannot sync '%s': %s", o->final_path,
                          o->staging, strerror(err));
    struct stat st;
    if (lstat(o->final_path, &st) == 0) {
        if (!o->force)
            return imrt_error(IMRT_ERR_EXISTS,
                              "output folder '%s' appeared while the run was writing (use --force "
                              "to replace it)",
                              o->final_path);
        if (!S_ISDIR(st.st_mode))
            return imrt_error(IMRT_ERR_EXISTS,
                              "output folder '%s': a file of that name exists and is not a folder",
                              o->final_path);
        if (!replaceable_folder(o->final_path))
            return imrt_error(IMRT_ERR_EXISTS,
                              "output folder '%s' is not empty and is not an imrt output folder "
                              "(no %s file): refusing to replace it",
                              o->final_path, IMRT_OUTDIR_MARKER);
        imrt_status s = outdir_replace(o);
        if (s != IMRT_OK)
            return s;
    } else if (rename_noreplace(o->staging, o->final_path) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            return imrt_error(IMRT_ERR_EXISTS,
                              "output folder '%s' appeared while the run was writing (use --force "
                              "to replace it)",
                              o->final_path);
        return imrt_error(IMRT_ERR_IO, "output folder '%s': cannot rename '%s' into place: %s",
                          o->final_path, o->staging, strerror(errno));
    }
    o->committed = 1;
    err = fsync_dir(o->parent);
    if (err)
        return imrt_error(IMRT_ERR_IO, "output folder '%s': in place but cannot sync '%s': %s",
                          o->final_path, o->parent, strerror(err));
    return IMRT_OK;
}

void imrt_outdir_destroy(imrt_outdir **o)
{
    if (!o || !*o)
        return;
    staging_register(*o, 0);
    if (!(*o)->committed && (*o)->staging[0])
        remove_tree((*o)->staging);
    imrt_free(*o);
    *o = NULL;
}

/* ---- staging folders: one sync for the whole folder ----------------------- */

/* Files written into an open output folder's staging folder are not synced
 * one by one (each fsync is a journal commit: ~30 ms apiece on the
 * development machine, a second for a plan folder); imrt_outdir_commit
 * syncs the file system holding the folder once before renaming it into
 * place, which gives the same guarantee: the folder appears complete or not
 * at all. */
#define STAGING_MAX 64
static pthread_mutex_t staging_lock = PTHREAD_MUTEX_INITIALIZER;
static const imrt_outdir *staging_set[STAGING_MAX];

static void staging_register(const imrt_outdir *o, int on)
{
    pthread_mutex_lock(&staging_lock);
    for (int i = 0; i < STAGING_MAX; i++)
        if (on ? staging_set[i] == NULL : staging_set[i] == o) {
            staging_set[i] = on ? o : NULL;
            break;
        }
    pthread_mutex_unlock(&staging_lock);
}

/* Is dir the staging folder of an open output folder? */
static int in_staging(const char *dir)
{
    int yes = 0;
    pthread_mutex_lock(&staging_lock);
    for (int i = 0; i < STAGING_MAX && !yes; i++)
        yes = staging_set[i] && strcmp(staging_set[i]->staging, dir) == 0;
    pthread_mutex_unlock(&staging_lock);
    return yes;
}

/* ---- one file --------------------------------------------------------------- */

imrt_status imrt_atomic_open(const char *path, imrt_atomic_file **out)
{
    imrt_status status = IMRT_OK;
    imrt_atomic_file *f = NULL;
    if (!out)
        return imrt_error(IMRT_ERR_ARG, "imrt_atomic_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return imrt_error(IMRT_ERR_ARG, "output file: the path is empty");
    IMRT_ALLOC(f, 1);
    f->fd = -1;
    char dir[IMRT_PATH_MAX], base[IMRT_PATH_MAX];
    if (strlen(path) >= sizeof f->path - 64 || split_path(path, dir, base, sizeof dir) != 0 ||
        path[strlen(path) - 1] == '/')
        IMRT_FAIL(IMRT_ERR_ARG, "output file '%s': not a usable file path", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        IMRT_FAIL(IMRT_ERR_IO, "output file '%s': a folder of that name exists", path);
    for (int t = 0; t < IO_NAME_TRIES && f->fd < 0; t++) {
        int n = strchr(path, '/')
                    ? snprintf(f->tmp, sizeof f->tmp, "%s/.%s.tmp-%ld-%lx-%d", dir, base,
                               (long)getpid(), (unsigned long)(uintptr_t)f, t)
                    : snprintf(f->tmp, sizeof f->tmp, ".%s.tmp-%ld-%lx-%d", base, (long)getpid(),
                               (unsigned long)(uintptr_t)f, t);
        if (n < 0 || (size_t)n >= sizeof f->tmp)
            IMRT_FAIL(IMRT_ERR_ARG, "output file '%s': path too long", path);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd < 0 && errno != EEXIST)
            IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': cannot create a file in '%s': %s", path, dir,
                      strerror(errno));
    }
    if (f->fd < 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': no free temporary name in '%s'", path, dir);
    *out = f;
    f = NULL;
cleanup:
    imrt_atomic_abort(&f);
    return status;
}

const char *imrt_atomic_tmp_path(const imrt_atomic_file *f) { return f ? f->tmp : NULL; }

FILE *imrt_atomic_stream(imrt_atomic_file *f)
{
    if (!f || f->fd < 0) {
        imrt_error(IMRT_ERR_ARG, "imrt_atomic_stream: no open file");
        return NULL;
    }
    if (!f->fp) {
        f->fp = fdopen(f->fd, "wb");
        if (!f->fp)
            imrt_error(IMRT_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    }
    return f->fp;
}

imrt_status imrt_atomic_commit(imrt_atomic_file **pf)
{
    if (!pf || !*pf)
        return imrt_error(IMRT_ERR_ARG, "imrt_atomic_commit: NULL handle");
    imrt_atomic_file *f = *pf;
    imrt_status status = IMRT_OK;
    int err = 0;
    char dir[IMRT_PATH_MAX], base[IMRT_PATH_MAX];
    const int have_dir = split_path(f->path, dir, base, sizeof dir) == 0;
    const int staged = have_dir && in_staging(dir); /* synced with its folder */
    if (f->fp) {
        /* A failed fwrite left its reason in errno and the stream's error
         * flag set; report that reason rather than fflush's. */
        int saved = errno;
        if (ferror(f->fp))
            err = saved ? saved : EIO;
        else if (fflush(f->fp) != 0)
            err = errno ? errno : EIO;
        if (!err && !staged && fsync(fileno(f->fp)) != 0 && errno != EINVAL)
            err = errno;
        if (fclose(f->fp) != 0 && !err)
            err = errno ? errno : EIO;
        f->fp = NULL;
        f->fd = -1;
    } else if (f->fd >= 0) {
        if (!staged && fsync(f->fd) != 0 && errno != EINVAL)
            err = errno;
        if (close(f->fd) != 0 && !err)
            err = errno;
        f->fd = -1;
    }
    if (err)
        IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", f->path, strerror(err));
    if (rename(f->tmp, f->path) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot rename '%s' to '%s': %s", f->tmp, f->path, strerror(errno));
    f->tmp[0] = '\0'; /* nothing left to remove */
    if (have_dir && !staged) {
        err = fsync_dir(dir);
        if (err)
            IMRT_FAIL(IMRT_ERR_IO, "wrote '%s' but cannot sync its folder: %s", f->path,
                      strerror(err));
    }
cleanup:
    imrt_atomic_abort(pf);
    return status;
}

void imrt_atomic_abort(imrt_atomic_file **pf)
{
    if (!pf || !*pf)
        return;
    imrt_atomic_file *f = *pf;
    if (f->fp)
        fclose(f->fp);
    else if (f->fd >= 0)
        close(f->fd);
    if (f->tmp[0])
        unlink(f->tmp);
    imrt_free(f);
    *pf = NULL;
}

imrt_status imrt_io_write_file(const char *path, const void *data, size_t size)
{
    imrt_status status = IMRT_OK;
    imrt_atomic_file *f = NULL;
    if (!data && size > 0)
        return imrt_error(IMRT_ERR_ARG, "imrt_io_write_file('%s'): data is NULL", path ? path : "");
    IMRT_TRY(imrt_atomic_open(path, &f));
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(f->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            IMRT_FAIL(IMRT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    status = imrt_atomic_commit(&f);
cleanup:
    imrt_atomic_abort(&f);
    return status;
}

imrt_status imrt_io_read_file(const char *path, char **data, size_t *size)
{
    imrt_status status = IMRT_OK;
    char *buf = NULL;
    int fd = -1;
    if (!path || !data)
        return imrt_error(IMRT_ERR_ARG, "imrt_io_read_file: NULL argument");
    *data = NULL;
    if (size)
        *size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': not a regular file", path);
    if (st.st_size > ((off_t)1 << 30))
        IMRT_FAIL(IMRT_ERR_RANGE, "cannot read '%s': %lld bytes is over the 1 GiB limit", path,
                  (long long)st.st_size);
    size_t n = (size_t)st.st_size;
    IMRT_ALLOC(buf, n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        }
        if (r == 0)
            IMRT_FAIL(IMRT_ERR_IO, "cannot read '%s': the file shrank while reading", path);
        got += (size_t)r;
    }
    buf[n] = '\0';
    *data = buf;
    buf = NULL;
    if (size)
        *size = n;
cleanup:
    if (fd >= 0)
        close(fd);
    imrt_free(buf);
    return status;
}
