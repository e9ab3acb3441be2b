// The native CPU backend: oneDNN for convolutions and matrix products, OpenMP loops of our own for the kernels that
// oneDNN 2.6 lacks (group norm, fused GroupNorm+SiLU, Adam, EMA) and for the elementwise and data-movement kernels.
//
// Every entry point validates its arguments (types, shapes, buffer lengths) before it touches memory and throws a
// JavaScript Error naming the function and the offending argument. Output buffers are allocated by the caller.
#include <napi.h>
#include <dnnl.hpp>
#include <omp.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <algorithm>
#include <atomic>
#include <list>
#include <thread>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

using dnnl::memory;
using Dims = std::vector<int64_t>;

namespace {

// ------------------------------------------------------------------------------------------------ validation

struct Buf {
  float* p;
  size_t n;
};

std::string dimsStr(const Dims& d) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < d.size(); i++) s << (i ? "," : "") << d[i];
  s << "]";
  return s.str();
}

[[noreturn]] void fail(const Napi::Env& env, const std::string& fn, const std::string& msg) {
  throw Napi::Error::New(env, "native " + fn + ": " + msg);
}

Buf getBuf(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    fail(info.Env(), fn, std::string(name) + " must be a Float32Array");
  auto a = info[i].As<Napi::Float32Array>();
  if (a.ElementLength() > 0 && a.Data() == nullptr) fail(info.Env(), fn, std::string(name) + " is detached");
  return {a.Data(), a.ElementLength()};
}

Buf getBuf(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, size_t expected) {
  Buf b = getBuf(info, i, fn, name);
  if (b.n != expected)
    fail(info.Env(), fn, std::string(name) + " has " + std::to_string(b.n) + " values, expected " + std::to_string(expected));
  return b;
}

constexpr double kMaxElements = 140737488355328.0;  // 2^47

/** a * b * c for sizes given by JavaScript, failing instead of overflowing. */
size_t checkedSize(const Napi::CallbackInfo& info, const char* fn, double a, double b, double c = 1) {
  double t = a * b * c;
  if (!(t <= kMaxElements)) fail(info.Env(), fn, "sizes are too large");
  return (size_t)t;
}

Dims getDims(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, size_t rank = 0) {
  if (i >= info.Length() || !info[i].IsArray()) fail(info.Env(), fn, std::string(name) + " must be an array of dimensions");
  auto a = info[i].As<Napi::Array>();
  if (a.Length() > 8 || (rank && a.Length() != rank))
    fail(info.Env(), fn, std::string(name) + " must have rank " + (rank ? std::to_string(rank) : std::string("<= 8")));
  Dims d(a.Length());
  double total = 1;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a[k];
    double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0 && x <= 1e9 && x == std::floor(x))) fail(info.Env(), fn, std::string(name) + " has an invalid dimension");
    d[k] = (int64_t)x;
    total *= x;
  }
  // no tensor this large can exist; rejecting it here keeps every size computation below free of overflow
  if (total > kMaxElements) fail(info.Env(), fn, std::string(name) + " " + dimsStr(d) + " has too many elements");
  return d;
}

