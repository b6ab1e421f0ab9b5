/*
 * imrt/io.h - output files that are either complete or absent.
 *
 * Two tools:
 *  - imrt_outdir: an output folder written as a whole. Files go into a hidden
 *    staging folder next to the final one (`PARENT/.NAME.imrt-staging-*`);
 *    imrt_outdir_commit renames the finished folder into place. A run that
 *    fails before the commit (imrt_outdir_destroy without commit) removes the
 *    staging folder and everything in it, so it leaves no new folder and no
 *    half-written file. An existing folder is refused (IMRT_ERR_EXISTS)
 *    unless `force` is set; with force it is replaced only at the commit
 *    (atomically where the file system supports renameat2 RENAME_EXCHANGE,
 *    otherwise by two renames with roll-back).
 *    Every committed folder carries a marker file `.imrt-output`; force
 *    replaces only an empty folder or one with that marker, so a mistyped
 *    `-o $HOME --force` cannot delete a user's data.
 *  - imrt_atomic_file: one file written under a temporary name in the same
 *    folder (`.NAME.tmp-*`), flushed, fsync'ed and renamed over NAME at
 *    commit; abort (or a failed commit) removes the temporary file and
 *    leaves any previous NAME untouched. Inside the staging folder of an
 *    open imrt_outdir the per-file fsync is left to the folder's commit,
 *    which syncs the file system once for all of them (syncfs) before the
 *    folder is renamed into place: the same guarantee, one journal commit
 *    instead of one per file.
 *
 * Every writer of the library (NIfTI, PNG, HTML) goes through
 * imrt_atomic_file, also inside a staging folder, so a file that exists under
 * its final name is always complete.
 *
 * Errors: IMRT_ERR_IO with a message naming the path and the system's reason
 * (e.g. "Read-only file system", "No space left on device"); IMRT_ERR_EXISTS;
 * IMRT_ERR_ARG for bad arguments; IMRT_ERR_NOMEM.
 *
 * Ownership: handles are created by *_open and released by *_commit /
 * *_abort / *_destroy, which accept NULL and clear the pointer.
 * Thread safety: one handle per thread; different threads may write
 * different files of one imrt_outdir (its paths are read-only after open).
 */
#ifndef IMRT_IO_H
#define IMRT_IO_H

#include "imrt/status.h"

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest path the io functions accept, including the NUL. */
#define IMRT_PATH_MAX 4096

/* Name of the marker file inside every committed output folder. */
#define IMRT_OUTDIR_MARKER ".imrt-output"

/* ---- output folder ---------------------------------------------------- */

typedef struct imrt_outdir imrt_outdir;

/* Start writing the output folder `dir` (its parent must exist). Creates the
 * staging folder and the marker file in it.
 * Returns IMRT_ERR_EXISTS if `dir` exists and force == 0, or if `dir` is not
 * a folder, or (with force) if it is a non-empty folder without the marker;
 * IMRT_ERR_IO if the parent is missing or not writable (message names the
 * path and errno text); IMRT_ERR_ARG (NULL or empty dir, name too long);
 * IMRT_ERR_NOMEM. */
imrt_status imrt_outdir_open(const char *dir, int force, imrt_outdir **out);

/* Path of the staging folder where files are written until the commit.
 * Valid until imrt_outdir_destroy. */
const char *imrt_outdir_staging(const imrt_outdir *o);

/* The final folder path given to imrt_outdir_open. */
const char *imrt_outdir_final(const imrt_outdir *o);

/* Staging path of the file `name` (a plain file name: no '/', not "." or
 * ".."), written into buf (size bytes). IMRT_ERR_ARG for a bad name or a
 * buffer that is too small. */
imrt_status imrt_outdir_path(const imrt_outdir *o, const char *name, char *buf, size_t size);

/* Put the finished folder in place: sync the file system holding it (the
 * files written into it were not synced one by one), fsync the staging
 * folder, rename it to
 * the final path (replacing the old folder when opened with force) and fsync
 * the parent. Afterwards the handle only answers imrt_outdir_final and must
 * be destroyed. IMRT_ERR_EXISTS if the final path appeared meanwhile and
 * force is off; IMRT_ERR_IO naming the path and reason. After a failure the
 * old folder is still in place and imrt_outdir_destroy removes the staging
 * folder. IMRT_ERR_ARG if already committed. */
imrt_status imrt_outdir_commit(imrt_outdir *o);

/* Release the handle. Without a successful commit this removes the staging
 * folder and every file in it. Accepts NULL; clears *o. */
void imrt_outdir_destroy(imrt_outdir **o);

/* ---- one file --------------------------------------------------------- */

typedef struct imrt_atomic_file imrt_atomic_file;

/* Create a temporary file next to `path` (same folder, mode 0666 less the
 * umask) for writing. IMRT_ERR_IO names the folder and the reason;
 * IMRT_ERR_ARG; IMRT_ERR_NOMEM. */
imrt_status imrt_atomic_open(const char *path, imrt_atomic_file **out);

/* The temporary file's path, for writers that open files by name (zlib).
 * Such a writer must close its own handle before imrt_atomic_commit and must
 * not also use imrt_atomic_stream. */
const char *imrt_atomic_tmp_path(const imrt_atomic_file *f);

/* A stdio stream on the temporary file (opened on first call; NULL with
 * the reason in imrt_last_error if that fails). */
FILE *imrt_atomic_stream(imrt_atomic_file *f);

/* Flush and fsync the temporary file, rename it to the final path and fsync
 * the folder. Always releases the handle and clears *f; on failure the
 * temporary file is removed and the final path is untouched.
 * IMRT_ERR_IO naming the path and reason (disk full shows up here at the
 * latest); IMRT_ERR_ARG (NULL). */
imrt_status imrt_atomic_commit(imrt_atomic_file **f);

/* Remove the temporary file and release the handle. Accepts NULL; clears *f. */
void imrt_atomic_abort(imrt_atomic_file **f);

/* Write `size` bytes to `path` atomically (open, write, commit). */
imrt_status imrt_io_write_file(const char *path, const void *data, size_t size);

/* Read a whole file into a new buffer (imrt_malloc, NUL-terminated; *size
 * excludes the NUL). Caller frees with imrt_free. IMRT_ERR_IO naming the path
 * and reason; IMRT_ERR_RANGE for files over 1 GiB; IMRT_ERR_NOMEM. */
imrt_status imrt_io_read_file(const char *path, char **data, size_t *size);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_IO_H */
