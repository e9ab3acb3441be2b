// Elementwise and data-movement kernels: our own OpenMP loops, each op in a loop of its own so that it vectorises.
#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace ddpm {

namespace {

// ------------------------------------------------------------------------------------------------ broadcasting

/** Merges adjacent dimensions that are contiguous for every operand (strides given per operand). */
void collapse(Dims& shape, std::vector<Dims*> strides) {
  Dims s2;
  std::vector<Dims> st2(strides.size());
  for (size_t i = 0; i < shape.size(); i++) {
    if (shape[i] == 1) continue;
    bool merge = !s2.empty();
    for (size_t o = 0; merge && o < strides.size(); o++) merge = st2[o].back() == (*strides[o])[i] * shape[i];
    if (merge) {
      s2.back() *= shape[i];
      for (size_t o = 0; o < strides.size(); o++) st2[o].back() = (*strides[o])[i];
    } else {
      s2.push_back(shape[i]);
      for (size_t o = 0; o < strides.size(); o++) st2[o].push_back((*strides[o])[i]);
    }
  }
  if (s2.empty()) {
    s2.push_back(1);
    for (auto& s : st2) s.push_back(0);
  }
  shape = s2;
  for (size_t o = 0; o < strides.size(); o++) *strides[o] = st2[o];
}

Dims bstrides(const Dims& shape, const Dims& out) {
  Dims st(out.size(), 0);
  int64_t acc = 1;
  for (int i = (int)shape.size() - 1; i >= 0; i--) {
    st[i] = (shape[i] == 1 && out[i] != 1) ? 0 : acc;
    acc *= shape[i];
  }
  return st;
}

template <typename F>
void binaryLoop(const float* a, const float* b, float* y, Dims shape, Dims sa, Dims sb, F f) {
  Dims sy = bstrides(shape, shape);
  collapse(shape, {&sa, &sb, &sy});
  int r = (int)shape.size();
  int64_t L = shape[r - 1], la = sa[r - 1], lb = sb[r - 1];
  int64_t rows = (int64_t)prod(shape) / L;
#pragma omp parallel for schedule(static) if (rows * L > (int64_t)kParallelMin)
  for (int64_t row = 0; row < rows; row++) {
    int64_t ia = 0, ib = 0, rem = row;
    for (int d = r - 2; d >= 0; d--) {
      int64_t idx = rem % shape[d];
      rem /= shape[d];
      ia += idx * sa[d];
      ib += idx * sb[d];
    }
    float* yr = y + row * L;
    const float* ar = a + ia;
    const float* br = b + ib;
    if (la == 1 && lb == 1)
      for (int64_t j = 0; j < L; j++) yr[j] = f(ar[j], br[j]);
    else if (la == 1)
      for (int64_t j = 0; j < L; j++) yr[j] = f(ar[j], br[0]);
    else if (lb == 1)
      for (int64_t j = 0; j < L; j++) yr[j] = f(ar[0], br[j]);
    else
      for (int64_t j = 0; j < L; j++) yr[j] = f(ar[j * la], br[j * lb]);
  }
}

/** y[i] = f(x[i]) over n values, one loop per op so that each vectorises (no dispatch inside the loop). */
template <class F>
void mapUnary(const float* xp, float* yp, int64_t n, F f) {
#pragma omp parallel for simd schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) yp[i] = f(xp[i]);
}

/** dx[i] = f(x[i], y[i]) * dy[i] */
template <class F>
void mapUnaryBackward(const float* xp, const float* yp, const float* dyp, float* dxp, int64_t n, F f) {
#pragma omp parallel for simd schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) dxp[i] = f(xp[i], yp[i]) * dyp[i];
}

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)

}  // namespace

void binary(int op, const float* a, const Dims& as, const float* b, const Dims& bs, const Dims& os, float* y) {
  if (prod(os) == 0) return;
  Dims sa = bstrides(as, os), sb = bstrides(bs, os);
  switch (op) {
    case 0:
      binaryLoop(a, b, y, os, sa, sb, [](float u, float v) { return u + v; });
      break;
    case 1:
      binaryLoop(a, b, y, os, sa, sb, [](float u, float v) { return u - v; });
      break;
    case 2:
      binaryLoop(a, b, y, os, sa, sb, [](float u, float v) { return u * v; });
      break;
    default:
      binaryLoop(a, b, y, os, sa, sb, [](float u, float v) { return u / v; });
      break;
  }
}