double getNum(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(info.Env(), fn, std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t getInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t lo, int64_t hi) {
  double x = getNum(info, i, fn, name);
  if (!(x >= (double)lo && x <= (double)hi && x == std::floor(x)))
    fail(info.Env(), fn, std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return (int64_t)x;
}

size_t prod(const Dims& d) {
  size_t s = 1;
  for (auto x : d) s *= (size_t)x;
  return s;
}

constexpr size_t kParallelMin = 1 << 14;

// ------------------------------------------------------------------------------------------------ oneDNN state

dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

/** Whether oneDNN has bfloat16 convolution kernels with native instructions here (AVX512-BF16 or AMX). */
bool cpuHasBf16() {
  static bool has = [] {
    auto isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return has;
}

struct ConvKey {
  Dims xs, ws;
  int64_t stride, pt, pb, pl, pr;
  bool bias;
  bool bf16 = false;  // forward only: input and weights rounded to bfloat16, products accumulated and written in float32
  std::string str() const {
    std::ostringstream s;
    s << dimsStr(xs) << dimsStr(ws) << stride << ',' << pt << ',' << pb << ',' << pl << ',' << pr << ',' << bias << ',' << bf16;
    return s.str();
  }
};

struct ConvPrims {
  memory::desc x_user, w_user, y_user, b_md;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd;
  dnnl::convolution_backward_weights bwd_w;
  /** Buffers in the primitives' own layouts, allocated once per shape and reused by every call (no per-call malloc). */
  std::unordered_map<int, memory> bufs;
  /**
   * Forward weights already in the primitive's layout (and type: bf16 weights are converted once), one entry per
   * weight buffer of the caller: (id, version of the values it holds) and the buffer. Ids are never reused and the
   * version changes with every in-place write, so an entry is never stale; a written weight is reordered again into
   * its entry's buffer (training keeps one copy per layer). At most kWeightCacheMax per shape (the layers of one
   * shape in one model), most recent first.
   */
  std::list<std::pair<std::pair<double, double>, memory>> weights;
  memory& buf(int role, const memory::desc& md) {
    auto it = bufs.find(role);
    if (it == bufs.end()) it = bufs.emplace(role, memory(md, eng())).first;
    return it->second;
  }
};

enum Role { FWD_SRC, FWD_W, FWD_DST, BWD_DY, BWD_DY2, BWD_W, BWD_DX, BWDW_SRC, BWDW_DW };
constexpr size_t kWeightCacheMax = 64;

/**
 * Convolution primitives and their layout buffers, per shape, in a least-recently-used cache of at most kConvCacheMax
 * entries (DDPM_CONV_CACHE overrides): a long run over many shapes keeps memory bounded; an evicted entry frees its
 * scratch buffers with it.
 */
struct ConvCache {
  std::list<std::string> order;  // most recently used first
  std::unordered_map<std::string, std::pair<std::unique_ptr<ConvPrims>, std::list<std::string>::iterator>> map;
  size_t limit() {
    static size_t lim = [] {
      const char* e = getenv("DDPM_CONV_CACHE");
      if (!e || !*e) return (size_t)64;
      char* end = nullptr;
      long v = strtol(e, &end, 10);
      if (v > 0 && *end == 0) return (size_t)v;
      fprintf(stderr, "ddpm native: DDPM_CONV_CACHE=\"%s\" is not a positive integer; using the default 64\n", e);
      return (size_t)64;
    }();
    return lim;
  }
  ConvPrims* find(const std::string& key) {
    auto it = map.find(key);
    if (it == map.end()) return nullptr;
    order.splice(order.begin(), order, it->second.second);
    return it->second.first.get();
  }
  ConvPrims& insert(const std::string& key, std::unique_ptr<ConvPrims> p) {
    while (map.size() >= limit() && !order.empty()) {
      map.erase(order.back());
      order.pop_back();
    }
    order.push_front(key);
    auto& slot = map[key];
    slot = {std::move(p), order.begin()};
    return *slot.first;
  }
  void clear() {
    map.clear();
    order.clear();
  }
};
ConvCache conv_cache;

/**
 * The convolution algorithm: 0 direct (oneDNN's direct kernels, as PyTorch uses them; the smallest rounding error),
 * 1 Winograd F(4x4, 3x3) for the float32 3x3 stride-1 convolutions where it was measured faster on this project's
 * U-Nets (forward, data and weight gradients; input channels >= 16 and maps of at least 7x7: with 1-3 input
 * channels or at 4x4 it was slower). Its rounding error is about ten times the direct one's (a relative 3e-6 against
 * 3e-7 on 128 channels).
 */
int conv_algorithm = 1;

bool useWinograd(const ConvKey& k) {
  return conv_algorithm == 1 && !k.bf16 && k.ws[2] == 3 && k.ws[3] == 3 && k.stride == 1 && k.xs[1] >= 16 && k.xs[2] >= 7 && k.xs[3] >= 7;
}

ConvPrims& getConv(const ConvKey& k) {
  std::string key = k.str();
  if (ConvPrims* hit = conv_cache.find(key)) return *hit;
  auto P = std::make_unique<ConvPrims>();
  int64_t N = k.xs[0], C = k.xs[1], H = k.xs[2], W = k.xs[3];
  int64_t O = k.ws[0], KH = k.ws[2], KW = k.ws[3];
  int64_t Ho = (H + k.pt + k.pb - KH) / k.stride + 1, Wo = (W + k.pl + k.pr - KW) / k.stride + 1;
  P->x_user = memory::desc({N, C, H, W}, memory::data_type::f32, memory::format_tag::nchw);
  P->w_user = memory::desc({O, C, KH, KW}, memory::data_type::f32, memory::format_tag::oihw);
  P->y_user = memory::desc({N, O, Ho, Wo}, memory::data_type::f32, memory::format_tag::nchw);
  P->b_md = memory::desc({O}, memory::data_type::f32, memory::format_tag::x);
  auto act = memory::format_tag::any;  // oneDNN picks the activations' layout (nChw16c for f32, NHWC for bf16 here)
  // bf16: the reorders into the primitive's layouts round the input and the weights; the output stays float32
  auto in_t = k.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  memory::desc x_any({N, C, H, W}, in_t, act);
  memory::desc w_any({O, C, KH, KW}, in_t, memory::format_tag::any);
  memory::desc y_any({N, O, Ho, Wo}, memory::data_type::f32, act);
  memory::dims strides = {k.stride, k.stride}, pl = {k.pt, k.pl}, pr = {k.pb, k.pr};
  auto prop = k.bf16 ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training;
  auto fwdDesc = [&](dnnl::algorithm a) {
    return k.bias ? dnnl::convolution_forward::desc(prop, a, x_any, w_any, P->b_md, y_any, strides, pl, pr)
                  : dnnl::convolution_forward::desc(prop, a, x_any, w_any, y_any, strides, pl, pr);
  };
  // Winograd F(4x4, 3x3) where it is measured faster here (see useWinograd); oneDNN may still decline a shape
  auto algo = useWinograd(k) ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  try {
    P->fwd_pd = dnnl::convolution_forward::primitive_desc(fwdDesc(algo), eng());
  } catch (const dnnl::error&) {
    algo = dnnl::algorithm::convolution_direct;
    P->fwd_pd = dnnl::convolution_forward::primitive_desc(fwdDesc(algo), eng());
  }
  P->fwd = dnnl::convolution_forward(P->fwd_pd);
  if (k.bf16) return conv_cache.insert(key, std::move(P));  // forward only (sampling, evaluation)
  auto dataDesc = [&](dnnl::algorithm a) { return dnnl::convolution_backward_data::desc(a, x_any, w_any, y_any, strides, pl, pr); };
  try {
    P->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(dataDesc(algo), eng(), P->fwd_pd);
  } catch (const dnnl::error&) {
    P->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(dataDesc(dnnl::algorithm::convolution_direct), eng(), P->fwd_pd);
  }
  P->bwd_data = dnnl::convolution_backward_data(P->bwd_data_pd);
  auto wDesc = [&](dnnl::algorithm a) {
    return k.bias ? dnnl::convolution_backward_weights::desc(a, x_any, w_any, P->b_md, y_any, strides, pl, pr)
                  : dnnl::convolution_backward_weights::desc(a, x_any, w_any, y_any, strides, pl, pr);
  };
  try {
    P->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(wDesc(algo), eng(), P->fwd_pd);
  } catch (const dnnl::error&) {
    P->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(wDesc(dnnl::algorithm::convolution_direct), eng(), P->fwd_pd);
  }
  P->bwd_w = dnnl::convolution_backward_weights(P->bwd_w_pd);
  return conv_cache.insert(key, std::move(P));
}

/** Memory in the layout `want`, reordered (into the primitive's reusable buffer) from the user's plain buffer when the layouts differ. */
memory toLayout(ConvPrims& P, int role, const memory::desc& user_md, float* data, const memory::desc& want) {
  memory user(user_md, eng(), data);
  if (want == user_md) return user;
  memory& m = P.buf(role, want);
  dnnl::reorder(user, m).execute(strm(), user, m);
  return m;
}

/** A memory of layout `have` whose contents land in the user's plain buffer after finish(). */
struct OutMem {
  memory user, m;
  OutMem(ConvPrims& P, int role, const memory::desc& user_md, float* data, const memory::desc& have) : user(user_md, eng(), data) {
    m = (have == user_md) ? user : P.buf(role, have);
  }
  void finish() {
    if (m.get() != user.get()) dnnl::reorder(m, user).execute(strm(), m, user);
  }
};

ConvKey convKey(const Napi::CallbackInfo& info, const char* fn, size_t xsi, size_t wsi, size_t pi, bool bias) {
  ConvKey k;
  k.xs = getDims(info, xsi, fn, "input shape", 4);
  k.ws = getDims(info, wsi, fn, "weight shape", 4);
  Dims p = getDims(info, pi, fn, "conv params [stride, top, bottom, left, right]", 5);
  k.stride = p[0], k.pt = p[1], k.pb = p[2], k.pl = p[3], k.pr = p[4];
  k.bias = bias;
  if (k.xs[1] != k.ws[1]) fail(info.Env(), fn, "input " + dimsStr(k.xs) + " and weight " + dimsStr(k.ws) + " disagree on channels");
  if (k.stride < 1) fail(info.Env(), fn, "stride must be >= 1");
  for (auto d : k.xs) if (d < 1) fail(info.Env(), fn, "empty input " + dimsStr(k.xs));
  for (auto d : k.ws) if (d < 1) fail(info.Env(), fn, "empty weight " + dimsStr(k.ws));
  if (k.xs[2] + k.pt + k.pb < k.ws[2] || k.xs[3] + k.pl + k.pr < k.ws[3])
    fail(info.Env(), fn, "input " + dimsStr(k.xs) + " smaller than kernel " + dimsStr(k.ws));
  return k;
}

Dims convOut(const ConvKey& k) {
  return {k.xs[0], k.ws[0], (k.xs[2] + k.pt + k.pb - k.ws[2]) / k.stride + 1, (k.xs[3] + k.pl + k.pr - k.ws[3]) / k.stride + 1};
}

#define DNNL_GUARD(fn, ...)                                               \
  try {                                                                   \
    __VA_ARGS__                                                           \
  } catch (const dnnl::error& e) {                                        \
    fail(info.Env(), fn, std::string("oneDNN error: ") + e.what());      \
  }

/**
 * Activation layouts of [N, C, H, W] float32 buffers: 0 NCHW; 1 nChw16c, channel-blocked (C a multiple of 16, so no
 * padding and the size of NCHW), what oneDNN's f32 convolutions compute in here; 2 NHWC, what its bf16 ones use.
 */
enum Layout { kNCHW = 0, kBlocked16 = 1, kNHWC = 2 };

memory::desc layoutDesc(const Dims& d, int64_t layout) {
  auto tag = layout == kBlocked16 ? memory::format_tag::nChw16c : layout == kNHWC ? memory::format_tag::nhwc : memory::format_tag::nchw;
  return memory::desc({d[0], d[1], d[2], d[3]}, memory::data_type::f32, tag);
}

int64_t getLayout(const Napi::CallbackInfo& info, size_t i, const char* fn, const Dims& d) {
  int64_t l = info.Length() > i && !info[i].IsUndefined() ? getInt(info, i, fn, "layout", 0, 2) : 0;
  if (l != kNCHW && d.size() != 4) fail(info.Env(), fn, "a non-NCHW layout needs a 4-D shape, got " + dimsStr(d));
  if (l == kBlocked16 && d[1] % 16) fail(info.Env(), fn, "layout nChw16c needs a multiple of 16 channels, got " + dimsStr(d));
  return l;
}

// conv2dForward(x, xs, w, ws, b | null, params, y, bf16, xLayout, keep, wId?, wVersion?) -> the layout y was written
// in. wId, wVersion: the weight buffer's identity and version, under which its reordered copy is kept (see weights).
// keep: y may be left in the primitive's own output layout when it is one of ours (forward-only graphs keep
// activations in it from one convolution to the next; see the backend's layout tags); else y is NCHW.
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const char* fn = "conv2dForward";
  bool bias = info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined();
  ConvKey k = convKey(info, fn, 1, 3, 5, bias);
  k.bf16 = info.Length() > 7 && info[7].ToBoolean();
  int64_t xLayout = getLayout(info, 8, fn, k.xs);
  bool keep = info.Length() > 9 && info[9].ToBoolean();
  if (k.bf16 && !cpuHasBf16()) fail(info.Env(), fn, "bf16 needs a CPU with AVX512-BF16 or AMX (this one has neither)");
  Buf x = getBuf(info, 0, fn, "input", prod(k.xs));
  Buf w = getBuf(info, 2, fn, "weight", prod(k.ws));
  Buf b = bias ? getBuf(info, 4, fn, "bias", (size_t)k.ws[0]) : Buf{nullptr, 0};
  Dims yd = convOut(k);
  Buf y = getBuf(info, 6, fn, "output", prod(yd));
  int64_t yLayout = kNCHW;
  DNNL_GUARD(fn, {
    ConvPrims& P = getConv(k);
    memory xm = toLayout(P, FWD_SRC, layoutDesc(k.xs, xLayout), x.p, P.fwd_pd.src_desc());
    memory wm;
    auto want = P.fwd_pd.weights_desc();
    if (info.Length() > 11 && info[10].IsNumber() && info[11].IsNumber() && want != P.w_user) {
      double id = info[10].As<Napi::Number>().DoubleValue(), version = info[11].As<Napi::Number>().DoubleValue();
      auto it = std::find_if(P.weights.begin(), P.weights.end(), [&](auto& e) { return e.first.first == id; });
      if (it == P.weights.end()) {
        P.weights.emplace_front(std::make_pair(id, -1.0), memory(want, eng()));
        if (P.weights.size() > kWeightCacheMax) P.weights.pop_back();
      } else {
        P.weights.splice(P.weights.begin(), P.weights, it);
      }
      auto& e = P.weights.front();
      if (e.first.second != version) {  // new, or written since: reorder into the entry's own buffer
        memory user(P.w_user, eng(), w.p);
        dnnl::reorder(user, e.second).execute(strm(), user, e.second);
        e.first.second = version;
      }
      wm = e.second;
    } else {
      wm = toLayout(P, FWD_W, P.w_user, w.p, want);
    }
    if (keep) {
      auto dst = P.fwd_pd.dst_desc();
      if (yd[1] % 16 == 0 && dst == layoutDesc(yd, kBlocked16)) yLayout = kBlocked16;
      else if (dst == layoutDesc(yd, kNHWC)) yLayout = kNHWC;
    }
    OutMem ym(P, FWD_DST, layoutDesc(yd, yLayout), y.p, P.fwd_pd.dst_desc());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym.m}};
    if (bias) args[DNNL_ARG_BIAS] = memory(P.b_md, eng(), b.p);
    P.fwd.execute(strm(), args);
    ym.finish();
    strm().wait();
  })
  return Napi::Number::New(info.Env(), (double)yLayout);
}

