// oneDNN for convolutions and matrix products: the primitives per shape in a bounded cache, the weights' copies in the
// primitives' layouts, the activation layouts (nChw16c / NHWC) and the reorders between them, the Winograd choice.
#include "conv.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>

namespace ddpm {

using dnnl::memory;

// ------------------------------------------------------------------------------------------------ oneDNN state

dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

bool cpuHasBf16() {
  static bool has = [] {
    auto isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return has;
}

bool cpuHasV3() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("avx");
#else
  return false;
#endif
}

bool cpuHasV4() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

namespace {

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
  return conv_algorithm == 1 && !k.bf16 && k.ws[2] == 3 && k.ws[3] == 3 && k.stride == 1 && k.xs[1] >= 16 &&
         k.xs[2] >= 7 && k.xs[3] >= 7;
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
  auto dataDesc = [&](dnnl::algorithm a) {
    return dnnl::convolution_backward_data::desc(a, x_any, w_any, y_any, strides, pl, pr);
  };
  try {
    P->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(dataDesc(algo), eng(), P->fwd_pd);
  } catch (const dnnl::error&) {
    P->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(dataDesc(dnnl::algorithm::convolution_direct),
                                                                     eng(), P->fwd_pd);
  }
  P->bwd_data = dnnl::convolution_backward_data(P->bwd_data_pd);
  auto wDesc = [&](dnnl::algorithm a) {
    return k.bias ? dnnl::convolution_backward_weights::desc(a, x_any, w_any, P->b_md, y_any, strides, pl, pr)
                  : dnnl::convolution_backward_weights::desc(a, x_any, w_any, y_any, strides, pl, pr);
  };
  try {
    P->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(wDesc(algo), eng(), P->fwd_pd);
  } catch (const dnnl::error&) {
    P->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(wDesc(dnnl::algorithm::convolution_direct), eng(),
                                                                     P->fwd_pd);
  }
  P->bwd_w = dnnl::convolution_backward_weights(P->bwd_w_pd);
  return conv_cache.insert(key, std::move(P));
}

/** A oneDNN memory over a caller's buffer (oneDNN takes a non-const handle; inputs are only read through it). */
memory userMem(const memory::desc& md, const float* data) {
  return memory(md, eng(), const_cast<float*>(data));
}

/** Memory in the layout `want`, reordered (into the primitive's reusable buffer) from the user's plain buffer when the
 * layouts differ. */
memory toLayout(ConvPrims& P, int role, const memory::desc& user_md, const float* data, const memory::desc& want) {
  memory user = userMem(user_md, data);
  if (want == user_md) return user;
  memory& m = P.buf(role, want);
  dnnl::reorder(user, m).execute(strm(), user, m);
  return m;
}

/** A memory of layout `have` whose contents land in the user's plain buffer after finish(). */
struct OutMem {
  memory user, m;
  OutMem(ConvPrims& P, int role, const memory::desc& user_md, float* data, const memory::desc& have)
      : user(user_md, eng(), data) {
    m = (have == user_md) ? user : P.buf(role, have);
  }
  void finish() {
    if (m.get() != user.get()) dnnl::reorder(m, user).execute(strm(), m, user);
  }
};

memory::desc layoutDesc(const Dims& d, int64_t layout) {
  auto tag = layout == kBlocked16 ? memory::format_tag::nChw16c
             : layout == kNHWC    ? memory::format_tag::nhwc
                                  : memory::format_tag::nchw;
  return memory::desc({d[0], d[1], d[2], d[3]}, memory::data_type::f32, tag);
}

}  // namespace

Dims convOut(const ConvKey& k) {
  return {k.xs[0], k.ws[0], (k.xs[2] + k.pt + k.pb - k.ws[2]) / k.stride + 1,
          (k.xs[3] + k.pl + k.pr - k.ws[3]) / k.stride + 1};
}

