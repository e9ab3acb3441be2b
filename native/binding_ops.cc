// The N-API glue of the OpenMP kernels: elementwise, data movement, dropout masks, group norm and the optimiser. Each
// function reads and checks its arguments (binding.h) and calls its kernel; binding.cc exports them.
#include <cmath>
#include <cstdint>
#include <vector>

#include "binding.h"
#include "elementwise.h"
#include "norm.h"
#include "optim.h"
#include "random.h"

namespace ddpm {

namespace {

GNArgs gnArgs(const Napi::CallbackInfo& info, const char* fn, const Dims& xs, int64_t G) {
  if (xs.size() < 2) fail(info.Env(), fn, "input must be [N, C, ...], got " + dimsStr(xs));
  GNArgs a{xs[0], xs[1], 1, G};
  for (size_t i = 2; i < xs.size(); i++) a.S *= xs[i];
  if (G < 1 || a.C % G != 0)
    fail(info.Env(), fn, std::to_string(a.C) + " channels do not split into " + std::to_string(G) + " groups");
  return a;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ elementwise

// binary(op, a, as, b, bs, outShape, out)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  const char* fn = "binary";
  int64_t op = getInt(info, 0, fn, "op", 0, 3);
  Dims as = getDims(info, 2, fn, "a shape"), bs = getDims(info, 4, fn, "b shape"),
       os = getDims(info, 5, fn, "output shape");
  if (as.size() != os.size() || bs.size() != os.size()) fail(info.Env(), fn, "shapes must have equal rank");
  for (size_t i = 0; i < os.size(); i++)
    if ((as[i] != os[i] && as[i] != 1) || (bs[i] != os[i] && bs[i] != 1))
      fail(info.Env(), fn, "shapes " + dimsStr(as) + " and " + dimsStr(bs) + " do not broadcast to " + dimsStr(os));
  Buf a = getBuf(info, 1, fn, "a", prod(as)), b = getBuf(info, 3, fn, "b", prod(bs)),
      y = getBuf(info, 6, fn, "out", prod(os));
  binary((int)op, a.p, as, b.p, bs, os, y.p);
  return info.Env().Undefined();
}

// reduceSum(x, xs, outShape, out): sums x down to outShape (dims equal or 1)
Napi::Value ReduceSum(const Napi::CallbackInfo& info) {
  const char* fn = "reduceSum";
  Dims xs = getDims(info, 1, fn, "input shape"), os = getDims(info, 2, fn, "output shape");
  if (xs.size() != os.size()) fail(info.Env(), fn, "shapes must have equal rank");
  for (size_t i = 0; i < xs.size(); i++)
    if (os[i] != xs[i] && os[i] != 1) fail(info.Env(), fn, "cannot reduce " + dimsStr(xs) + " to " + dimsStr(os));
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 3, fn, "out", prod(os));
  reduceSum(x.p, xs, os, y.p);
  return info.Env().Undefined();
}

// unary(op, x, y): 0 exp 1 log 2 sqrt 3 square 4 tanh 5 silu 6 neg 7 ncdf
Napi::Value Unary(const Napi::CallbackInfo& info) {
  const char* fn = "unary";
  int64_t op = getInt(info, 0, fn, "op", 0, 7);
  Buf x = getBuf(info, 1, fn, "input");
  Buf y = getBuf(info, 2, fn, "out", x.n);
  unary((int)op, x.p, y.p, (int64_t)x.n);
  return info.Env().Undefined();
}

// unaryBackward(op, x, y, dy, dx)
Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  const char* fn = "unaryBackward";
  int64_t op = getInt(info, 0, fn, "op", 0, 7);
  Buf x = getBuf(info, 1, fn, "input");
  Buf y = getBuf(info, 2, fn, "output", x.n), dy = getBuf(info, 3, fn, "output gradient", x.n),
      dx = getBuf(info, 4, fn, "input gradient", x.n);
  unaryBackward((int)op, x.p, y.p, dy.p, dx.p, (int64_t)x.n);
  return info.Env().Undefined();
}

