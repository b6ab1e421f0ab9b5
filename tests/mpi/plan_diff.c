/*
 * tests/mpi/plan_diff.c - compare two plans' numbers for tests/mpi/run.sh:
 *   plan_diff dose A.nii.gz B.nii.gz TOL   doses on the same grid
 *   plan_diff weights A.txt B.txt TOL      weight files ('#' comments)
 * The difference is max |a - b| / max |a| (relative to the largest value,
 * so that near-zero voxels or beamlets do not dominate). Prints it and
 * exits 0 when it is <= TOL, 1 when larger, 2 on unreadable input.
 * No MPI here: it links libimrt only.
 */
#include "imrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double *read_weights(const char *path, long *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1024, len = 0;
    double *v = malloc(cap * sizeof *v);
    char line[256];
    while (v && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (len == cap) {
            double *g = realloc(v, 2 * cap * sizeof *v);
            if (!g) {
                free(v);
                v = NULL;
                break;
            }
            v = g;
            cap *= 2;
        }
        v[len++] = strtod(line, NULL);
    }
    fclose(f);
    *n = (long)len;
    return v;
}

static int report(const char *what, const double *a, const double *b, long n, double tol)
{
    double amax = 0.0, dmax = 0.0;
    long at = 0;
    for (long i = 0; i < n; i++) {
        amax = fmax(amax, fabs(a[i]));
        const double d = fabs(a[i] - b[i]);
        if (d > dmax) {
            dmax = d;
            at = i;
        }
    }
    const double rel = amax > 0.0 ? dmax / amax : dmax;
    printf("%s: %ld values, max |a| %.6g, max |a - b| %.3g at %ld, relative %.3g (tolerance %.1g): %s\n",
           what, n, amax, dmax, at, rel, tol, rel <= tol ? "ok" : "DIFFERENT");
    return rel <= tol ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "dose") != 0 && strcmp(argv[1], "weights") != 0)) {
        fprintf(stderr, "usage: plan_diff dose|weights A B TOL\n");
        return 2;
    }
    const double tol = strtod(argv[4], NULL);
    double *a = NULL, *b = NULL;
    long na = 0, nb = 0;
    if (strcmp(argv[1], "weights") == 0) {
        a = read_weights(argv[2], &na);
        b = read_weights(argv[3], &nb);
    } else {
        imrt_grid ga, gb;
        float *fa = NULL, *fb = NULL;
        int ta, tb;
        if (imrt_nifti_read(argv[2], &ga, &fa, &ta) == IMRT_OK &&
            imrt_nifti_read(argv[3], &gb, &fb, &tb) == IMRT_OK && imrt_grid_equal(&ga, &gb)) {
            na = nb = (long)imrt_grid_nvox(&ga);
            a = malloc((size_t)na * sizeof *a);
            b = malloc((size_t)nb * sizeof *b);
            for (long i = 0; a && b && i < na; i++) {
                a[i] = fa[i];
                b[i] = fb[i];
            }
        }
        imrt_free(fa);
        imrt_free(fb);
    }
    if (!a || !b || na != nb || na == 0) {
        fprintf(stderr, "plan_diff: cannot read %s and %s as two %s of the same size (%s)\n",
                argv[2], argv[3], argv[1], imrt_last_error());
        free(a);
        free(b);
        return 2;
    }
    int rc = report(argv[1], a, b, na, tol);
    free(a);
    free(b);
    return rc;
}