// setConvAlgorithm("winograd" | "direct"): see conv_algorithm; drops the cached primitives (and weight copies)
Napi::Value SetConvAlgorithm(const Napi::CallbackInfo& info) {
  const char* fn = "setConvAlgorithm";
  std::string a = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (a != "winograd" && a != "direct") fail(info.Env(), fn, "expected \"winograd\" or \"direct\", got \"" + a + "\"");
  int v = a == "winograd" ? 1 : 0;
  if (v != conv_algorithm) conv_cache.clear();
  conv_algorithm = v;
  return info.Env().Undefined();
}

// convImplementations(xs, ws, params, bias) -> { forward, backwardData, backwardWeights }: oneDNN's names of the
// kernels a float32 convolution of these shapes runs (e.g. "jit_wino_4x3:avx512_core")
Napi::Value ConvImplementations(const Napi::CallbackInfo& info) {
  const char* fn = "convImplementations";
  ConvKey k = convKey(info, fn, 0, 1, 2, info.Length() > 3 && info[3].ToBoolean());
  Napi::Object o = Napi::Object::New(info.Env());
  DNNL_GUARD(fn, {
    ConvPrims& P = getConv(k);
    o.Set("forward", P.fwd_pd.impl_info_str());
    o.Set("backwardData", P.bwd_data_pd.impl_info_str());
    o.Set("backwardWeights", P.bwd_w_pd.impl_info_str());
  })
  return o;
}

// relayout(x, [N, C, H, W], from, to, y): between the layouts above
Napi::Value Relayout(const Napi::CallbackInfo& info) {
  const char* fn = "relayout";
  Dims d = getDims(info, 1, fn, "shape", 4);
  int64_t from = getLayout(info, 2, fn, d), to = getLayout(info, 3, fn, d);
  Buf x = getBuf(info, 0, fn, "input", prod(d)), y = getBuf(info, 4, fn, "out", prod(d));
  DNNL_GUARD(fn, {
    memory src(layoutDesc(d, from), eng(), x.p), dst(layoutDesc(d, to), eng(), y.p);
    dnnl::reorder(src, dst).execute(strm(), src, dst);
    strm().wait();
  })
  return info.Env().Undefined();
}

// conv2dBackward(x, xs, dy, w, ws, params, dx | null, dw, db | null, xLayout, dyLayout, keep) -> dx's layout: both
// gradients, with dy reordered once (not at all when it comes in the primitives' layout); keep: dx may be left in
// the primitive's layout when it is one of ours
Napi::Value Conv2dBackward(const Napi::CallbackInfo& info) {
  const char* fn = "conv2dBackward";
  bool needDx = info.Length() > 6 && !info[6].IsNull() && !info[6].IsUndefined();
  bool bias = info.Length() > 8 && !info[8].IsNull() && !info[8].IsUndefined();
  ConvKey k = convKey(info, fn, 1, 4, 5, bias);
  Buf x = getBuf(info, 0, fn, "input", prod(k.xs));
  Buf dy = getBuf(info, 2, fn, "output gradient", prod(convOut(k)));
  Buf w = getBuf(info, 3, fn, "weight", prod(k.ws));
  Buf dx = needDx ? getBuf(info, 6, fn, "input gradient", prod(k.xs)) : Buf{nullptr, 0};
  Buf dw = getBuf(info, 7, fn, "weight gradient", prod(k.ws));
  Buf db = bias ? getBuf(info, 8, fn, "bias gradient", (size_t)k.ws[0]) : Buf{nullptr, 0};
  Dims yd = convOut(k);
  int64_t xLayout = getLayout(info, 9, fn, k.xs), dyLayout = getLayout(info, 10, fn, yd);
  bool keep = info.Length() > 11 && info[11].ToBoolean();
  int64_t dxLayout = kNCHW;
  DNNL_GUARD(fn, {
    ConvPrims& P = getConv(k);
    memory::desc dy_user = layoutDesc(yd, dyLayout), x_user = layoutDesc(k.xs, xLayout);
    memory dym = toLayout(P, BWD_DY, dy_user, dy.p, P.bwd_w_pd.diff_dst_desc());
    if (needDx) {
      memory dym2 = P.bwd_data_pd.diff_dst_desc() == P.bwd_w_pd.diff_dst_desc() ? dym : toLayout(P, BWD_DY2, dy_user, dy.p, P.bwd_data_pd.diff_dst_desc());
      memory wm = toLayout(P, BWD_W, P.w_user, w.p, P.bwd_data_pd.weights_desc());
      if (keep) {
        auto ds = P.bwd_data_pd.diff_src_desc();
        if (k.xs[1] % 16 == 0 && ds == layoutDesc(k.xs, kBlocked16)) dxLayout = kBlocked16;
        else if (ds == layoutDesc(k.xs, kNHWC)) dxLayout = kNHWC;
      }
      OutMem dxm(P, BWD_DX, layoutDesc(k.xs, dxLayout), dx.p, P.bwd_data_pd.diff_src_desc());
      P.bwd_data.execute(strm(), {{DNNL_ARG_DIFF_DST, dym2}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm.m}});
      dxm.finish();
    }
    memory xm = toLayout(P, BWDW_SRC, x_user, x.p, P.bwd_w_pd.src_desc());
    OutMem dwm(P, BWDW_DW, P.w_user, dw.p, P.bwd_w_pd.diff_weights_desc());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm.m}};
    if (bias) args[DNNL_ARG_DIFF_BIAS] = memory(P.b_md, eng(), db.p);
    P.bwd_w.execute(strm(), args);
    dwm.finish();
    strm().wait();
  })
  return Napi::Number::New(info.Env(), (double)dxLayout);
}

// matmul(a, b, batch, m, k, n, transA, transB, out): out[b] = op(A[b]) op(B[b]) through oneDNN's sgemm
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  const char* fn = "matmul";
  int64_t batch = getInt(info, 2, fn, "batch", 1, 1 << 30);
  int64_t m = getInt(info, 3, fn, "m", 1, 1 << 30), k = getInt(info, 4, fn, "k", 1, 1 << 30), n = getInt(info, 5, fn, "n", 1, 1 << 30);
  bool ta = info[6].ToBoolean(), tb = info[7].ToBoolean();
  Buf a = getBuf(info, 0, fn, "a", checkedSize(info, fn, batch, m, k));
  Buf b = getBuf(info, 1, fn, "b", checkedSize(info, fn, batch, k, n));
  Buf c = getBuf(info, 8, fn, "out", checkedSize(info, fn, batch, m, n));
  for (int64_t i = 0; i < batch; i++) {
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a.p + i * m * k, ta ? m : k,
                                  b.p + i * k * n, tb ? k : n, 0.0f, c.p + i * m * n, n);
    if (st != dnnl_success) fail(info.Env(), fn, "dnnl_sgemm failed with status " + std::to_string((int)st));
  }
  return info.Env().Undefined();
}

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

// binary(op, a, as, b, bs, outShape, out)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  const char* fn = "binary";
  int64_t op = getInt(info, 0, fn, "op", 0, 3);
  Dims as = getDims(info, 2, fn, "a shape"), bs = getDims(info, 4, fn, "b shape"), os = getDims(info, 5, fn, "output shape");
  if (as.size() != os.size() || bs.size() != os.size()) fail(info.Env(), fn, "shapes must have equal rank");
  for (size_t i = 0; i < os.size(); i++)
    if ((as[i] != os[i] && as[i] != 1) || (bs[i] != os[i] && bs[i] != 1))
      fail(info.Env(), fn, "shapes " + dimsStr(as) + " and " + dimsStr(bs) + " do not broadcast to " + dimsStr(os));
  Buf a = getBuf(info, 1, fn, "a", prod(as)), b = getBuf(info, 3, fn, "b", prod(bs)), y = getBuf(info, 6, fn, "out", prod(os));
  if (y.n == 0) return info.Env().Undefined();
  Dims sa = bstrides(as, os), sb = bstrides(bs, os);
  switch (op) {
    case 0: binaryLoop(a.p, b.p, y.p, os, sa, sb, [](float u, float v) { return u + v; }); break;
    case 1: binaryLoop(a.p, b.p, y.p, os, sa, sb, [](float u, float v) { return u - v; }); break;
    case 2: binaryLoop(a.p, b.p, y.p, os, sa, sb, [](float u, float v) { return u * v; }); break;
    default: binaryLoop(a.p, b.p, y.p, os, sa, sb, [](float u, float v) { return u / v; }); break;
  }
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
  if (y.n == 0) return info.Env().Undefined();
  if (x.n == 0) { std::fill(y.p, y.p + y.n, 0.f); return info.Env().Undefined(); }
  // split dims into kept (out stride != 0) and reduced
  Dims sx = bstrides(xs, xs), so = bstrides(os, xs), shape = xs;
  collapse(shape, {&sx, &so});
  Dims keptShape, keptStride, redShape, redStride;
  for (size_t i = 0; i < shape.size(); i++) {
    if (so[i] != 0) { keptShape.push_back(shape[i]); keptStride.push_back(sx[i]); }
    else { redShape.push_back(shape[i]); redStride.push_back(sx[i]); }
  }
  int64_t nOut = (int64_t)y.n;
  int64_t nRed = (int64_t)prod(redShape);
  int kr = (int)keptShape.size(), rr = (int)redShape.size();
  // few outputs (a full reduction): split each one's reduced range across threads instead of the outputs
  const bool splitReduced = nOut < 4 && rr > 0 && x.n > kParallelMin;
  const int64_t L = rr ? redShape[rr - 1] : 1, ls = rr ? redStride[rr - 1] : 0;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin && !splitReduced)
  for (int64_t o = 0; o < nOut; o++) {
    int64_t base = 0, rem = o;
    for (int d = kr - 1; d >= 0; d--) { base += (rem % keptShape[d]) * keptStride[d]; rem /= keptShape[d]; }
    double acc = 0;
    if (rr == 0) acc = x.p[base];
    else {
#pragma omp parallel for reduction(+ : acc) schedule(static) if (splitReduced)
      for (int64_t r0 = 0; r0 < nRed / L; r0++) {
        int64_t off = base, rm = r0;
        for (int d = rr - 2; d >= 0; d--) { off += (rm % redShape[d]) * redStride[d]; rm /= redShape[d]; }
        float part = 0;
        for (int64_t j = 0; j < L; j++) part += x.p[off + j * ls];
        acc += part;
      }
    }
    y.p[o] = (float)acc;
  }
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ elementwise

