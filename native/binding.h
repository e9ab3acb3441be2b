// Reading and validating the arguments of the addon's JavaScript functions: every check throws a JavaScript Error
// naming the function and the offending argument, before any kernel touches memory.
#pragma once

#include <napi.h>

#include <cmath>
#include <string>

#include "common.h"

namespace ddpm {

// ------------------------------------------------------------------------------------------------ validation

struct Buf {
  float* p;
  size_t n;
};

[[noreturn]] inline void fail(const Napi::Env& env, const std::string& fn, const std::string& msg) {
  throw Napi::Error::New(env, "native " + fn + ": " + msg);
}

inline Buf getBuf(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (i >= info.Length() || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    fail(info.Env(), fn, std::string(name) + " must be a Float32Array");
  auto a = info[i].As<Napi::Float32Array>();
  if (a.ElementLength() > 0 && a.Data() == nullptr) fail(info.Env(), fn, std::string(name) + " is detached");
  return {a.Data(), a.ElementLength()};
}

inline Buf getBuf(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, size_t expected) {
  Buf b = getBuf(info, i, fn, name);
  if (b.n != expected)
    fail(info.Env(), fn,
         std::string(name) + " has " + std::to_string(b.n) + " values, expected " + std::to_string(expected));
  return b;
}

constexpr double kMaxElements = 140737488355328.0;  // 2^47

/** a * b * c for sizes given by JavaScript, failing instead of overflowing. */
inline size_t checkedSize(const Napi::CallbackInfo& info, const char* fn, double a, double b, double c = 1) {
  double t = a * b * c;
  if (!(t <= kMaxElements)) fail(info.Env(), fn, "sizes are too large");
  return (size_t)t;
}

inline Dims getDims(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, size_t rank = 0) {
  if (i >= info.Length() || !info[i].IsArray())
    fail(info.Env(), fn, std::string(name) + " must be an array of dimensions");
  auto a = info[i].As<Napi::Array>();
  if (a.Length() > 8 || (rank && a.Length() != rank))
    fail(info.Env(), fn, std::string(name) + " must have rank " + (rank ? std::to_string(rank) : std::string("<= 8")));
  Dims d(a.Length());
  double total = 1;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a[k];
    double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0 && x <= 1e9 && x == std::floor(x)))
      fail(info.Env(), fn, std::string(name) + " has an invalid dimension");
    d[k] = (int64_t)x;
    total *= x;
  }
  // no tensor this large can exist; rejecting it here keeps every size computation below free of overflow
  if (total > kMaxElements) fail(info.Env(), fn, std::string(name) + " " + dimsStr(d) + " has too many elements");
  return d;
}

/** An array of exactly n integers in [0, 2^32) (Philox key words). */
inline std::vector<uint32_t> getWords(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
                                      size_t n) {
  if (i >= info.Length() || !info[i].IsArray() || info[i].As<Napi::Array>().Length() != n)
    fail(info.Env(), fn, std::string(name) + " must be an array of " + std::to_string(n) + " 32-bit words");
  auto a = info[i].As<Napi::Array>();
  std::vector<uint32_t> w(n);
  for (uint32_t k = 0; k < n; k++) {
    Napi::Value v = a[k];
    double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0 && x <= 4294967295.0 && x == std::floor(x)))
      fail(info.Env(), fn, std::string(name) + " must be integers in [0, 2^32)");
    w[k] = (uint32_t)x;
  }
  return w;
}

inline double getNum(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(info.Env(), fn, std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline int64_t getInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t lo,
                      int64_t hi) {
  double x = getNum(info, i, fn, name);
  if (!(x >= (double)lo && x <= (double)hi && x == std::floor(x)))
    fail(info.Env(), fn,
         std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return (int64_t)x;
}

/** An optional layout argument (see Layout; undefined or absent: NCHW) for a tensor of shape d. */
inline int64_t getLayout(const Napi::CallbackInfo& info, size_t i, const char* fn, const Dims& d) {
  int64_t l = info.Length() > i && !info[i].IsUndefined() ? getInt(info, i, fn, "layout", 0, 2) : 0;
  if (l != kNCHW && d.size() != 4) fail(info.Env(), fn, "a non-NCHW layout needs a 4-D shape, got " + dimsStr(d));
  if (l == kBlocked16 && d[1] % 16)
    fail(info.Env(), fn, "layout nChw16c needs a multiple of 16 channels, got " + dimsStr(d));
  return l;
}

// ------------------------------------------------------------------------------------------------ entry points

// The JavaScript functions of binding_ops.cc (those of oneDNN and of the process are in binding.cc, which exports all)
Napi::Value Binary(const Napi::CallbackInfo& info);
Napi::Value ReduceSum(const Napi::CallbackInfo& info);
Napi::Value Unary(const Napi::CallbackInfo& info);
Napi::Value UnaryBackward(const Napi::CallbackInfo& info);
Napi::Value Clamp(const Napi::CallbackInfo& info);
Napi::Value ClampBackward(const Napi::CallbackInfo& info);
Napi::Value Affine(const Napi::CallbackInfo& info);
Napi::Value Softmax(const Napi::CallbackInfo& info);
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info);
Napi::Value Permute(const Napi::CallbackInfo& info);
Napi::Value Concat(const Napi::CallbackInfo& info);
Napi::Value SliceChannels(const Napi::CallbackInfo& info);
Napi::Value Upsample2x(const Napi::CallbackInfo& info);
Napi::Value Pool2d(const Napi::CallbackInfo& info);
Napi::Value Upsample2xBackward(const Napi::CallbackInfo& info);
Napi::Value DropoutMask(const Napi::CallbackInfo& info);
Napi::Value GroupNorm(const Napi::CallbackInfo& info);
Napi::Value GroupNormBackward(const Napi::CallbackInfo& info);
Napi::Value AdamStep(const Napi::CallbackInfo& info);
Napi::Value EmaUpdate(const Napi::CallbackInfo& info);
Napi::Value SumSquares(const Napi::CallbackInfo& info);
Napi::Value ScaleInPlace(const Napi::CallbackInfo& info);
Napi::Value AddInPlace(const Napi::CallbackInfo& info);

}  // namespace ddpm
