// The oneDNN side of the native backend: convolutions (forward, data and weight gradients) through cached primitives,
// the activation layouts and reorders between them, and matrix products through oneDNN's sgemm. The functions here
// take validated shapes and raw buffers; they throw dnnl::error when oneDNN refuses (the binding reports it).
#pragma once

#include <dnnl.hpp>

#include <string>

#include "common.h"

namespace ddpm {

// ------------------------------------------------------------------------------------------------ oneDNN state

/** The process-wide CPU engine and its stream (one JavaScript thread owns the addon at a time; see binding.cc). */
dnnl::engine& eng();
dnnl::stream& strm();

/** Whether oneDNN has bfloat16 convolution kernels with native instructions here (AVX512-BF16 or AMX). */
bool cpuHasBf16();

/** Whether this CPU runs x86-64-v3 code (AVX2, FMA, BMI2...), the level of the second build of the addon. */
bool cpuHasV3();

/** Whether this CPU runs x86-64-v4 code (v3 and AVX-512 F/BW/CD/DQ/VL), the level of the third build. */
bool cpuHasV4();

// ------------------------------------------------------------------------------------------------ convolutions

struct ConvKey {
  Dims xs, ws;
  int64_t stride, pt, pb, pl, pr;
  bool bias;
  bool bf16 =
      false;  // forward only: input and weights rounded to bfloat16, products accumulated and written in float32
  std::string str() const {
    std::ostringstream s;
    s << dimsStr(xs) << dimsStr(ws) << stride << ',' << pt << ',' << pb << ',' << pl << ',' << pr << ',' << bias << ','
      << bf16;
    return s.str();
  }
};

/** The output shape [N, O, Ho, Wo] of a convolution. */
Dims convOut(const ConvKey& k);

/** A weight buffer of the caller: its identity and the version of the values it holds (see conv2dForward). */
struct WeightTag {
  double id, version;
};

/**
 * y = conv(x, w) (+ b when k.bias) for x [N, C, H, W] in layout xLayout; returns the layout y was written in.
 * wTag (may be null): the weight buffer's identity and version, under which its reordered copy is kept. keep: y may be
 * left in the primitive's own output layout when it is one of ours; else y is NCHW. k.bf16 needs cpuHasBf16().
 */
int64_t conv2dForward(const ConvKey& k, const float* x, int64_t xLayout, const float* w, const WeightTag* wTag,
                      const float* b, float* y, bool keep);

/**
 * Both gradients of a convolution: dx (may be null: not computed) in the returned layout, dw, and db when k.bias.
 * x in xLayout, dy in dyLayout; keep: dx may be left in the primitive's layout when it is one of ours.
 */
int64_t conv2dBackward(const ConvKey& k, const float* x, int64_t xLayout, const float* dy, int64_t dyLayout,
                       const float* w, float* dx, float* dw, float* db, bool keep);

/** 1 Winograd, 0 direct (see conv_algorithm in conv.cc); a change drops the cached primitives (and weight copies). */
void setConvAlgorithm(int algorithm);

/** oneDNN's names of the kernels a float32 convolution of these shapes runs (e.g. "jit_wino_4x3:avx512_core"). */
struct ConvImpls {
  std::string forward, backwardData, backwardWeights;
};
ConvImpls convImplementations(const ConvKey& k);

/** The entries in the convolution cache, its limit, and dropping them all (the weight copies with them). */
size_t convCacheEntries();
size_t convCacheLimit();
void convCacheClear();

// ------------------------------------------------------------------------------------------------ layouts, matmul

/** y = x, [N, C, H, W] from layout `from` to layout `to`. */
void relayout(const Dims& d, int64_t from, int64_t to, const float* x, float* y);

/** out[b] = op(A[b]) op(B[b]) for b < batch through oneDNN's sgemm; the first status that is not dnnl_success. */
dnnl_status_t matmul(int64_t batch, int64_t m, int64_t k, int64_t n, bool transA, bool transB, const float* a,
                     const float* b, float* c);

}  // namespace ddpm