// clamp(x, lo, hi, y): y = min(hi, max(lo, x))
Napi::Value Clamp(const Napi::CallbackInfo& info) {
  const char* fn = "clamp";
  Buf x = getBuf(info, 0, fn, "input");
  float lo = (float)getNum(info, 1, fn, "lo"), hi = (float)getNum(info, 2, fn, "hi");
  if (!(lo <= hi)) fail(info.Env(), fn, "lo must not exceed hi");
  Buf y = getBuf(info, 3, fn, "out", x.n);
  clamp(x.p, lo, hi, y.p, (int64_t)x.n);
  return info.Env().Undefined();
}

// clampBackward(x, lo, hi, dy, dx): dx = dy where lo <= x <= hi
Napi::Value ClampBackward(const Napi::CallbackInfo& info) {
  const char* fn = "clampBackward";
  Buf x = getBuf(info, 0, fn, "input");
  float lo = (float)getNum(info, 1, fn, "lo"), hi = (float)getNum(info, 2, fn, "hi");
  Buf dy = getBuf(info, 3, fn, "output gradient", x.n), dx = getBuf(info, 4, fn, "input gradient", x.n);
  clampBackward(x.p, lo, hi, dy.p, dx.p, (int64_t)x.n);
  return info.Env().Undefined();
}

// affine(x, alpha, beta, y): y = alpha x + beta
Napi::Value Affine(const Napi::CallbackInfo& info) {
  const char* fn = "affine";
  Buf x = getBuf(info, 0, fn, "input");
  float al = (float)getNum(info, 1, fn, "alpha"), bt = (float)getNum(info, 2, fn, "beta");
  Buf y = getBuf(info, 3, fn, "out", x.n);
  affine(x.p, al, bt, y.p, (int64_t)x.n);
  return info.Env().Undefined();
}

// softmax(x, rows, cols, y)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const char* fn = "softmax";
  int64_t rows = getInt(info, 1, fn, "rows", 0, 1LL << 40), cols = getInt(info, 2, fn, "cols", 1, 1LL << 30);
  size_t total = checkedSize(info, fn, rows, cols);
  Buf x = getBuf(info, 0, fn, "input", total), y = getBuf(info, 3, fn, "out", total);
  softmax(x.p, rows, cols, y.p);
  return info.Env().Undefined();
}

// softmaxBackward(y, dy, rows, cols, dx)
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  const char* fn = "softmaxBackward";
  int64_t rows = getInt(info, 2, fn, "rows", 0, 1LL << 40), cols = getInt(info, 3, fn, "cols", 1, 1LL << 30);
  size_t total = checkedSize(info, fn, rows, cols);
  Buf y = getBuf(info, 0, fn, "output", total), dy = getBuf(info, 1, fn, "output gradient", total);
  Buf dx = getBuf(info, 4, fn, "input gradient", total);
  softmaxBackward(y.p, dy.p, rows, cols, dx.p);
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ data movement

// permute(x, xs, perm, y)
Napi::Value Permute(const Napi::CallbackInfo& info) {
  const char* fn = "permute";
  Dims xs = getDims(info, 1, fn, "input shape"), perm = getDims(info, 2, fn, "permutation");
  if (perm.size() != xs.size()) fail(info.Env(), fn, "permutation rank differs from " + dimsStr(xs));
  std::vector<bool> used(xs.size(), false);
  for (auto p : perm) {
    if (p >= (int64_t)xs.size() || used[p]) fail(info.Env(), fn, "invalid permutation " + dimsStr(perm));
    used[p] = true;
  }
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 3, fn, "out", prod(xs));
  permute(x.p, xs, perm, y.p);
  return info.Env().Undefined();
}

