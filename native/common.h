// What the native kernels share: the dimension type, the OpenMP threshold, the activation layouts and the vector
// helpers. No N-API and no oneDNN here: a kernel file includes this, its own header and nothing of the JavaScript side.
//
// The files of the addon, by family (binding.gyp lists the sources):
//   binding.cc, binding_ops.cc, binding.h   N-API glue: every argument read and validated, then a kernel called;
//                                           binding.cc has the oneDNN entry points and the module's exports
//   conv.cc / conv.h         oneDNN: convolutions, their primitive and weight caches, layouts (reorders), matmul
//   norm.cc / norm.h         group norm (+SiLU), forward and backward, plain and blocked
//   elementwise.cc / .h      broadcasting binary ops, reductions, unary ops, softmax; permute, concat, channel slices,
//                            upsampling, pooling
//   optim.cc / optim.h       Adam, EMA, in-place add / scale, sum of squares
//   random.cc / random.h     Philox dropout masks
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace ddpm {

using Dims = std::vector<int64_t>;

/** Loops over at most this many values run on the calling thread alone (no OpenMP team). */
constexpr size_t kParallelMin = 1 << 14;

inline std::string dimsStr(const Dims& d) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < d.size(); i++) s << (i ? "," : "") << d[i];
  s << "]";
  return s.str();
}

inline size_t prod(const Dims& d) {
  size_t s = 1;
  for (auto x : d) s *= (size_t)x;
  return s;
}

/**
 * Activation layouts of [N, C, H, W] float32 buffers: 0 NCHW; 1 nChw16c, channel-blocked (C a multiple of 16, so no
 * padding and the size of NCHW), what oneDNN's f32 convolutions compute in here; 2 NHWC, what its bf16 ones use.
 */
enum Layout { kNCHW = 0, kBlocked16 = 1, kNHWC = 2 };

/** exp(x) for float, vectorisable: 2^n e^f with |f| <= ln2/2 and a degree-6 polynomial (relative error ~2e-7). */
#pragma omp declare simd notinbranch
inline float vexp(float x) {
  x = std::min(88.3f, std::max(-87.3f, x));
  float n = std::nearbyint(x * 1.44269504088896341f);
  float f = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p =
      1.f +
      f * (1.f + f * (0.5f + f * (0.166666672f + f * (0.0416666269f + f * (0.00833336543f + f * 0.00138925773f)))));
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

#pragma omp declare simd notinbranch
inline float sigm(float v) {
  return 1.f / (1.f + vexp(-v));
}

}  // namespace ddpm
