/*
 * imrt.h - the public interface of libimrt: includes every module header.
 */
#ifndef IMRT_H
#define IMRT_H

#include "imrt/alloc.h"
#include "imrt/context.h"
#include "imrt/dij.h"
#include "imrt/grid.h"
#include "imrt/matrad.h"
#include "imrt/phantom.h"
#include "imrt/plan.h"
#include "imrt/spec.h"
#include "imrt/status.h"

#endif /* IMRT_H */