// concat(list, shapes, out): along axis 1
Napi::Value Concat(const Napi::CallbackInfo& info) {
  const char* fn = "concat";
  if (!info[0].IsArray() || !info[1].IsArray()) fail(info.Env(), fn, "expected arrays of inputs and shapes");
  auto list = info[0].As<Napi::Array>(), shapes = info[1].As<Napi::Array>();
  if (list.Length() != shapes.Length() || list.Length() == 0) fail(info.Env(), fn, "inputs and shapes differ in count");
  std::vector<const float*> bufs;
  std::vector<Dims> ds;
  Dims channels;
  int64_t Ctot = 0;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list[i], s = shapes[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !s.IsArray())
      fail(info.Env(), fn, "input " + std::to_string(i) + " must be a Float32Array with a shape");
    auto fa = v.As<Napi::Float32Array>();
    Napi::Array sa = s.As<Napi::Array>();
    if (sa.Length() > 8) fail(info.Env(), fn, "shape of input " + std::to_string(i) + " has rank > 8");
    Dims d(sa.Length());
    double total = 1;
    for (uint32_t k = 0; k < sa.Length(); k++) {
      Napi::Value dv = sa[k];
      double xv = dv.IsNumber() ? dv.As<Napi::Number>().DoubleValue() : -1;
      if (!(xv >= 0 && xv <= 1e9 && xv == std::floor(xv)))
        fail(info.Env(), fn, "invalid shape for input " + std::to_string(i));
      d[k] = (int64_t)xv;
      total *= xv;
    }
    if (total > kMaxElements) fail(info.Env(), fn, "input " + std::to_string(i) + " has too many elements");
    if (d.size() < 2 || fa.ElementLength() != prod(d))
      fail(info.Env(), fn, "input " + std::to_string(i) + " does not match its shape " + dimsStr(d));
    if (i > 0) {
      if (d.size() != ds[0].size()) fail(info.Env(), fn, "ranks differ");
      for (size_t k = 0; k < d.size(); k++)
        if (k != 1 && d[k] != ds[0][k])
          fail(info.Env(), fn, "shapes " + dimsStr(ds[0]) + " and " + dimsStr(d) + " differ outside axis 1");
    }
    bufs.push_back(fa.Data());
    ds.push_back(d);
    channels.push_back(d[1]);
    Ctot += d[1];
  }
  int64_t N = ds[0][0], S = 1;
  for (size_t k = 2; k < ds[0].size(); k++) S *= ds[0][k];
  Buf y = getBuf(info, 2, fn, "out", checkedSize(info, fn, N, Ctot, S));
  concat(bufs, channels, N, S, y.p);
  return info.Env().Undefined();
}

// sliceChannels(x, xs, c0, c, y)
Napi::Value SliceChannels(const Napi::CallbackInfo& info) {
  const char* fn = "sliceChannels";
  Dims xs = getDims(info, 1, fn, "input shape");
  if (xs.size() < 2) fail(info.Env(), fn, "input must be [N, C, ...]");
  int64_t c0 = getInt(info, 2, fn, "first channel", 0, xs[1]), c = getInt(info, 3, fn, "channel count", 0, xs[1] - c0);
  int64_t N = xs[0], S = 1;
  for (size_t k = 2; k < xs.size(); k++) S *= xs[k];
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 4, fn, "out", (size_t)(N * c * S));
  sliceChannels(x.p, xs, c0, c, y.p);
  return info.Env().Undefined();
}

// upsample2x(x, xs, y) and upsample2xBackward(dy, xs, dx)
// upsample2x(x, xs, y, layout?): nearest-neighbour 2x of [N, C, H, W]; x and y in the given layout
Napi::Value Upsample2x(const Napi::CallbackInfo& info) {
  const char* fn = "upsample2x";
  Dims xs = getDims(info, 1, fn, "input shape", 4);
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 2, fn, "out", prod(xs) * 4);
  upsample2x(x.p, xs, getLayout(info, 3, fn, xs), y.p);
  return info.Env().Undefined();
}