/** exp(x) for float, vectorisable: 2^n e^f with |f| <= ln2/2 and a degree-6 polynomial (relative error ~2e-7). */
#pragma omp declare simd notinbranch
inline float vexp(float x) {
  x = std::min(88.3f, std::max(-87.3f, x));
  float n = std::nearbyint(x * 1.44269504088896341f);
  float f = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.f + f * (1.f + f * (0.5f + f * (0.166666672f + f * (0.0416666269f + f * (0.00833336543f + f * 0.00138925773f)))));
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

#pragma omp declare simd notinbranch
inline float sigm(float v) { return 1.f / (1.f + vexp(-v)); }

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

// unary(op, x, y): 0 exp 1 log 2 sqrt 3 square 4 tanh 5 silu 6 neg 7 ncdf
Napi::Value Unary(const Napi::CallbackInfo& info) {
  const char* fn = "unary";
  int64_t op = getInt(info, 0, fn, "op", 0, 7);
  Buf x = getBuf(info, 1, fn, "input");
  Buf y = getBuf(info, 2, fn, "out", x.n);
  const int64_t n = (int64_t)x.n;
  const float* xp = x.p;
  float* yp = y.p;
  switch (op) {
    case 0: mapUnary(xp, yp, n, [](float v) { return std::exp(v); }); break;
    case 1: mapUnary(xp, yp, n, [](float v) { return std::log(v); }); break;
    case 2: mapUnary(xp, yp, n, [](float v) { return std::sqrt(v); }); break;
    case 3: mapUnary(xp, yp, n, [](float v) { return v * v; }); break;
    case 4: mapUnary(xp, yp, n, [](float v) { return std::tanh(v); }); break;
    case 5: mapUnary(xp, yp, n, [](float v) { return v * sigm(v); }); break;
    case 6: mapUnary(xp, yp, n, [](float v) { return -v; }); break;
    default: mapUnary(xp, yp, n, [](float v) { return 0.5f * (1.f + std::tanh(kGeluC * (v + 0.044715f * v * v * v))); }); break;
  }
  return info.Env().Undefined();
}

// unaryBackward(op, x, y, dy, dx)
Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  const char* fn = "unaryBackward";
  int64_t op = getInt(info, 0, fn, "op", 0, 7);
  Buf x = getBuf(info, 1, fn, "input");
  Buf y = getBuf(info, 2, fn, "output", x.n), dy = getBuf(info, 3, fn, "output gradient", x.n), dx = getBuf(info, 4, fn, "input gradient", x.n);
  const int64_t n = (int64_t)x.n;
  const float *xp = x.p, *yp = y.p, *dyp = dy.p;
  float* dxp = dx.p;
  switch (op) {
    case 0: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return y; }); break;
    case 1: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) { return 1.f / v; }); break;
    case 2: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return 0.5f / y; }); break;
    case 3: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) { return 2.f * v; }); break;
    case 4: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float y) { return 1.f - y * y; }); break;
    case 5: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) { float s = sigm(v); return s * (1.f + v * (1.f - s)); }); break;
    case 6: mapUnaryBackward(xp, yp, dyp, dxp, n, [](float, float) { return -1.f; }); break;
    default:  // ncdf: d/dx 0.5 (1 + tanh(u)), u = c (x + 0.044715 x^3)
      mapUnaryBackward(xp, yp, dyp, dxp, n, [](float v, float) {
        float th = std::tanh(kGeluC * (v + 0.044715f * v * v * v));
        return 0.5f * (1.f - th * th) * kGeluC * (1.f + 3.f * 0.044715f * v * v);
      });
      break;
  }
  return info.Env().Undefined();
}

// clamp(x, lo, hi, y): y = min(hi, max(lo, x))
Napi::Value Clamp(const Napi::CallbackInfo& info) {
  const char* fn = "clamp";
  Buf x = getBuf(info, 0, fn, "input");
  float lo = (float)getNum(info, 1, fn, "lo"), hi = (float)getNum(info, 2, fn, "hi");
  if (!(lo <= hi)) fail(info.Env(), fn, "lo must not exceed hi");
  Buf y = getBuf(info, 3, fn, "out", x.n);
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) y.p[i] = std::min(hi, std::max(lo, x.p[i]));
  return info.Env().Undefined();
}

// clampBackward(x, lo, hi, dy, dx): dx = dy where lo <= x <= hi
Napi::Value ClampBackward(const Napi::CallbackInfo& info) {
  const char* fn = "clampBackward";
  Buf x = getBuf(info, 0, fn, "input");
  float lo = (float)getNum(info, 1, fn, "lo"), hi = (float)getNum(info, 2, fn, "hi");
  Buf dy = getBuf(info, 3, fn, "output gradient", x.n), dx = getBuf(info, 4, fn, "input gradient", x.n);
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) dx.p[i] = (x.p[i] >= lo && x.p[i] <= hi) ? dy.p[i] : 0.f;
  return info.Env().Undefined();
}

// affine(x, alpha, beta, y): y = alpha x + beta
Napi::Value Affine(const Napi::CallbackInfo& info) {
  const char* fn = "affine";
  Buf x = getBuf(info, 0, fn, "input");
  float al = (float)getNum(info, 1, fn, "alpha"), bt = (float)getNum(info, 2, fn, "beta");
  Buf y = getBuf(info, 3, fn, "out", x.n);
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) y.p[i] = al * x.p[i] + bt;
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ dropout masks

/**
 * Philox 4x32-10 (src/engine/random.ts, the same rounds and key schedule) on kPhiloxLanes counters at once, in place:
 * c[word][lane], key (k0, k1); each round is a loop over the lanes, so that it vectorises.
 */
constexpr int kPhiloxLanes = 16;
inline void philox4x32_10_lanes(uint32_t c[4][kPhiloxLanes], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) k0 += 0x9e3779b9u, k1 += 0xbb67ae85u;
    for (int l = 0; l < kPhiloxLanes; l++) {
      uint64_t p0 = (uint64_t)0xd2511f53u * c[0][l], p1 = (uint64_t)0xcd9e8d57u * c[2][l];
      uint32_t c0 = (uint32_t)(p1 >> 32) ^ c[1][l] ^ k0, c2 = (uint32_t)(p0 >> 32) ^ c[3][l] ^ k1;
      c[0][l] = c0, c[1][l] = (uint32_t)p1, c[2][l] = c2, c[3][l] = (uint32_t)p0;
    }
  }
}

/**
 * The smallest 32-bit word whose uniform, (word + 0.5) / 2^32 rounded to float32 as the engine draws it, is >= p (the
 * uniform grows with the word): an element is kept exactly when its word is >= this. 2^32 (nothing kept) is not
 * reachable for p < 1 .
 */
uint32_t dropoutKeepWord(double p) {
  uint64_t lo = 0, hi = 0xffffffffull;  // the answer is in [lo, hi]
  while (lo < hi) {
    uint64_t mid = (lo + hi) / 2;
    if ((double)(float)((mid + 0.5) / 4294967296.0) >= p) hi = mid;
    else lo = mid + 1;
  }
  return (uint32_t)lo;
}
thread_local std::vector<uint32_t> tl_words;