int64_t conv2dForward(const ConvKey& k, const float* x, int64_t xLayout, const float* w, const WeightTag* wTag,
                      const float* b, float* y, bool keep) {
  Dims yd = convOut(k);
  int64_t yLayout = kNCHW;
  ConvPrims& P = getConv(k);
  memory xm = toLayout(P, FWD_SRC, layoutDesc(k.xs, xLayout), x, P.fwd_pd.src_desc());
  memory wm;
  auto want = P.fwd_pd.weights_desc();
  if (wTag && want != P.w_user) {
    double id = wTag->id, version = wTag->version;
    auto it = std::find_if(P.weights.begin(), P.weights.end(), [&](auto& e) { return e.first.first == id; });
    if (it == P.weights.end()) {
      P.weights.emplace_front(std::make_pair(id, -1.0), memory(want, eng()));
      if (P.weights.size() > kWeightCacheMax) P.weights.pop_back();
    } else {
      P.weights.splice(P.weights.begin(), P.weights, it);
    }
    auto& e = P.weights.front();
    if (e.first.second != version) {  // new, or written since: reorder into the entry's own buffer
      memory user = userMem(P.w_user, w);
      dnnl::reorder(user, e.second).execute(strm(), user, e.second);
      e.first.second = version;
    }
    wm = e.second;
  } else {
    wm = toLayout(P, FWD_W, P.w_user, w, want);
  }
  if (keep) {
    auto dst = P.fwd_pd.dst_desc();
    if (yd[1] % 16 == 0 && dst == layoutDesc(yd, kBlocked16))
      yLayout = kBlocked16;
    else if (dst == layoutDesc(yd, kNHWC))
      yLayout = kNHWC;
  }
  OutMem ym(P, FWD_DST, layoutDesc(yd, yLayout), y, P.fwd_pd.dst_desc());
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym.m}};
  if (k.bias) args[DNNL_ARG_BIAS] = userMem(P.b_md, b);
  P.fwd.execute(strm(), args);
  ym.finish();
  strm().wait();
  return yLayout;
}

void setConvAlgorithm(int algorithm) {
  if (algorithm != conv_algorithm) conv_cache.clear();
  conv_algorithm = algorithm;
}

ConvImpls convImplementations(const ConvKey& k) {
  ConvPrims& P = getConv(k);
  return {P.fwd_pd.impl_info_str(), P.bwd_data_pd.impl_info_str(), P.bwd_w_pd.impl_info_str()};
}

size_t convCacheEntries() {
  return conv_cache.map.size();
}
size_t convCacheLimit() {
  return conv_cache.limit();
}
void convCacheClear() {
  conv_cache.clear();
}

void relayout(const Dims& d, int64_t from, int64_t to, const float* x, float* y) {
  memory src = userMem(layoutDesc(d, from), x), dst(layoutDesc(d, to), eng(), y);
  dnnl::reorder(src, dst).execute(strm(), src, dst);
  strm().wait();
}

// both gradients, with dy reordered once (not at all when it comes in the primitives' layout)
int64_t conv2dBackward(const ConvKey& k, const float* x, int64_t xLayout, const float* dy, int64_t dyLayout,
                       const float* w, float* dx, float* dw, float* db, bool keep) {
  Dims yd = convOut(k);
  int64_t dxLayout = kNCHW;
  ConvPrims& P = getConv(k);
  memory::desc dy_user = layoutDesc(yd, dyLayout), x_user = layoutDesc(k.xs, xLayout);
  memory dym = toLayout(P, BWD_DY, dy_user, dy, P.bwd_w_pd.diff_dst_desc());
  if (dx) {
    memory dym2 = P.bwd_data_pd.diff_dst_desc() == P.bwd_w_pd.diff_dst_desc()
                      ? dym
                      : toLayout(P, BWD_DY2, dy_user, dy, P.bwd_data_pd.diff_dst_desc());
    memory wm = toLayout(P, BWD_W, P.w_user, w, P.bwd_data_pd.weights_desc());
    if (keep) {
      auto ds = P.bwd_data_pd.diff_src_desc();
      if (k.xs[1] % 16 == 0 && ds == layoutDesc(k.xs, kBlocked16))
        dxLayout = kBlocked16;
      else if (ds == layoutDesc(k.xs, kNHWC))
        dxLayout = kNHWC;
    }
    OutMem dxm(P, BWD_DX, layoutDesc(k.xs, dxLayout), dx, P.bwd_data_pd.diff_src_desc());
    P.bwd_data.execute(strm(), {{DNNL_ARG_DIFF_DST, dym2}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm.m}});
    dxm.finish();
  }
  memory xm = toLayout(P, BWDW_SRC, x_user, x, P.bwd_w_pd.src_desc());
  OutMem dwm(P, BWDW_DW, P.w_user, dw, P.bwd_w_pd.diff_weights_desc());
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm.m}};
  if (k.bias) args[DNNL_ARG_DIFF_BIAS] = memory(P.b_md, eng(), db);
  P.bwd_w.execute(strm(), args);
  dwm.finish();
  strm().wait();
  return dxLayout;
}

dnnl_status_t matmul(int64_t batch, int64_t m, int64_t k, int64_t n, bool transA, bool transB, const float* a,
                     const float* b, float* c) {
  for (int64_t i = 0; i < batch; i++) {
    dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, 1.0f, a + i * m * k, transA ? m : k,
                                  b + i * k * n, transB ? k : n, 0.0f, c + i * m * n, n);
    if (st != dnnl_success) return st;
  }
  return dnnl_success;
}

}  // namespace ddpm
