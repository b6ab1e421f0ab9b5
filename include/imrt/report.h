/*
 * imrt/report.h - report.html: one self-contained page per plan run.
 *
 * The page is built from the metrics JSON (the shape of metrics.json in the
 * interface spec: "phantom", "dij", "plans" with "imrt" and "3dcrt" - each
 * with "structures", "goals", "hi", "ci_paddick", "integral_dose_j",
 * "solver" - then "timings_s", "threads", "version"), a list of PNG
 * pictures and the solver log. It shows: the run summary, the clinical
 * goals of both plans side by side with pass/fail marks (colour and a
 * check/cross, so it reads without colour too), plan indices, the
 * per-structure metrics of both plans side by side, the pictures, and the
 * solver log.
 *
 * Self-contained: pictures are embedded as base64 data: URIs, the style
 * sheet is inline, there are no scripts, web fonts or any other resource
 * from the network, so the page renders offline and can be mailed as one
 * file. Every string from the inputs is HTML-escaped. Missing keys are
 * shown as "-" rather than refused, so a partial run still gets a report.
 *
 * Ownership: inputs are borrowed. imrt_report_build returns an imrt_malloc'ed
 * string the caller frees with imrt_free.
 * Thread safety: no shared state.
 */
#ifndef IMRT_REPORT_H
#define IMRT_REPORT_H

#include "imrt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct json_t; /* jansson's JSON value */

/* One picture of the report. */
typedef struct {
    const char *path;    /* PNG file to embed (read when the report is built) */
    const char *caption; /* shown under the picture; NULL = the file name */
} imrt_report_image;

/* Build the page in memory: *html (NUL-terminated, *len bytes without the
 * NUL; len may be NULL). `title` may be NULL ("imrt plan report - NAME"),
 * `solver_log` may be NULL.
 * Errors: IMRT_ERR_ARG (metrics not a JSON object, NULL image path),
 * IMRT_ERR_IO (a picture cannot be read: the message names it),
 * IMRT_ERR_FORMAT (a picture is not a PNG), IMRT_ERR_NOMEM. */
imrt_status imrt_report_build(const struct json_t *metrics, const imrt_report_image *images,
                              int nimages, const char *solver_log, const char *title, char **html,
                              size_t *len);

/* Build the page and write it to `path` atomically (imrt/io.h). Errors as
 * imrt_report_build, plus IMRT_ERR_IO naming the path. */
imrt_status imrt_report_write(const char *path, const struct json_t *metrics,
                              const imrt_report_image *images, int nimages,
                              const char *solver_log, const char *title);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_REPORT_H */
