// Optimiser kernels: the Adam step, the EMA of the weights, and the in-place updates of gradient clipping.
#pragma once

#include "common.h"

namespace ddpm {

/** One Adam step (decoupled weight decay) on n parameters p with gradients g and moments m, v; step >= 1. */
void adamStep(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
              double eps, double weightDecay, int64_t step);

/** ema = decay ema + (1 - decay) p */
void emaUpdate(float* ema, const float* p, int64_t n, float decay);

/** The sum of x[i]^2, accumulated in double. */
double sumSquares(const float* x, int64_t n);

/** x *= s */
void scaleInPlace(float* x, int64_t n, float s);

/** x += y */
void addInPlace(float* x, const float* y, int64_t n);

}  // namespace ddpm
