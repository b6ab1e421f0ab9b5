/*
 * engine/status.c - status-code messages and the thread-local error buffer.
 */
#include "imrt/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define IMRT_ERRBUF_SIZE 1024

static _Thread_local char last_error[IMRT_ERRBUF_SIZE];

const char *imrt_status_str(imrt_status status)
{
    switch (status) {
#define IMRT_STATUS_CASE_(name, value, msg) \
    case name:                              \
        return msg;
        IMRT_STATUS_LIST(IMRT_STATUS_CASE_)
#undef IMRT_STATUS_CASE_
    }
    return "unknown status";
}

const char *imrt_status_name(imrt_status status)
{
    switch (status) {
#define IMRT_STATUS_CASE_(name, value, msg) \
    case name:                              \
        return #name;
        IMRT_STATUS_LIST(IMRT_STATUS_CASE_)
#undef IMRT_STATUS_CASE_
    }
    return "IMRT_UNKNOWN";
}

const char *imrt_last_error(void) { return last_error; }

void imrt_clear_error(void) { last_error[0] = '\0'; }

/* Formats into a scratch buffer first, so that the previous message may be
 * an argument (imrt_error(st, "'%s': %s", path, imrt_last_error())). */
imrt_status imrt_error(imrt_status status, const char *fmt, ...)
{
    char msg[IMRT_ERRBUF_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, strlen(msg) + 1);
    return status;
}