// dropoutMask(out, perSample, [seedLo, seedHi, streamLo, streamHi], p, layout?, dims?): element j of sample s is
// 1 / (1 - p) where its uniform is >= p, else 0; the uniform is the engine's fillRandom value to the bit
// ((word + 0.5) / 2^32 rounded to float32), so masks are identical to the host's. With a layout and the [N, C, H, W]
// it stands for, each value is written where that layout keeps element (s, j) (the mask of a tensor held in it).
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  const char* fn = "dropoutMask";
  Buf y = getBuf(info, 0, fn, "out");
  int64_t per = getInt(info, 1, fn, "values per sample", 1, 1LL << 40);
  Dims w = getDims(info, 2, fn, "key words", 4);
  double p = getNum(info, 3, fn, "p");
  if (!(p > 0 && p < 1)) fail(info.Env(), fn, "p must be in (0, 1)");
  if (y.n % per) fail(info.Env(), fn, "out is not a whole number of samples");
  for (auto v : w) if (v > 0xffffffffLL) fail(info.Env(), fn, "key words must be 32-bit");
  const float scale = (float)(1.0 / (1.0 - p));
  const int64_t samples = (int64_t)y.n / per;
  int64_t layout = kNCHW, C = 1, S = per;
  if (info.Length() > 5 && !info[4].IsUndefined()) {
    Dims d = getDims(info, 5, fn, "shape", 4);
    layout = getLayout(info, 4, fn, d);
    if ((int64_t)prod(d) != (int64_t)y.n || d[0] != samples) fail(info.Env(), fn, "shape " + dimsStr(d) + " does not match the mask");
    C = d[1], S = d[2] * d[3];
  }
  // per sample: its words in the engine's order (element j = c S + i, counter j / 4, word j % 4), kPhiloxLanes
  // counters at a time, then the mask values written in the layout's order (contiguous writes)
  const uint32_t keep = dropoutKeepWord(p);
  const int64_t counters = (per + 3) / 4;
#pragma omp parallel for schedule(static) if (y.n > kParallelMin)
  for (int64_t s = 0; s < samples; s++) {
    std::vector<uint32_t>& words = tl_words;
    words.resize((size_t)((counters + kPhiloxLanes) * 4));
    for (int64_t q = 0; q < counters; q += kPhiloxLanes) {
      uint32_t c[4][kPhiloxLanes];
      for (int l = 0; l < kPhiloxLanes; l++) c[0][l] = (uint32_t)(q + l), c[1][l] = (uint32_t)s, c[2][l] = (uint32_t)w[2], c[3][l] = (uint32_t)w[3];
      philox4x32_10_lanes(c, (uint32_t)w[0], (uint32_t)w[1]);
      uint32_t* o = words.data() + q * 4;
      for (int l = 0; l < kPhiloxLanes; l++)
        for (int e = 0; e < 4; e++) o[l * 4 + e] = c[e][l];
    }
    const uint32_t* wd = words.data();
    float* dst = y.p + s * per;
    if (layout == kBlocked16) {
      for (int64_t cb = 0; cb < C / 16; cb++)
        for (int64_t i = 0; i < S; i++)
          for (int64_t v = 0; v < 16; v++) dst[(cb * S + i) * 16 + v] = wd[(cb * 16 + v) * S + i] >= keep ? scale : 0.f;
    } else if (layout == kNHWC) {
      for (int64_t i = 0; i < S; i++)
        for (int64_t ch = 0; ch < C; ch++) dst[i * C + ch] = wd[ch * S + i] >= keep ? scale : 0.f;
    } else {
      for (int64_t j = 0; j < per; j++) dst[j] = wd[j] >= keep ? scale : 0.f;
    }
  }
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ group norm

struct GNArgs {
  int64_t N, C, S, G;
};

GNArgs gnArgs(const Napi::CallbackInfo& info, const char* fn, const Dims& xs, int64_t G) {
  if (xs.size() < 2) fail(info.Env(), fn, "input must be [N, C, ...], got " + dimsStr(xs));
  GNArgs a{xs[0], xs[1], 1, G};
  for (size_t i = 2; i < xs.size(); i++) a.S *= xs[i];
  if (G < 1 || a.C % G != 0) fail(info.Env(), fn, std::to_string(a.C) + " channels do not split into " + std::to_string(G) + " groups");
  return a;
}

/**
 * Group norm (+SiLU) of [N, C, H, W] stored as [N][C/V][S][V] (y in the same layout): nChw16c (V = 16) or NHWC
 * (V = C). Three passes over each block: per-channel sums, per-channel squared deviations from the group means, then
 * y = x a + b per channel (V lanes).
 */
void groupNormBlocked(const GNArgs& A, int64_t V, const float* x, const float* gm, const float* bt, double eps, bool silu, float* y, float* mean, float* rstd) {
  const int64_t CB = A.C / V, cg = A.C / A.G, S = A.S;
  std::vector<double> csum(A.N * A.C), csq(A.N * A.C);
  // per-channel sums of one block (or of squared deviations from m[v]), float lanes summed in double per 256 pixels
  // (four interleaved accumulators per lane, so that consecutive pixels' additions do not wait on each other)
  auto laneSums = [&](const float* xb, const float* m, double* out) {
    std::vector<double> acc(V, 0.0);
    std::vector<float> partv(4 * V), zero(V, 0.f);
    float *p0 = partv.data(), *p1 = p0 + V, *p2 = p1 + V, *p3 = p2 + V;
    const float* mm = m ? m : zero.data();
    for (int64_t s0 = 0; s0 < S; s0 += 256) {
      std::fill(partv.begin(), partv.end(), 0.f);
      const int64_t s1 = std::min(S, s0 + 256);
      int64_t s = s0;
      if (m) {
        for (; s + 4 <= s1; s += 4) {
          const float* r = xb + s * V;
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float d0 = r[v] - mm[v], d1 = r[V + v] - mm[v], d2 = r[2 * V + v] - mm[v], d3 = r[3 * V + v] - mm[v];
            p0[v] += d0 * d0; p1[v] += d1 * d1; p2[v] += d2 * d2; p3[v] += d3 * d3;
          }
        }
        for (; s < s1; s++)
#pragma omp simd
          for (int64_t v = 0; v < V; v++) { float d = xb[s * V + v] - mm[v]; p0[v] += d * d; }
      } else {
        for (; s + 4 <= s1; s += 4) {
          const float* r = xb + s * V;
#pragma omp simd
          for (int64_t v = 0; v < V; v++) { p0[v] += r[v]; p1[v] += r[V + v]; p2[v] += r[2 * V + v]; p3[v] += r[3 * V + v]; }
        }
        for (; s < s1; s++)
#pragma omp simd
          for (int64_t v = 0; v < V; v++) p0[v] += xb[s * V + v];
      }
      for (int64_t v = 0; v < V; v++) acc[v] += (p0[v] + p1[v]) + (p2[v] + p3[v]);
    }
    for (int64_t v = 0; v < V; v++) out[v] = acc[v];
  };
  auto groupOf = [&](int64_t nb, int64_t v) { return (nb / CB) * A.G + ((nb % CB) * V + v) / cg; };
  const double len = (double)(cg * S);
  // group statistics from the per-channel sums of groups g0 .. g1-1 (flat n * G + g)
  auto means = [&](int64_t g0, int64_t g1) {
    for (int64_t ng = g0; ng < g1; ng++) {
      double t = 0;
      for (int64_t c = 0; c < cg; c++) t += csum[(ng / A.G) * A.C + (ng % A.G) * cg + c];
      mean[ng] = (float)(t / len);
    }
  };
  auto rstds = [&](int64_t g0, int64_t g1) {
    for (int64_t ng = g0; ng < g1; ng++) {
      double t = 0;
      for (int64_t c = 0; c < cg; c++) t += csq[(ng / A.G) * A.C + (ng % A.G) * cg + c];
      rstd[ng] = (float)(1.0 / std::sqrt(t / len + eps));
    }
  };
  auto deviations = [&](int64_t nb) {
    std::vector<float> m(V);
    for (int64_t v = 0; v < V; v++) m[v] = mean[groupOf(nb, v)];
    laneSums(x + nb * S * V, m.data(), &csq[nb * V]);
  };
  auto normalize = [&](int64_t nb) {
    std::vector<float> av(V), bv(V);
    float *a = av.data(), *b = bv.data();
    for (int64_t v = 0; v < V; v++) {
      int64_t ch = (nb % CB) * V + v, ng = groupOf(nb, v);
      a[v] = rstd[ng] * gm[ch];
      b[v] = bt[ch] - mean[ng] * a[v];
    }
    const float* xb = x + nb * S * V;
    float* yb = y + nb * S * V;
    for (int64_t s = 0; s < S; s++) {
      if (silu) {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) { float z = xb[s * V + v] * a[v] + b[v]; yb[s * V + v] = z * sigm(z); }
      } else {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) yb[s * V + v] = xb[s * V + v] * a[v] + b[v];
      }
    }
  };
  if (V % cg == 0) {
    // every group lies inside one block: all three passes per block while it is in cache
#pragma omp parallel for schedule(static)
    for (int64_t nb = 0; nb < A.N * CB; nb++) {
      int64_t g0 = groupOf(nb, 0), g1 = groupOf(nb, V - 1) + 1;
      laneSums(x + nb * S * V, nullptr, &csum[nb * V]);
      means(g0, g1);
      deviations(nb);
      rstds(g0, g1);
      normalize(nb);
    }
    return;
  }
  // groups across blocks (e.g. 96 channels in 16 groups of 6): each pass over all blocks, statistics in between
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) laneSums(x + nb * S * V, nullptr, &csum[nb * V]);
  means(0, A.N * A.G);
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) deviations(nb);
  rstds(0, A.N * A.G);
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) normalize(nb);
}

