/*
 * imrt/status.h - status codes and the thread-local last-error message.
 *
 * Every fallible library function returns an imrt_status: IMRT_OK (0) on
 * success, a negative code on failure. The codes and their one-line
 * meanings come from one X-macro list, so the enum and the message table
 * cannot drift apart. On failure the function also records a human message
 * (file, line, what went wrong and the allowed range) in a thread-local
 * buffer that imrt_last_error() returns until the next failure on the same
 * thread. The library never prints and never exits; the CLI prints.
 *
 * Thread safety: the last-error buffer is per thread.
 */
#ifndef IMRT_STATUS_H
#define IMRT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define IMRT_STATUS_LIST(X)                                                   \
    X(IMRT_OK, 0, "success")                                                  \
    X(IMRT_ERR_ARG, -1, "invalid argument")                                   \
    X(IMRT_ERR_NOMEM, -2, "out of memory")                                    \
    X(IMRT_ERR_IO, -3, "input/output error")                                  \
    X(IMRT_ERR_PARSE, -4, "malformed input")                                  \
    X(IMRT_ERR_RANGE, -5, "value out of range")                               \
    X(IMRT_ERR_BUDGET, -6, "memory budget exceeded")                          \
    X(IMRT_ERR_FORMAT, -7, "unsupported or corrupt file")                     \
    X(IMRT_ERR_NUMERIC, -8, "numerical failure")                              \
    X(IMRT_ERR_EXISTS, -9, "output already exists")                           \
    X(IMRT_ERR_UNSUPPORTED, -10, "not supported in this build")               \
    X(IMRT_ERR_INTERNAL, -11, "internal error")

typedef enum {
#define IMRT_STATUS_ENUM_(name, value, msg) name = value,
    IMRT_STATUS_LIST(IMRT_STATUS_ENUM_)
#undef IMRT_STATUS_ENUM_
} imrt_status;

/* One-line meaning of a status code ("unknown status" for other values). */
const char *imrt_status_str(imrt_status status);

/* Symbolic name of a status code, e.g. "IMRT_ERR_PARSE". */
const char *imrt_status_name(imrt_status status);

/* The message recorded by the last failure on this thread ("" if none).
 * The pointer stays valid until the next failing call on this thread. */
const char *imrt_last_error(void);

/* Clear this thread's last-error message. */
void imrt_clear_error(void);

/* Record a failure message (printf format) and return `status` unchanged,
 * so that callers can write `return imrt_error(IMRT_ERR_ARG, "...")`.
 * Public so that programs built on the library report errors the same way. */
imrt_status imrt_error(imrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif /* IMRT_STATUS_H */