void reduceSum(const float* x, const Dims& xs, const Dims& os, float* y) {
  const size_t xn = prod(xs), yn = prod(os);
  if (yn == 0) return;
  if (xn == 0) {
    std::fill(y, y + yn, 0.f);
    return;
  }
  // split dims into kept (out stride != 0) and reduced
  Dims sx = bstrides(xs, xs), so = bstrides(os, xs), shape = xs;
  collapse(shape, {&sx, &so});
  Dims keptShape, keptStride, redShape, redStride;
  for (size_t i = 0; i < shape.size(); i++) {
    if (so[i] != 0) {
      keptShape.push_back(shape[i]);
      keptStride.push_back(sx[i]);
    } else {
      redShape.push_back(shape[i]);
      redStride.push_back(sx[i]);
    }
  }
  int64_t nOut = (int64_t)yn;
  int64_t nRed = (int64_t)prod(redShape);
  int kr = (int)keptShape.size(), rr = (int)redShape.size();
  // few outputs (a full reduction): split each one's reduced range across threads instead of the outputs
  const bool splitReduced = nOut < 4 && rr > 0 && xn > kParallelMin;
  const int64_t L = rr ? redShape[rr - 1] : 1, ls = rr ? redStride[rr - 1] : 0;
#pragma omp parallel for schedule(static) if (xn > kParallelMin && !splitReduced)
  for (int64_t o = 0; o < nOut; o++) {
    int64_t base = 0, rem = o;
    for (int d = kr - 1; d >= 0; d--) {
      base += (rem % keptShape[d]) * keptStride[d];
      rem /= keptShape[d];
    }
    double acc = 0;
    if (rr == 0)
      acc = x[base];
    else {
#pragma omp parallel for reduction(+ : acc) schedule(static) if (splitReduced)
      for (int64_t r0 = 0; r0 < nRed / L; r0++) {
        int64_t off = base, rm = r0;
        for (int d = rr - 2; d >= 0; d--) {
          off += (rm % redShape[d]) * redStride[d];
          rm /= redShape[d];
        }
        float part = 0;
        for (int64_t j = 0; j < L; j++) part += x[off + j * ls];
        acc += part;
      }
    }
    y[o] = (float)acc;
  }
}

// ------------------------------------------------------------------------------------------------ elementwise

void unary(int op, const float* xp, float* yp, int64_t n) {
  switch (op) {
    case 0:
      mapUnary(xp, yp, n, [](float v) { return std::exp(v); });
      break;
    case 1:
      mapUnary(xp, yp, n, [](float v) { return std::log(v); });
      break;
    case 2:
      mapUnary(xp, yp, n, [](float v) { return std::sqrt(v); });
      break;
    case 3:
      mapUnary(xp, yp, n, [](float v) { return v * v; });
      break;
    case 4:
      mapUnary(xp, yp, n, [](float v) { return std::tanh(v); });
      break;
    case 5:
      mapUnary(xp, yp, n, [](float v) { return v * sigm(v); });
      break;
    case 6:
      mapUnary(xp, yp, n, [](float v) { return -v; });
      break;
    default:
      mapUnary(xp, yp, n, [](float v) { return 0.5f * (1.f + std::tanh(kGeluC * (v + 0.044715f * v * v * v))); });
      break;
  }
}

void unaryBackward(int op, const float* xp, const float* yp, const float* dyp, float* dxp, int64_t n) {
  switch (op) {
    case 0:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return y; });
      break;
    case 1:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) { return 1.f / v; });
      break;
    case 2:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return 0.5f / y; });
      break;
    case 3:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) { return 2.f * v; });
      break;
    case 4:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return 1.f - y * y; });
      break;
    case 5:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) {
        float s = sigm(v);
        return s * (1.f + v * (1.f - s));
      });
      break;
    case 6:
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float) { return -1.f; });
      break;
    default:  // ncdf: d/dx 0.5 (1 + tanh(u)), u = c (x + 0.044715 x^3)
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) {
        float th = std::tanh(kGeluC * (v + 0.044715f * v * v * v));
        return 0.5f * (1.f - th * th) * kGeluC * (1.f + 3.f * 0.044715f * v * v);
      });
      break;
  }
}

void clamp(const float* x, float lo, float hi, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) y[i] = std::min(hi, std::max(lo, x[i]));
}

void clampBackward(const float* x, float lo, float hi, const float* dy, float* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : 0.f;
}

void affine(const float* x, float al, float bt, float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) y[i] = al * x[i] + bt;
}

// ------------------------------------------------------------------------------------------------ softmax

void softmax(const float* x, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols > (int64_t)kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < cols; j++) mx = std::max(mx, xr[j]);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < cols; j++) {
      float e = vexp(xr[j] - mx);
      yr[j] = e;
      s += e;
    }
    float inv = 1.f / s;
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
  }
}

void softmaxBackward(const float* y, const float* dy, int64_t rows, int64_t cols, float* dx) {
#pragma omp parallel for schedule(static) if (rows * cols > (int64_t)kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    float dot = 0;
    for (int64_t j = 0; j < cols; j++) dot += yr[j] * gr[j];
    for (int64_t j = 0; j < cols; j++) dr[j] = yr[j] * (gr[j] - dot);
  }
}