// pool2d(kind, x, xs, k, stride, pad, y): kind 0 max, 1 average counting padding, 2 average over valid positions
Napi::Value Pool2d(const Napi::CallbackInfo& info) {
  const char* fn = "pool2d";
  int64_t kind = getInt(info, 0, fn, "kind", 0, 2);
  Dims xs = getDims(info, 2, fn, "input shape", 4);
  int64_t k = getInt(info, 3, fn, "kernel", 1, 64), st = getInt(info, 4, fn, "stride", 1, 64),
          pad = getInt(info, 5, fn, "padding", 0, k - 1);
  int64_t NC = xs[0] * xs[1], H = xs[2], W = xs[3];
  if (H + 2 * pad < k || W + 2 * pad < k) fail(info.Env(), fn, "input " + dimsStr(xs) + " is smaller than the window");
  int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
  Buf x = getBuf(info, 1, fn, "input", prod(xs)),
      y = getBuf(info, 6, fn, "out", checkedSize(info, fn, (double)NC, (double)Ho, (double)Wo));
  pool2d((int)kind, x.p, xs, k, st, pad, y.p);
  return info.Env().Undefined();
}

// upsample2xBackward(dy, xs, dx, layout?): dy and dx in the given layout
Napi::Value Upsample2xBackward(const Napi::CallbackInfo& info) {
  const char* fn = "upsample2xBackward";
  Dims xs = getDims(info, 1, fn, "input shape", 4);
  Buf dy = getBuf(info, 0, fn, "output gradient", prod(xs) * 4), dx = getBuf(info, 2, fn, "input gradient", prod(xs));
  upsample2xBackward(dy.p, xs, getLayout(info, 3, fn, xs), dx.p);
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ dropout masks

// dropoutMask(out, perSample, [seedLo, seedHi, streamLo, streamHi], p, layout?, dims?): element j of sample s is
// 1 / (1 - p) where its uniform is >= p, else 0; the uniform is the engine's fillRandom value to the bit
// ((word + 0.5) / 2^32 rounded to float32), so masks are identical to the host's. With a layout and the [N, C, H, W]
// it stands for, each value is written where that layout keeps element (s, j) (the mask of a tensor held in it).
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  const char* fn = "dropoutMask";
  Buf y = getBuf(info, 0, fn, "out");
  int64_t per = getInt(info, 1, fn, "values per sample", 1, 1LL << 40);
  std::vector<uint32_t> w = getWords(info, 2, fn, "key words", 4);
  double p = getNum(info, 3, fn, "p");
  if (!(p > 0 && p < 1)) fail(info.Env(), fn, "p must be in (0, 1)");
  if (y.n % per) fail(info.Env(), fn, "out is not a whole number of samples");
  const int64_t samples = (int64_t)y.n / per;
  int64_t layout = kNCHW, C = 1, S = per;
  if (info.Length() > 5 && !info[4].IsUndefined()) {
    Dims d = getDims(info, 5, fn, "shape", 4);
    layout = getLayout(info, 4, fn, d);
    if ((int64_t)prod(d) != (int64_t)y.n || d[0] != samples)
      fail(info.Env(), fn, "shape " + dimsStr(d) + " does not match the mask");
    C = d[1], S = d[2] * d[3];
  }
  const uint32_t key[4] = {w[0], w[1], w[2], w[3]};
  dropoutMask(y.p, (int64_t)y.n, per, key, p, layout, C, S);
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ group norm

// groupNorm(x, xs, gamma, beta, groups, eps, silu, y, mean, rstd, layout?): x and y in the given layout
Napi::Value GroupNorm(const Napi::CallbackInfo& info) {
  const char* fn = "groupNorm";
  Dims xs = getDims(info, 1, fn, "input shape");
  GNArgs A = gnArgs(info, fn, xs, getInt(info, 4, fn, "groups", 1, 1 << 20));
  Buf x = getBuf(info, 0, fn, "input", prod(xs));
  Buf gm = getBuf(info, 2, fn, "gamma", A.C), bt = getBuf(info, 3, fn, "beta", A.C);
  double eps = getNum(info, 5, fn, "eps");
  bool silu = info[6].ToBoolean();
  Buf y = getBuf(info, 7, fn, "out", x.n), mean = getBuf(info, 8, fn, "mean", A.N * A.G),
      rstd = getBuf(info, 9, fn, "rstd", A.N * A.G);
  groupNorm(A, getLayout(info, 10, fn, xs), x.p, gm.p, bt.p, eps, silu, y.p, mean.p, rstd.p);
  return info.Env().Undefined();
}

// groupNormBackward(x, xs, gamma, beta, mean, rstd, groups, silu, dy, dx, dgamma, dbeta, layout?): x, dy and dx in
// the given layout
Napi::Value GroupNormBackward(const Napi::CallbackInfo& info) {
  const char* fn = "groupNormBackward";
  Dims xs = getDims(info, 1, fn, "input shape");
  GNArgs A = gnArgs(info, fn, xs, getInt(info, 6, fn, "groups", 1, 1 << 20));
  Buf x = getBuf(info, 0, fn, "input", prod(xs));
  Buf gm = getBuf(info, 2, fn, "gamma", A.C), bt = getBuf(info, 3, fn, "beta", A.C);
  Buf mean = getBuf(info, 4, fn, "mean", A.N * A.G), rstd = getBuf(info, 5, fn, "rstd", A.N * A.G);
  bool silu = info[7].ToBoolean();
  Buf dy = getBuf(info, 8, fn, "output gradient", x.n), dx = getBuf(info, 9, fn, "input gradient", x.n);
  Buf dgm = getBuf(info, 10, fn, "gamma gradient", A.C), dbt = getBuf(info, 11, fn, "beta gradient", A.C);
  groupNormBackward(A, getLayout(info, 12, fn, xs), x.p, gm.p, bt.p, mean.p, rstd.p, silu, dy.p, dx.p, dgm.p, dbt.p);
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ optimiser

// adamStep(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step)
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  const char* fn = "adamStep";
  Buf p = getBuf(info, 0, fn, "param");
  Buf g = getBuf(info, 1, fn, "grad", p.n), m = getBuf(info, 2, fn, "first moment", p.n),
      v = getBuf(info, 3, fn, "second moment", p.n);
  double lr = getNum(info, 4, fn, "lr"), b1 = getNum(info, 5, fn, "beta1"), b2 = getNum(info, 6, fn, "beta2");
  double eps = getNum(info, 7, fn, "eps"), wd = getNum(info, 8, fn, "weightDecay");
  int64_t step = getInt(info, 9, fn, "step", 1, 1LL << 50);
  adamStep(p.p, g.p, m.p, v.p, (int64_t)p.n, lr, b1, b2, eps, wd, step);
  return info.Env().Undefined();
}

// emaUpdate(ema, p, decay)
Napi::Value EmaUpdate(const Napi::CallbackInfo& info) {
  const char* fn = "emaUpdate";
  Buf e = getBuf(info, 0, fn, "ema");
  Buf p = getBuf(info, 1, fn, "param", e.n);
  float d = (float)getNum(info, 2, fn, "decay");
  emaUpdate(e.p, p.p, (int64_t)e.n, d);
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "sumSquares", "input");
  return Napi::Number::New(info.Env(), sumSquares(x.p, (int64_t)x.n));
}

Napi::Value ScaleInPlace(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "scaleInPlace", "input");
  float s = (float)getNum(info, 1, "scaleInPlace", "scale");
  scaleInPlace(x.p, (int64_t)x.n, s);
  return info.Env().Undefined();
}

Napi::Value AddInPlace(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "addInPlace", "target");
  Buf y = getBuf(info, 1, "addInPlace", "addend", x.n);
  addInPlace(x.p, y.p, (int64_t)x.n);
  return info.Env().Undefined();
}

}  // namespace ddpm
