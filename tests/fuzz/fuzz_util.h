/*
 * tests/fuzz/fuzz_util.h - helpers shared by the libFuzzer harnesses: an
 * in-memory file (memfd) that file-based readers open by its /proc name, so
 * that no fuzz iteration touches the disk, and a check that aborts (a
 * finding) when a reader breaks one of its own documented invariants.
 */
#ifndef IMRT_FUZZ_UTIL_H
#define IMRT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

/* Abort with a message: libFuzzer records the input as a crash. */
#define FUZZ_CHECK(cond)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, \
                    #cond);                                                       \
            abort();                                                              \
        }                                                                         \
    } while (0)

typedef struct {
    int fd;         /* the memfd, -1 before the first use */
    char path[64];  /* "/proc/self/fd/N": opening it starts at byte 0 */
} fuzz_memfile;

/* Replace the file's contents with data[0..size); returns 0 on success. The
 * memfd is created on first use and kept for the whole run. */
static inline int fuzz_memfile_set(fuzz_memfile *m, const uint8_t *data, size_t size)
{
    if (m->fd < 0) {
        m->fd = memfd_create("imrt-fuzz", MFD_CLOEXEC);
        if (m->fd < 0)
            return -1;
        snprintf(m->path, sizeof m->path, "/proc/self/fd/%d", m->fd);
    }
    if (ftruncate(m->fd, 0) != 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(m->fd, data + done, size - done, (off_t)done);
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

#endif /* IMRT_FUZZ_UTIL_H */
