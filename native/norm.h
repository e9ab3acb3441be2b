// Group norm, optionally fused with SiLU, forward and backward: our own OpenMP loops (oneDNN 2.6 has no group norm).
#pragma once

#include "common.h"

namespace ddpm {

/** [N, C, ...] as N samples of C channels of S values each, in G groups (C a multiple of G). */
struct GNArgs {
  int64_t N, C, S, G;
};

/**
 * y = group norm of x (then SiLU when silu), scaled by gamma and shifted by beta per channel; mean and rstd [N * G]
 * receive each group's statistics. x and y in `layout` (NCHW, nChw16c or NHWC, see Layout).
 */
void groupNorm(const GNArgs& A, int64_t layout, const float* x, const float* gamma, const float* beta, double eps,
               bool silu, float* y, float* mean, float* rstd);

/** The gradients dx, dgamma, dbeta of groupNorm from dy, given its mean and rstd. x, dy and dx in `layout`. */
void groupNormBackward(const GNArgs& A, int64_t layout, const float* x, const float* gamma, const float* beta,
                       const float* mean, const float* rstd, bool silu, const float* dy, float* dx, float* dgamma,
                       float* dbeta);

}  // namespace ddpm