// groupNorm(x, xs, gamma, beta, groups, eps, silu, y, mean, rstd, layout?): x and y in the given layout
Napi::Value GroupNorm(const Napi::CallbackInfo& info) {
  const char* fn = "groupNorm";
  Dims xs = getDims(info, 1, fn, "input shape");
  GNArgs A = gnArgs(info, fn, xs, getInt(info, 4, fn, "groups", 1, 1 << 20));
  Buf x = getBuf(info, 0, fn, "input", prod(xs));
  Buf gm = getBuf(info, 2, fn, "gamma", A.C), bt = getBuf(info, 3, fn, "beta", A.C);
  double eps = getNum(info, 5, fn, "eps");
  bool silu = info[6].ToBoolean();
  Buf y = getBuf(info, 7, fn, "out", x.n), mean = getBuf(info, 8, fn, "mean", A.N * A.G), rstd = getBuf(info, 9, fn, "rstd", A.N * A.G);
  if (int64_t layout = getLayout(info, 10, fn, xs)) {
    groupNormBlocked(A, layout == kBlocked16 ? 16 : A.C, x.p, gm.p, bt.p, eps, silu, y.p, mean.p, rstd.p);
    return info.Env().Undefined();
  }
  int64_t cg = A.C / A.G, len = cg * A.S;
#pragma omp parallel for schedule(dynamic)
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    const float* xp = x.p + (n * A.C + g * cg) * A.S;
    float* yp = y.p + (n * A.C + g * cg) * A.S;
    // two-pass mean and variance, float lanes summed in double per block of 4096
    double s = 0, s2 = 0;
    for (int64_t i0 = 0; i0 < len; i0 += 4096) {
      int64_t i1 = std::min(len, i0 + 4096);
      float part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = i0; i < i1; i++) part += xp[i];
      s += part;
    }
    float m = (float)(s / len);
    for (int64_t i0 = 0; i0 < len; i0 += 4096) {
      int64_t i1 = std::min(len, i0 + 4096);
      float part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = i0; i < i1; i++) { float d = xp[i] - m; part += d * d; }
      s2 += part;
    }
    float r = (float)(1.0 / std::sqrt(s2 / len + eps));
    mean.p[ng] = m;
    rstd.p[ng] = r;
    for (int64_t c = 0; c < cg; c++) {
      int64_t ch = g * cg + c;
      float a = r * gm.p[ch], b = bt.p[ch] - m * a;
      const float* xc = xp + c * A.S;
      float* yc = yp + c * A.S;
      if (silu) {
#pragma omp simd
        for (int64_t i = 0; i < A.S; i++) { float z = xc[i] * a + b; yc[i] = z * sigm(z); }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < A.S; i++) yc[i] = xc[i] * a + b;
      }
    }
  }
  return info.Env().Undefined();
}

/**
 * The gradient of groupNormBlocked: x, dy and dx stored as [N][C/V][S][V] (nChw16c: V = 16; NHWC: V = C). Pass 1
 * sums, per channel and sample, d = dy (times SiLU' when fused) and d x_hat; the group means of their gamma-weighted
 * sums follow; pass 2 writes dx = rstd (d gamma - m1 - x_hat m2), recomputing d.
 */
void groupNormBackwardBlocked(const GNArgs& A, int64_t V, const float* x, const float* gm, const float* bt, const float* mean, const float* rstd, bool silu,
                              const float* dy, float* dx, float* dgm, float* dbt) {
  const int64_t CB = A.C / V, cg = A.C / A.G, S = A.S;
  std::vector<double> pg(A.N * A.C), pb(A.N * A.C), m1(A.N * A.G), m2(A.N * A.G);
  auto groupOf = [&](int64_t nb, int64_t v) { return (nb / CB) * A.G + ((nb % CB) * V + v) / cg; };
  struct Lanes {
    std::vector<float> m, r, g, b;
  };
  auto lanes = [&](int64_t nb) {
    Lanes l{std::vector<float>(V), std::vector<float>(V), std::vector<float>(V), std::vector<float>(V)};
    for (int64_t v = 0; v < V; v++) {
      int64_t ng = groupOf(nb, v), ch = (nb % CB) * V + v;
      l.m[v] = mean[ng], l.r[v] = rstd[ng], l.g[v] = gm[ch], l.b[v] = bt[ch];
    }
    return l;
  };
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) {
    Lanes l = lanes(nb);
    const float *m = l.m.data(), *r = l.r.data(), *g = l.g.data(), *b = l.b.data();
    const float* xb = x + nb * S * V;
    const float* db = dy + nb * S * V;
    std::vector<double> ag(V, 0.0), ab(V, 0.0);
    std::vector<float> pgv(V), pbv(V);
    float *fg = pgv.data(), *fb = pbv.data();
    for (int64_t s0 = 0; s0 < S; s0 += 256) {
      std::fill(pgv.begin(), pgv.end(), 0.f);
      std::fill(pbv.begin(), pbv.end(), 0.f);
      for (int64_t s = s0; s < std::min(S, s0 + 256); s++) {
        const float *xr = xb + s * V, *dr = db + s * V;
        if (silu) {
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float xh = (xr[v] - m[v]) * r[v], z = xh * g[v] + b[v], sg = sigm(z);
            float d = dr[v] * sg * (1.f + z * (1.f - sg));
            fg[v] += d * xh;
            fb[v] += d;
          }
        } else {
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float xh = (xr[v] - m[v]) * r[v];
            fg[v] += dr[v] * xh;
            fb[v] += dr[v];
          }
        }
      }
      for (int64_t v = 0; v < V; v++) ag[v] += fg[v], ab[v] += fb[v];
    }
    for (int64_t v = 0; v < V; v++) pg[nb * V + v] = ag[v], pb[nb * V + v] = ab[v];
  }
  const double len = (double)(cg * S);
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    double s1 = 0, s2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++) s1 += pb[n * A.C + c] * gm[c], s2 += pg[n * A.C + c] * gm[c];
    m1[ng] = s1 / len, m2[ng] = s2 / len;
  }
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) {
    Lanes l = lanes(nb);
    const float *m = l.m.data(), *r = l.r.data(), *g = l.g.data(), *b = l.b.data();
    std::vector<float> a1(V), a2(V);
    for (int64_t v = 0; v < V; v++) a1[v] = (float)m1[groupOf(nb, v)], a2[v] = (float)m2[groupOf(nb, v)];
    const float *p1 = a1.data(), *p2 = a2.data();
    const float* xb = x + nb * S * V;
    const float* db = dy + nb * S * V;
    float* ob = dx + nb * S * V;
    for (int64_t s = 0; s < S; s++) {
      const float *xr = xb + s * V, *dr = db + s * V;
      float* orow = ob + s * V;
      if (silu) {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) {
          float xh = (xr[v] - m[v]) * r[v], z = xh * g[v] + b[v], sg = sigm(z);
          float d = dr[v] * sg * (1.f + z * (1.f - sg));
          orow[v] = r[v] * (d * g[v] - p1[v] - xh * p2[v]);
        }
      } else {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) {
          float xh = (xr[v] - m[v]) * r[v];
          orow[v] = r[v] * (dr[v] * g[v] - p1[v] - xh * p2[v]);
        }
      }
    }
  }
  for (int64_t c = 0; c < A.C; c++) {
    double a = 0, b = 0;
    for (int64_t n = 0; n < A.N; n++) a += pg[n * A.C + c], b += pb[n * A.C + c];
    dgm[c] = (float)a;
    dbt[c] = (float)b;
  }
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
  if (int64_t layout = getLayout(info, 12, fn, xs)) {
    groupNormBackwardBlocked(A, layout == kBlocked16 ? 16 : A.C, x.p, gm.p, bt.p, mean.p, rstd.p, silu, dy.p, dx.p, dgm.p, dbt.p);
    return info.Env().Undefined();
  }
  int64_t cg = A.C / A.G;
  std::vector<double> pg(A.N * A.C), pb(A.N * A.C);  // per-sample partial sums of dgamma, dbeta
#pragma omp parallel for schedule(dynamic)
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    float m = mean.p[ng], r = rstd.p[ng];
    int64_t off = (n * A.C + g * cg) * A.S;
    double s1 = 0, s2 = 0;
    std::vector<float> dzv(cg * A.S);
    float* dz = dzv.data();
    const float* xg = x.p + off;
    const float* dyg = dy.p + off;
    for (int64_t c = 0; c < cg; c++) {
      int64_t ch = g * cg + c;
      float gmc = gm.p[ch], btc = bt.p[ch];
      float dgs = 0, dbs = 0;
      const float* xc = xg + c * A.S;
      const float* dyc = dyg + c * A.S;
      float* dzc = dz + c * A.S;
      // the SiLU branch is hoisted out of the loops so that both vectorise
      if (silu) {
#pragma omp simd reduction(+ : dgs, dbs)
        for (int64_t i = 0; i < A.S; i++) {
          float xh = (xc[i] - m) * r;
          float z = xh * gmc + btc, sg = sigm(z);
          float d = dyc[i] * sg * (1.f + z * (1.f - sg));
          dzc[i] = d;
          dgs += d * xh;
          dbs += d;
        }
      } else {
#pragma omp simd reduction(+ : dgs, dbs)
        for (int64_t i = 0; i < A.S; i++) {
          float xh = (xc[i] - m) * r;
          float d = dyc[i];
          dzc[i] = d;
          dgs += d * xh;
          dbs += d;
        }
      }
      pg[n * A.C + ch] = dgs;
      pb[n * A.C + ch] = dbs;
      s1 += (double)dbs * gmc;
      s2 += (double)dgs * gmc;
    }
    double len = (double)(cg * A.S);
    float m1 = (float)(s1 / len), m2 = (float)(s2 / len);
    float* dxg = dx.p + off;
    for (int64_t c = 0; c < cg; c++) {
      float gmc = gm.p[g * cg + c];
      const float* xc = xg + c * A.S;
      const float* dzc = dz + c * A.S;
      float* dxc = dxg + c * A.S;
#pragma omp simd
      for (int64_t i = 0; i < A.S; i++) {
        float xh = (xc[i] - m) * r;
        dxc[i] = r * (dzc[i] * gmc - m1 - xh * m2);
      }
    }
  }
  for (int64_t c = 0; c < A.C; c++) {
    double a = 0, b = 0;
    for (int64_t n = 0; n < A.N; n++) { a += pg[n * A.C + c]; b += pb[n * A.C + c]; }
    dgm.p[c] = (float)a;
    dbt.p[c] = (float)b;
  }
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ softmax

