/*
 * imrt.h - the public interface of libimrt: includes every module header.
 */
#ifndef IMRT_H
#define IMRT_H

#include "imrt/alloc.h"
#include "imrt/beam.h"
#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/dose.h"
#include "imrt/grid.h"
#include "imrt/machine.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/raytrace.h"
#include "imrt/status.h"

#endif /* IMRT_H */
