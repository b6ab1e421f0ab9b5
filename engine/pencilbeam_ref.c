/*
 * engine/pencilbeam_ref.c - the reference FSPB row kernel: the formula of
 * spec/physics.md section 5 evaluated beamlet by beamlet with four erf
 * calls per component, no tables. The tabulated kernel (pencilbeam.c) is
 * checked against it.
 */
#include "pencilbeam_impl.h"

int64_t imrt_fspb_row_ref(const imrt_fspb_beam *B, const imrt_fspb_point *P, double *work,
                          int32_t *col, double *val)
{
    const imrt_beam *b = B->beam;
    const double w = B->w;
    int jv0, jv1, ju0, ju1, pu0 = 0, pu1 = -1, pv0 = 0, pv1 = -1;
    if (imrt_fspb_window(B, P->u, P->v, P->R, &ju0, &ju1, &jv0, &jv1) == 0)
        return 0;
    /* The primary term lives on the cells within rp of the point along each axis. */
    if (!imrt_fspb_axis_range(P->u, b->u0, w, b->nu, P->rp, &pu0, &pu1))
        pu1 = pu0 - 1;
    if (!imrt_fspb_axis_range(P->v, b->v0, w, b->nv, P->rp, &pv0, &pv1))
        pv1 = pv0 - 1;
    /* Every present cell adds its dose to the window cell nearest to it. */
    const int wn = ju1 - ju0 + 1, wv = jv1 - jv0 + 1;
    double *acc = work;
    for (int q = 0; q < wn * wv; q++)
        acc[q] = 0.0;
    for (int iv = 0; iv < b->nv; iv++) {
        const double dy = P->v - (b->v0 + iv * w);
        for (int iu = 0; iu < b->nu; iu++) {
            if (b->cell[iu + (int64_t)b->nu * iv] < 0 || !imrt_fspb_within(b, w, P, iu, iv))
                continue;
            const double dx = P->u - (b->u0 + iu * w);
            double prim = 0.0;
            if (iu >= pu0 && iu <= pu1 && iv >= pv0 && iv <= pv1)
                prim = imrt_fspb_p(dx, w, P->sp) * imrt_fspb_p(dy, w, P->sp);
            const double scat = imrt_fspb_p(dx, w, P->ss) * imrt_fspb_p(dy, w, P->ss);
            const int tu = iu < ju0 ? ju0 : (iu > ju1 ? ju1 : iu);
            const int tv = iv < jv0 ? jv0 : (iv > jv1 ? jv1 : iv);
            acc[(tu - ju0) + wn * (tv - jv0)] += P->pre * ((1.0 - P->a) * prim + P->a * scat);
        }
    }
    imrt_fspb_fold_absent(b, NULL, ju0, ju1, jv0, jv1, acc);
    int64_t n = 0;
    for (int iv = jv0; iv <= jv1; iv++)
        for (int iu = ju0; iu <= ju1; iu++) {
            const int32_t c = b->cell[iu + (int64_t)b->nu * iv];
            if (c < 0 || !imrt_fspb_within(b, w, P, iu, iv))
                continue;
            col[n] = c;
            val[n] = acc[(iu - ju0) + wn * (iv - jv0)];
            n++;
        }
    (void)wv;
    return n;
}
