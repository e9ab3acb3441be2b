// Elementwise kernels: binary ops with broadcasting, sums over broadcast dimensions, unary ops and their gradients,
// clamp, affine maps and row softmax; and data movement (permute, concat, channel slices, upsampling, pooling).
// Shapes come validated (see binding.cc); buffers hold prod(shape) floats.
#pragma once

#include "common.h"

namespace ddpm {

/** y = a op b, op 0 add 1 sub 2 mul 3 div; as and bs broadcast to os (equal ranks, dims equal or 1). */
void binary(int op, const float* a, const Dims& as, const float* b, const Dims& bs, const Dims& os, float* y);

/** y = x summed down to os (xs's rank, dims equal to xs's or 1). */
void reduceSum(const float* x, const Dims& xs, const Dims& os, float* y);

/** y = f(x) over n values, op 0 exp 1 log 2 sqrt 3 square 4 tanh 5 silu 6 neg 7 ncdf. */
void unary(int op, const float* x, float* y, int64_t n);

/** dx = f'(x) dy for the ops of unary (y: its output). */
void unaryBackward(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n);

/** y = min(hi, max(lo, x)); clampBackward: dx = dy where lo <= x <= hi, else 0. */
void clamp(const float* x, float lo, float hi, float* y, int64_t n);
void clampBackward(const float* x, float lo, float hi, const float* dy, float* dx, int64_t n);

/** y = alpha x + beta */
void affine(const float* x, float alpha, float beta, float* y, int64_t n);

/** Softmax of each row of x [rows, cols], and its gradient dx from y and dy. */
void softmax(const float* x, int64_t rows, int64_t cols, float* y);
void softmaxBackward(const float* y, const float* dy, int64_t rows, int64_t cols, float* dx);

// ------------------------------------------------------------------------------------------------ data movement

/** y = x transposed: y's dimension i is x's dimension perm[i]. */
void permute(const float* x, const Dims& xs, const Dims& perm, float* y);

/** y [N, sum of channels, S] = the inputs [N, channels[i], S] one after the other along axis 1. */
void concat(const std::vector<const float*>& inputs, const Dims& channels, int64_t N, int64_t S, float* y);

/** y [N, c, ...] = channels c0 .. c0 + c - 1 of x [N, C, ...]. */
void sliceChannels(const float* x, const Dims& xs, int64_t c0, int64_t c, float* y);

/** Nearest-neighbour 2x of x [N, C, H, W] (y [N, C, 2H, 2W]), and its gradient; both in `layout`. */
void upsample2x(const float* x, const Dims& xs, int64_t layout, float* y);
void upsample2xBackward(const float* dy, const Dims& xs, int64_t layout, float* dx);

/** k x k pooling of x [N, C, H, W] (NCHW), kind 0 max, 1 average counting padding, 2 average over valid positions. */
void pool2d(int kind, const float* x, const Dims& xs, int64_t k, int64_t stride, int64_t pad, float* y);

}  // namespace ddpm