// softmax(x, rows, cols, y)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const char* fn = "softmax";
  int64_t rows = getInt(info, 1, fn, "rows", 0, 1LL << 40), cols = getInt(info, 2, fn, "cols", 1, 1LL << 30);
  size_t total = checkedSize(info, fn, rows, cols);
  Buf x = getBuf(info, 0, fn, "input", total), y = getBuf(info, 3, fn, "out", total);
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x.p + r * cols;
    float* yr = y.p + r * cols;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < cols; j++) mx = std::max(mx, xr[j]);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < cols; j++) { float e = vexp(xr[j] - mx); yr[j] = e; s += e; }
    float inv = 1.f / s;
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
  }
  return info.Env().Undefined();
}

// softmaxBackward(y, dy, rows, cols, dx)
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  const char* fn = "softmaxBackward";
  int64_t rows = getInt(info, 2, fn, "rows", 0, 1LL << 40), cols = getInt(info, 3, fn, "cols", 1, 1LL << 30);
  size_t total = checkedSize(info, fn, rows, cols);
  Buf y = getBuf(info, 0, fn, "output", total), dy = getBuf(info, 1, fn, "output gradient", total);
  Buf dx = getBuf(info, 4, fn, "input gradient", total);
#pragma omp parallel for schedule(static) if (y.n > kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* yr = y.p + r * cols;
    const float* gr = dy.p + r * cols;
    float* dr = dx.p + r * cols;
    float dot = 0;
    for (int64_t j = 0; j < cols; j++) dot += yr[j] * gr[j];
    for (int64_t j = 0; j < cols; j++) dr[j] = yr[j] * (gr[j] - dot);
  }
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
  if (x.n == 0) return info.Env().Undefined();
  Dims in_st = bstrides(xs, xs), os(xs.size()), sx(xs.size());
  for (size_t i = 0; i < xs.size(); i++) { os[i] = xs[perm[i]]; sx[i] = in_st[perm[i]]; }
  Dims zero(os.size(), 0);
  binaryLoop(x.p, x.p, y.p, os, sx, zero, [](float u, float) { return u; });
  return info.Env().Undefined();
}

// concat(list, shapes, out): along axis 1
Napi::Value Concat(const Napi::CallbackInfo& info) {
  const char* fn = "concat";
  if (!info[0].IsArray() || !info[1].IsArray()) fail(info.Env(), fn, "expected arrays of inputs and shapes");
  auto list = info[0].As<Napi::Array>(), shapes = info[1].As<Napi::Array>();
  if (list.Length() != shapes.Length() || list.Length() == 0) fail(info.Env(), fn, "inputs and shapes differ in count");
  std::vector<Buf> bufs;
  std::vector<Dims> ds;
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
      if (!(xv >= 0 && xv <= 1e9 && xv == std::floor(xv))) fail(info.Env(), fn, "invalid shape for input " + std::to_string(i));
      d[k] = (int64_t)xv;
      total *= xv;
    }
    if (total > kMaxElements) fail(info.Env(), fn, "input " + std::to_string(i) + " has too many elements");
    if (d.size() < 2 || fa.ElementLength() != prod(d)) fail(info.Env(), fn, "input " + std::to_string(i) + " does not match its shape " + dimsStr(d));
    if (i > 0) {
      if (d.size() != ds[0].size()) fail(info.Env(), fn, "ranks differ");
      for (size_t k = 0; k < d.size(); k++)
        if (k != 1 && d[k] != ds[0][k]) fail(info.Env(), fn, "shapes " + dimsStr(ds[0]) + " and " + dimsStr(d) + " differ outside axis 1");
    }
    bufs.push_back({fa.Data(), fa.ElementLength()});
    ds.push_back(d);
    Ctot += d[1];
  }
  int64_t N = ds[0][0], S = 1;
  for (size_t k = 2; k < ds[0].size(); k++) S *= ds[0][k];
  Buf y = getBuf(info, 2, fn, "out", checkedSize(info, fn, N, Ctot, S));
#pragma omp parallel for schedule(static) if (y.n > kParallelMin)
  for (int64_t n = 0; n < N; n++) {
    int64_t c0 = 0;
    for (size_t i = 0; i < bufs.size(); i++) {
      int64_t c = ds[i][1];
      if (c * S != 0) std::memcpy(y.p + (n * Ctot + c0) * S, bufs[i].p + n * c * S, sizeof(float) * c * S);
      c0 += c;
    }
  }
  return info.Env().Undefined();
}

// sliceChannels(x, xs, c0, c, y)
Napi::Value SliceChannels(const Napi::CallbackInfo& info) {
  const char* fn = "sliceChannels";
  Dims xs = getDims(info, 1, fn, "input shape");
  if (xs.size() < 2) fail(info.Env(), fn, "input must be [N, C, ...]");
  int64_t c0 = getInt(info, 2, fn, "first channel", 0, xs[1]), c = getInt(info, 3, fn, "channel count", 0, xs[1] - c0);
  int64_t N = xs[0], C = xs[1], S = 1;
  for (size_t k = 2; k < xs.size(); k++) S *= xs[k];
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 4, fn, "out", (size_t)(N * c * S));
  for (int64_t n = 0; n < N; n++)
    if (c * S != 0) std::memcpy(y.p + n * c * S, x.p + (n * C + c0) * S, sizeof(float) * c * S);
  return info.Env().Undefined();
}

// upsample2x(x, xs, y) and upsample2xBackward(dy, xs, dx)
// upsample2x(x, xs, y, layout?): nearest-neighbour 2x of [N, C, H, W]; x and y in the given layout
Napi::Value Upsample2x(const Napi::CallbackInfo& info) {
  const char* fn = "upsample2x";
  Dims xs = getDims(info, 1, fn, "input shape", 4);
  Buf x = getBuf(info, 0, fn, "input", prod(xs)), y = getBuf(info, 2, fn, "out", prod(xs) * 4);
  int64_t layout = getLayout(info, 3, fn, xs);
  // values per pixel: one (NCHW), the channel block (nChw16c) or all channels (NHWC)
  const int64_t V = layout == kBlocked16 ? 16 : layout == kNHWC ? xs[1] : 1;
  int64_t NC = xs[0] * xs[1] / V, H = xs[2], W = xs[3];
#pragma omp parallel for schedule(static) if (y.n > kParallelMin)
  for (int64_t nc = 0; nc < NC; nc++)
    for (int64_t h = 0; h < 2 * H; h++) {
      const float* xr = x.p + (nc * H + h / 2) * W * V;
      float* yr = y.p + (nc * 2 * H + h) * 2 * W * V;
      for (int64_t w = 0; w < 2 * W; w++)
        for (int64_t v = 0; v < V; v++) yr[w * V + v] = xr[(w >> 1) * V + v];
    }
  return info.Env().Undefined();
}

// pool2d(kind, x, xs, k, stride, pad, y): kind 0 max, 1 average counting padding, 2 average over valid positions
Napi::Value Pool2d(const Napi::CallbackInfo& info) {
  const char* fn = "pool2d";
  int64_t kind = getInt(info, 0, fn, "kind", 0, 2);
  Dims xs = getDims(info, 2, fn, "input shape", 4);
  int64_t k = getInt(info, 3, fn, "kernel", 1, 64), st = getInt(info, 4, fn, "stride", 1, 64), pad = getInt(info, 5, fn, "padding", 0, k - 1);
  int64_t NC = xs[0] * xs[1], H = xs[2], W = xs[3];
  if (H + 2 * pad < k || W + 2 * pad < k) fail(info.Env(), fn, "input " + dimsStr(xs) + " is smaller than the window");
  int64_t Ho = (H + 2 * pad - k) / st + 1, Wo = (W + 2 * pad - k) / st + 1;
  Buf x = getBuf(info, 1, fn, "input", prod(xs)), y = getBuf(info, 6, fn, "out", checkedSize(info, fn, (double)NC, (double)Ho, (double)Wo));
#pragma omp parallel for schedule(static) if (y.n > kParallelMin)
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
            float v = x.p[(nc * H + h) * W + w];
            acc = kind == 0 ? std::max(acc, v) : acc + v;
            n++;
          }
        }
        y.p[(nc * Ho + oh) * Wo + ow] = kind == 0 ? acc : acc / (float)(kind == 1 ? k * k : n);
      }
  return info.Env().Undefined();
}

