/*
 * imrt/matrad.h - matRad phantoms: import of a matRad MAT file (ct + cst)
 * into an imrt phantom, export of any imrt phantom as a matRad MAT file,
 * and the Hounsfield-unit <-> relative-electron-density table both use.
 *
 * matRad layout (MATLAB, 1-based, column-major):
 *   ct.cubeHU{1}  CT in HU, size [ny nx nz] (rows = y); preferred on import
 *   ct.cube{1}    relative electron density in matRad's convention (read
 *                 when cubeHU is absent: values all within [0, 16] are taken
 *                 as RED, anything else as HU). A plain array instead of a
 *                 1x1 cell is accepted for both.
 *   ct.resolution struct with x, y, z (mm) or a 1x3 vector [x y z]
 *   ct.x, ct.y, ct.z (optional) voxel-centre coordinates, mm
 *   cst           N x (>= 4) cell: {i,2} name, {i,3} 'TARGET' or 'OAR',
 *                 {i,4}{1} linear voxel indices (1-based, into [ny nx nz]),
 *                 {i,5}.Priority (optional, >= 1)
 * MATLAB voxel (row r, column c, slice s) is imrt voxel (i, j, k) =
 * (c-1, r-1, s-1), linear index i + nx*(j + ny*k). The imrt origin is
 * (ct.x(1), ct.y(1), ct.z(1)) when present, else (dx, dy, dz): matRad's
 * default cube coordinates, where voxel (1,1,1) is centred one resolution
 * step from zero. A structure named BODY or External (any case) becomes
 * IMRT_KIND_BODY; TARGET -> IMRT_KIND_TARGET; anything else -> OAR.
 *
 * Robustness: before libmatio parses a v5/v7 file, the importer walks it
 * (streaming): every variable must fit in the file, compressed variables
 * must inflate completely with a valid checksum, and every array's
 * sub-elements must fit their parents with dimensions matching their data.
 * Anything else is IMRT_ERR_FORMAT with a message, never a crash.
 *
 * Ownership: imported phantoms belong to the caller (imrt_phantom_destroy).
 * Thread safety: libmatio's log handler is process-wide; the importer and
 * exporter install a silent one (matio would otherwise print, and its
 * default handler aborts on internal errors). Do not run them concurrently
 * with other libmatio users that rely on their own handler.
 */
#ifndef IMRT_MATRAD_H
#define IMRT_MATRAD_H

#include "imrt/phantom.h"
#include "imrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMRT_HU_TABLE_MAX 32

/* Piecewise-linear HU -> RED table: points sorted by strictly increasing HU
 * with non-decreasing RED (so that it can be inverted); outside the table
 * the end values hold (as in matRad). */
typedef struct {
    int n;                          /* points in use, 2..IMRT_HU_TABLE_MAX */
    double hu[IMRT_HU_TABLE_MAX];   /* Hounsfield units */
    double red[IMRT_HU_TABLE_MAX];  /* relative electron density */
} imrt_hu_table;

/* The default table (spec/physics.md section 2): (-1024, 0.001)
 * (-1000, 0.001) (0, 1.0) (1000, 1.55) (2000, 2.1) (3071, 2.7). */
void imrt_hu_table_default(imrt_hu_table *t);

/* Check ordering and finiteness. IMRT_ERR_ARG (NULL) or IMRT_ERR_RANGE
 * naming the offending point. */
imrt_status imrt_hu_table_validate(const imrt_hu_table *t);

/* HU -> RED by linear interpolation, clamped to the end values. */
double imrt_hu_to_red(const imrt_hu_table *t, double hu);

/* RED -> HU, the inverse: on a flat stretch (equal RED) the highest HU of
 * that stretch; below the first RED the first HU, above the last the last
 * HU. For RED within the table, imrt_hu_to_red(imrt_red_to_hu(r)) == r up
 * to rounding. */
double imrt_red_to_hu(const imrt_hu_table *t, double red);

/* Read a matRad MAT file (v5 or v7; v7.3 when libmatio has HDF5) into a new
 * phantom named after the file stem. table NULL = default table.
 * Returns IMRT_OK, IMRT_ERR_ARG (NULL arguments, bad table), IMRT_ERR_IO
 * (cannot open), IMRT_ERR_FORMAT (not a MAT file, truncated or corrupt,
 * missing or malformed ct/cst, voxel indices outside the cube),
 * IMRT_ERR_RANGE (cube too large, bad resolution), IMRT_ERR_NOMEM. */
imrt_status imrt_matrad_import(const char *path, const imrt_hu_table *table,
                               imrt_phantom **out);

/* Write phantom p as a matRad MAT file (v5, compressed): ct.cube{1} (RED),
 * ct.cubeHU{1} (HU through the inverse default table), ct.resolution,
 * ct.cubeDim, ct.numOfCtScen, ct.x/y/z, and cst (one row per structure:
 * index, name, 'TARGET' or 'OAR', voxel indices, properties with
 * Priority, empty objectives). The file is written under a temporary name
 * and renamed into place; an existing file is replaced.
 * Returns IMRT_OK, IMRT_ERR_ARG, IMRT_ERR_IO, IMRT_ERR_NOMEM. */
imrt_status imrt_matrad_export(const imrt_phantom *p, const char *path);

/* As imrt_matrad_export with a chosen HU table (NULL = default). */
imrt_status imrt_matrad_export_table(const imrt_phantom *p, const imrt_hu_table *table,
                                     const char *path);

#ifdef __cplusplus
}
#endif
#endif /* IMRT_MATRAD_H */
