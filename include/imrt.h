/*
 * imrt.h - the public interface of libimrt: includes every module header.
 */
#ifndef IMRT_H
#define IMRT_H

#include "imrt/alloc.h"
#include "imrt/beam.h"
#include "imrt/compare.h"
#include "imrt/conformal.h"
#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/dose.h"
#include "imrt/grid.h"
#include "imrt/io.h"
#include "imrt/machine.h"
#include "imrt/matrad.h"
#include "imrt/metrics.h"
#include "imrt/nifti.h"
#include "imrt/objectives.h"
#include "imrt/optimize.h"
#include "imrt/phantom.h"
#include "imrt/pipeline.h"
#include "imrt/plan.h"
#include "imrt/plot.h"
#include "imrt/raytrace.h"
#include "imrt/report.h"
#include "imrt/spec.h"
#include "imrt/spmv.h"
#include "imrt/status.h"

#endif /* IMRT_H */
