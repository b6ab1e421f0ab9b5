/*
 * imrt/nifti.h - NIfTI-1 volumes (.nii or .nii.gz) for doses, densities and
 * structure label maps, through the NIfTI C library (niftilib/znzlib).
 *
 * Frames: imrt works in the DICOM patient frame (LPS: +x patient's left,
 * +y posterior, +z superior); NIfTI's world frame is RAS (+x right,
 * +y anterior, +z superior). Files are written with voxel (i,j,k) in imrt's
 * index order (x fastest) and an affine that maps it to
 *     RAS = (-(ox + i dx), -(oy + j dy), oz + k dz),
 * i.e. diag(-dx, -dy, dz) with offset (-ox, -oy, oz), in both the qform and
 * the sform (codes NIFTI_XFORM_SCANNER_ANAT: the DICOM patient frame),
 * units mm, pixdim = spacing. 3D Slicer and ITK-SNAP (both ITK based) read
 * that back as the same LPS positions, so dose, density and labels overlay.
 * Reading converts any axis-aligned affine (flips and axis permutations)
 * back to an LPS grid with positive spacings; oblique affines are refused.
 *
 * A file name ending in ".gz" is written gzip-compressed. Every write goes
 * through imrt_atomic_file (temporary name, fsync, rename), so a file under
 * its final name is complete.
 *
 * Ownership: writers borrow the caller's arrays; imrt_nifti_read returns an
 * imrt_malloc'ed array the caller frees with imrt_free.
 * Thread safety: the functions keep no state and may run concurrently on
 * different files.
 */
#ifndef IMRT_NIFTI_H
#define IMRT_NIFTI_H

#include "imrt/grid.h"
#include "imrt/phantom.h"
#include "imrt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write a float32 volume (dose in Gy, relative electron density, ...) on
 * grid g; `descrip` (up to 79 characters, may be NULL) goes into the header,
 * e.g. "imrt dose IMRT Gy". cal_min/cal_max are set to the data range.
 * Errors: IMRT_ERR_ARG (NULL, non-finite values), IMRT_ERR_IO (path and
 * reason), IMRT_ERR_NOMEM. */
imrt_status imrt_nifti_write_float(const char *path, const imrt_grid *g, const float *data,
                                   const char *descrip);

/* Write a uint8 label map (0 = no structure) with intent NIFTI_INTENT_LABEL.
 * Errors as imrt_nifti_write_float. */
imrt_status imrt_nifti_write_labels(const char *path, const imrt_grid *g, const uint8_t *labels,
                                    const char *descrip);

/* Read a 3D NIfTI-1 volume (one-file .nii / .nii.gz; datatypes uint8, int8,
 * int16, uint16, int32, uint32, float32, float64; scl_slope/scl_inter
 * applied) into an LPS grid and a new float array of imrt_grid_nvox(g)
 * values in imrt's index order. The orientation comes from the sform when
 * its code is set, else from the qform. If datatype is not NULL it receives
 * the stored NIfTI DT_* code.
 * Errors: IMRT_ERR_IO (cannot open/read, short file), IMRT_ERR_FORMAT (not
 * NIfTI-1, more than 3 dimensions, no orientation, unsupported datatype),
 * IMRT_ERR_UNSUPPORTED (oblique affine), IMRT_ERR_RANGE (grid limits),
 * IMRT_ERR_NOMEM, IMRT_ERR_ARG. */
imrt_status imrt_nifti_read(const char *path, imrt_grid *g, float **data, int *datatype);

/* The RAS affine imrt writes for grid g: world = m * (i, j, k, 1). */
void imrt_nifti_affine_ras(const imrt_grid *g, double m[4][4]);

/* One row of a label legend. */
typedef struct {
    int value;                /* label value in the map, 1..255 */
    const char *name;         /* structure name (spaces become '_' in the file) */
    imrt_structure_kind kind; /* target / oar / body */
    unsigned char rgb[3];     /* display colour, 0..255 */
} imrt_label_entry;

/* Write the legend of a label map as a 3D Slicer colour table (".ctbl" or
 * ".txt": "# Color table file" header, then "value name R G B A" per line,
 * with "0 Background 0 0 0 0" first; each structure's kind is listed in the
 * comment header). Load it in Slicer before the label map and pick it as
 * the map's colour table.
 * Errors: IMRT_ERR_ARG (value outside 1..255, duplicate value, empty
 * name), IMRT_ERR_IO, IMRT_ERR_NOMEM. */
imrt_status imrt_nifti_write_legend(const char *path, const imrt_label_entry *entries, int n);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_NIFTI_H */
