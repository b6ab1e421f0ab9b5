/*
 * tests/test_mat.h - the small matRad variables the tests write with
 * libmatio: a 3 x 4 x 2 CT struct and a one-structure cst (shared by
 * test_matrad.c and test_badinput.c).
 */
#ifndef IMRT_TEST_MAT_H
#define IMRT_TEST_MAT_H

#include <matio.h>
#include <stdint.h>
#include <string.h>

/* ct with cubeHU{1} of [ny nx nz] = [3 4 2] (cube: 24 values, MATLAB
 * order) and resolution x, y, z = 2, 3, 4 mm. The caller frees it. */
static inline matvar_t *imrt_test_mat_ct(double *cube)
{
    size_t d3[3] = {3, 4, 2}, d11[2] = {1, 1};
    const char *fields[] = {"cubeHU", "resolution"};
    matvar_t *ct = Mat_VarCreateStruct("ct", 2, d11, fields, 2);
    matvar_t *cell = Mat_VarCreate(NULL, MAT_C_CELL, MAT_T_CELL, 2, d11, NULL, 0);
    Mat_VarSetCell(cell, 0, Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 3, d3, cube, 0));
    Mat_VarSetStructFieldByName(ct, "cubeHU", 0, cell);
    const char *rf[] = {"x", "y", "z"};
    matvar_t *res = Mat_VarCreateStruct(NULL, 2, d11, rf, 3);
    double r3[3] = {2.0, 3.0, 4.0};
    for (int a = 0; a < 3; a++)
        Mat_VarSetStructFieldByName(res, rf[a], 0,
                                    Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d11,
                                                  &r3[a], 0));
    Mat_VarSetStructFieldByName(ct, "resolution", 0, res);
    return ct;
}

/* cst with one structure "Marker" of kind `type` (at most 16 characters)
 * holding the 1-based voxel indices ind[0..nind-1]. The caller frees it. */
static inline matvar_t *imrt_test_mat_cst(const char *type, const double *ind, size_t nind)
{
    size_t d4[2] = {1, 4}, d11[2] = {1, 1};
    matvar_t *cst = Mat_VarCreate("cst", MAT_C_CELL, MAT_T_CELL, 2, d4, NULL, 0);
    double zero = 0.0;
    Mat_VarSetCell(cst, 0, Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d11, &zero, 0));
    uint16_t nm[6] = {'M', 'a', 'r', 'k', 'e', 'r'};
    size_t dn[2] = {1, 6};
    Mat_VarSetCell(cst, 1, Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT16, 2, dn, nm, 0));
    uint16_t ty[16];
    size_t tl = strlen(type);
    tl = tl < 16 ? tl : 16;
    for (size_t i = 0; i < tl; i++)
        ty[i] = (uint16_t)type[i];
    size_t dt[2] = {1, tl};
    Mat_VarSetCell(cst, 2, Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT16, 2, dt, ty, 0));
    size_t di[2] = {nind, 1};
    matvar_t *ic = Mat_VarCreate(NULL, MAT_C_CELL, MAT_T_CELL, 2, d11, NULL, 0);
    Mat_VarSetCell(ic, 0, Mat_VarCreate(NULL, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, di,
                                        (void *)(uintptr_t)ind, 0));
    Mat_VarSetCell(cst, 3, ic);
    return cst;
}

#endif /* IMRT_TEST_MAT_H */