// ------------------------------------------------------------------------------------------------ data movement

void permute(const float* x, const Dims& xs, const Dims& perm, float* y) {
  if (prod(xs) == 0) return;
  Dims in_st = bstrides(xs, xs), os(xs.size()), sx(xs.size());
  for (size_t i = 0; i < xs.size(); i++) {
    os[i] = xs[perm[i]];
    sx[i] = in_st[perm[i]];
  }
  Dims zero(os.size(), 0);
  binaryLoop(x, x, y, os, sx, zero, [](float u, float) { return u; });
}

void concat(const std::vector<const float*>& inputs, const Dims& channels, int64_t N, int64_t S, float* y) {
  int64_t Ctot = 0;
  for (auto c : channels) Ctot += c;
#pragma omp parallel for schedule(static) if (N * Ctot * S > (int64_t)kParallelMin)
  for (int64_t n = 0; n < N; n++) {
    int64_t c0 = 0;
    for (size_t i = 0; i < inputs.size(); i++) {
      int64_t c = channels[i];
      if (c * S != 0) std::memcpy(y + (n * Ctot + c0) * S, inputs[i] + n * c * S, sizeof(float) * c * S);
      c0 += c;
    }
  }
}

void sliceChannels(const float* x, const Dims& xs, int64_t c0, int64_t c, float* y) {
  int64_t N = xs[0], C = xs[1], S = 1;
  for (size_t k = 2; k < xs.size(); k++) S *= xs[k];
  for (int64_t n = 0; n < N; n++)
    if (c * S != 0) std::memcpy(y + n * c * S, x + (n * C + c0) * S, sizeof(float) * c * S);
}

void upsample2x(const float* x, const Dims& xs, int64_t layout, float* y) {
  // values per pixel: one (NCHW), the channel block (nChw16c) or all channels (NHWC)
  const int64_t V = layout == kBlocked16 ? 16 : layout == kNHWC ? xs[1] : 1;
  int64_t NC = xs[0] * xs[1] / V, H = xs[2], W = xs[3];
#pragma omp parallel for schedule(static) if (prod(xs) * 4 > kParallelMin)
  for (int64_t nc = 0; nc < NC; nc++)
    for (int64_t h = 0; h < 2 * H; h++) {
      const float* xr = x + (nc * H + h / 2) * W * V;
      float* yr = y + (nc * 2 * H + h) * 2 * W * V;
      for (int64_t w = 0; w < 2 * W; w++)
        for (int64_t v = 0; v < V; v++) yr[w * V + v] = xr[(w >> 1) * V + v];
    }
}

void pool2d(int kind, const float* x, const Dims& xs, int64_t k, int64_t st, int64_t pad, float* y) {
  int64_t NC = xs[0] * xs[1], H = xs[2], W = xs[3];
  int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
#pragma omp parallel for schedule(static) if (NC * Ho * Wo > (int64_t)kParallelMin)
  for (int64_t nc = 0; nc < NC; nc++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        float acc = kind == 0 ? -INFINITY : 0.f;
        int64_t n = 0;
        for (int64_t i = 0; i < k; i++) {
          int64_t h = oh * st - pad + i;
          if (h < 0 || h >= H) continue;
          for (int64_t j = 0; j < k; j++) {
            int64_t w = ow * st - pad + j;
            if (w < 0 || w >= W) continue;
            float v = x[(nc * H + h) * W + w];
            acc = kind == 0 ? std::max(acc, v) : acc + v;
            n++;
          }
        }
        y[(nc * Ho + oh) * Wo + ow] = kind == 0 ? acc : acc / (float)(kind == 1 ? k * k : n);
      }
}

void upsample2xBackward(const float* dy, const Dims& xs, int64_t layout, float* dx) {
  const int64_t V = layout == kBlocked16 ? 16 : layout == kNHWC ? xs[1] : 1;  // values per pixel
  int64_t NC = xs[0] * xs[1] / V, H = xs[2], W = xs[3];
#pragma omp parallel for schedule(static) if (prod(xs) * 4 > kParallelMin)
  for (int64_t nc = 0; nc < NC; nc++)
    for (int64_t h = 0; h < H; h++) {
      const float* r0 = dy + (nc * 2 * H + 2 * h) * 2 * W * V;
      const float* r1 = r0 + 2 * W * V;
      float* o = dx + (nc * H + h) * W * V;
      for (int64_t w = 0; w < W; w++)
        for (int64_t v = 0; v < V; v++)
          o[w * V + v] = r0[2 * w * V + v] + r0[(2 * w + 1) * V + v] + r1[2 * w * V + v] + r1[(2 * w + 1) * V + v];
    }
}

}  // namespace ddpm