// upsample2xBackward(dy, xs, dx, layout?): dy and dx in the given layout
Napi::Value Upsample2xBackward(const Napi::CallbackInfo& info) {
  const char* fn = "upsample2xBackward";
  Dims xs = getDims(info, 1, fn, "input shape", 4);
  Buf dy = getBuf(info, 0, fn, "output gradient", prod(xs) * 4), dx = getBuf(info, 2, fn, "input gradient", prod(xs));
  int64_t layout = getLayout(info, 3, fn, xs);
  const int64_t V = layout == kBlocked16 ? 16 : layout == kNHWC ? xs[1] : 1;  // values per pixel
  int64_t NC = xs[0] * xs[1] / V, H = xs[2], W = xs[3];
#pragma omp parallel for schedule(static) if (dy.n > kParallelMin)
  for (int64_t nc = 0; nc < NC; nc++)
    for (int64_t h = 0; h < H; h++) {
      const float* r0 = dy.p + (nc * 2 * H + 2 * h) * 2 * W * V;
      const float* r1 = r0 + 2 * W * V;
      float* o = dx.p + (nc * H + h) * W * V;
      for (int64_t w = 0; w < W; w++)
        for (int64_t v = 0; v < V; v++)
          o[w * V + v] = r0[2 * w * V + v] + r0[(2 * w + 1) * V + v] + r1[2 * w * V + v] + r1[(2 * w + 1) * V + v];
    }
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ optimiser

// adamStep(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step)
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  const char* fn = "adamStep";
  Buf p = getBuf(info, 0, fn, "param");
  Buf g = getBuf(info, 1, fn, "grad", p.n), m = getBuf(info, 2, fn, "first moment", p.n), v = getBuf(info, 3, fn, "second moment", p.n);
  double lr = getNum(info, 4, fn, "lr"), b1 = getNum(info, 5, fn, "beta1"), b2 = getNum(info, 6, fn, "beta2");
  double eps = getNum(info, 7, fn, "eps"), wd = getNum(info, 8, fn, "weightDecay");
  int64_t step = getInt(info, 9, fn, "step", 1, 1LL << 50);
  float bc1 = (float)(1 - std::pow(b1, (double)step)), bc2 = (float)(1 - std::pow(b2, (double)step));
  float fb1 = (float)b1, fb2 = (float)b2, flr = (float)lr, feps = (float)eps, decay = (float)(1 - lr * wd);
  const int64_t n = (int64_t)p.n;
#pragma omp parallel for schedule(static) if (p.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float gi = g.p[i];
    float mi = fb1 * m.p[i] + (1 - fb1) * gi;
    float vi = fb2 * v.p[i] + (1 - fb2) * gi * gi;
    m.p[i] = mi;
    v.p[i] = vi;
    p.p[i] = p.p[i] * decay - flr * (mi / bc1) / (std::sqrt(vi / bc2) + feps);
  }
  return info.Env().Undefined();
}

// emaUpdate(ema, p, decay)
Napi::Value EmaUpdate(const Napi::CallbackInfo& info) {
  const char* fn = "emaUpdate";
  Buf e = getBuf(info, 0, fn, "ema");
  Buf p = getBuf(info, 1, fn, "param", e.n);
  float d = (float)getNum(info, 2, fn, "decay");
  const int64_t n = (int64_t)e.n;
#pragma omp parallel for schedule(static) if (e.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) e.p[i] = d * e.p[i] + (1 - d) * p.p[i];
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "sumSquares", "input");
  double s = 0;
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for reduction(+ : s) schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) s += (double)x.p[i] * x.p[i];
  return Napi::Number::New(info.Env(), s);
}

Napi::Value ScaleInPlace(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "scaleInPlace", "input");
  float s = (float)getNum(info, 1, "scaleInPlace", "scale");
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) x.p[i] *= s;
  return info.Env().Undefined();
}

Napi::Value AddInPlace(const Napi::CallbackInfo& info) {
  Buf x = getBuf(info, 0, "addInPlace", "target");
  Buf y = getBuf(info, 1, "addInPlace", "addend", x.n);
  const int64_t n = (int64_t)x.n;
#pragma omp parallel for schedule(static) if (x.n > kParallelMin)
  for (int64_t i = 0; i < n; i++) x.p[i] += y.p[i];
  return info.Env().Undefined();
}

// setThreads(n): the OpenMP team size, shared by our loops and oneDNN (built on the same OpenMP runtime)
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = getInt(info, 0, "setThreads", "threads", 1, 4096);
  omp_set_num_threads((int)n);
  return info.Env().Undefined();
}

// cpuHasV3(): whether this CPU runs x86-64-v3 code (AVX2, FMA, BMI2...), the level of the second build of this file
Napi::Value CpuHasV3(const Napi::CallbackInfo& info) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("avx");
#else
  bool ok = false;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

// cpuHasV4(): whether this CPU runs x86-64-v4 code (v3 and AVX-512 F/BW/CD/DQ/VL), the level of the third build
Napi::Value CpuHasV4(const Napi::CallbackInfo& info) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
            __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  bool ok = false;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

Napi::Value CpuHasBf16(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpuHasBf16());
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  auto v = dnnl::version();
  Napi::Object o = Napi::Object::New(info.Env());
#if defined(DDPM_LEVEL_V4)
  o.Set("build", "x86-64-v4");
#elif defined(DDPM_LEVEL_V3)
  o.Set("build", "x86-64-v3");
#else
  o.Set("build", "baseline");
#endif
  o.Set("convCacheEntries", (double)conv_cache.map.size());
  o.Set("convCacheLimit", (double)conv_cache.limit());
  o.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  o.Set("threads", omp_get_max_threads());
  return o;
}

// The oneDNN engine, stream and primitive cache are process-wide and not locked: one JavaScript thread owns the
// addon at a time. Loading it from a second thread (a worker) while the first still holds it is refused.
std::mutex owner_mu;
bool owned = false;
std::thread::id owner;

void releaseOwner(void*) {
  std::lock_guard<std::mutex> g(owner_mu);
  conv_cache.clear();
  owned = false;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  {
    std::lock_guard<std::mutex> g(owner_mu);
    if (owned && owner != std::this_thread::get_id())
      throw Napi::Error::New(env, "native: the addon is already in use by another thread of this process (its oneDNN state is process-wide); use it from one thread, or use the reference backend in workers");
    owned = true;
    owner = std::this_thread::get_id();
  }
  napi_add_env_cleanup_hook(env, releaseOwner, nullptr);
#if defined(__GLIBC__)
  // Tensors are large, short-lived ArrayBuffers. By default glibc serves each one with a fresh mmap, so every op
  // pays page faults on its output; keeping them in the heap (never trimmed) lets freed buffers be reused.
  // DDPM_KEEP_MALLOC=1 leaves the allocator's defaults alone.
  if (!getenv("DDPM_KEEP_MALLOC")) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
#endif
  exports.Set("conv2dForward", Napi::Function::New(env, Conv2dForward));
  exports.Set("relayout", Napi::Function::New(env, Relayout));
  exports.Set("setConvAlgorithm", Napi::Function::New(env, SetConvAlgorithm));
  exports.Set("convImplementations", Napi::Function::New(env, ConvImplementations));
  exports.Set("dropoutMask", Napi::Function::New(env, DropoutMask));
  exports.Set("conv2dBackward", Napi::Function::New(env, Conv2dBackward));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("reduceSum", Napi::Function::New(env, ReduceSum));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("unaryBackward", Napi::Function::New(env, UnaryBackward));
  exports.Set("affine", Napi::Function::New(env, Affine));
  exports.Set("clamp", Napi::Function::New(env, Clamp));
  exports.Set("clampBackward", Napi::Function::New(env, ClampBackward));
  exports.Set("groupNorm", Napi::Function::New(env, GroupNorm));
  exports.Set("groupNormBackward", Napi::Function::New(env, GroupNormBackward));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("softmaxBackward", Napi::Function::New(env, SoftmaxBackward));
  exports.Set("permute", Napi::Function::New(env, Permute));
  exports.Set("concat", Napi::Function::New(env, Concat));
  exports.Set("sliceChannels", Napi::Function::New(env, SliceChannels));
  exports.Set("upsample2x", Napi::Function::New(env, Upsample2x));
  exports.Set("upsample2xBackward", Napi::Function::New(env, Upsample2xBackward));
  exports.Set("pool2d", Napi::Function::New(env, Pool2d));
  exports.Set("adamStep", Napi::Function::New(env, AdamStep));
  exports.Set("emaUpdate", Napi::Function::New(env, EmaUpdate));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("scaleInPlace", Napi::Function::New(env, ScaleInPlace));
  exports.Set("addInPlace", Napi::Function::New(env, AddInPlace));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("cpuHasV3", Napi::Function::New(env, CpuHasV3));
  exports.Set("cpuHasV4", Napi::Function::New(env, CpuHasV4));
  exports.Set("cpuHasBf16", Napi::Function::New(env, CpuHasBf16));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  return exports;
}

NODE_API_MODULE(ddpm_native, Init)
