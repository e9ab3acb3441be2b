// The native CPU backend: oneDNN for convolutions and matrix products, OpenMP loops of our own for the kernels that
// oneDNN 2.6 lacks (group norm, fused GroupNorm+SiLU, Adam, EMA) and for the elementwise and data-movement kernels.
//
// Every entry point validates its arguments (types, shapes, buffer lengths) before it touches memory and throws a
// JavaScript Error naming the function and the offending argument. Output buffers are allocated by the caller.
//
// This file and binding_ops.cc are the N-API glue only: each function reads and checks its arguments (binding.h) and
// calls a kernel, a plain C++ function of pointers, sizes and shapes (conv.h, norm.h, elementwise.h, optim.h,
// random.h). Here: the oneDNN entry points, the process-wide ones (threads, CPU, info) and the module's exports.
#include "binding.h"
#include "conv.h"

#include <omp.h>

#include <cstdlib>
#include <mutex>
#include <thread>
#if defined(__GLIBC__)  // defined by the C library's headers, included above
#include <malloc.h>
#endif

using namespace ddpm;

namespace {

// ------------------------------------------------------------------------------------------------ oneDNN

ConvKey convKey(const Napi::CallbackInfo& info, const char* fn, size_t xsi, size_t wsi, size_t pi, bool bias) {
  ConvKey k;
  k.xs = getDims(info, xsi, fn, "input shape", 4);
  k.ws = getDims(info, wsi, fn, "weight shape", 4);
  Dims p = getDims(info, pi, fn, "conv params [stride, top, bottom, left, right]", 5);
  k.stride = p[0], k.pt = p[1], k.pb = p[2], k.pl = p[3], k.pr = p[4];
  k.bias = bias;
  if (k.xs[1] != k.ws[1])
    fail(info.Env(), fn, "input " + dimsStr(k.xs) + " and weight " + dimsStr(k.ws) + " disagree on channels");
  if (k.stride < 1) fail(info.Env(), fn, "stride must be >= 1");
  for (auto d : k.xs)
    if (d < 1) fail(info.Env(), fn, "empty input " + dimsStr(k.xs));
  for (auto d : k.ws)
    if (d < 1) fail(info.Env(), fn, "empty weight " + dimsStr(k.ws));
  if (k.xs[2] + k.pt + k.pb < k.ws[2] || k.xs[3] + k.pl + k.pr < k.ws[3])
    fail(info.Env(), fn, "input " + dimsStr(k.xs) + " smaller than kernel " + dimsStr(k.ws));
  return k;
}

#define DNNL_GUARD(fn, ...)                                         \
  try {                                                             \
    __VA_ARGS__                                                     \
  } catch (const dnnl::error& e) {                                  \
    fail(info.Env(), fn, std::string("oneDNN error: ") + e.what()); \
  }

// conv2dForward(x, xs, w, ws, b | null, params, y, bf16, xLayout, keep, wId?, wVersion?) -> the layout y was written
// in. wId, wVersion: the weight buffer's identity and version, under which its reordered copy is kept (see weights
// in conv.cc).
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
  WeightTag tag{0, 0};
  bool tagged = info.Length() > 11 && info[10].IsNumber() && info[11].IsNumber();
  if (tagged) tag = {info[10].As<Napi::Number>().DoubleValue(), info[11].As<Napi::Number>().DoubleValue()};
  int64_t yLayout = kNCHW;
  DNNL_GUARD(fn, { yLayout = conv2dForward(k, x.p, xLayout, w.p, tagged ? &tag : nullptr, b.p, y.p, keep); })
  return Napi::Number::New(info.Env(), (double)yLayout);
}

// setConvAlgorithm("winograd" | "direct"): see conv_algorithm (conv.cc); drops the cached primitives (and weight
// copies)
Napi::Value SetConvAlgorithm(const Napi::CallbackInfo& info) {
  const char* fn = "setConvAlgorithm";
  std::string a = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (a != "winograd" && a != "direct") fail(info.Env(), fn, "expected \"winograd\" or \"direct\", got \"" + a + "\"");
  setConvAlgorithm(a == "winograd" ? 1 : 0);
  return info.Env().Undefined();
}

// convImplementations(xs, ws, params, bias) -> { forward, backwardData, backwardWeights }: oneDNN's names of the
// kernels a float32 convolution of these shapes runs (e.g. "jit_wino_4x3:avx512_core")
Napi::Value ConvImplementations(const Napi::CallbackInfo& info) {
  const char* fn = "convImplementations";
  ConvKey k = convKey(info, fn, 0, 1, 2, info.Length() > 3 && info[3].ToBoolean());
  Napi::Object o = Napi::Object::New(info.Env());
  DNNL_GUARD(fn, {
    ConvImpls impl = convImplementations(k);
    o.Set("forward", impl.forward);
    o.Set("backwardData", impl.backwardData);
    o.Set("backwardWeights", impl.backwardWeights);
  })
  return o;
}

// relayout(x, [N, C, H, W], from, to, y): between the layouts of common.h (Layout)
Napi::Value Relayout(const Napi::CallbackInfo& info) {
  const char* fn = "relayout";
  Dims d = getDims(info, 1, fn, "shape", 4);
  int64_t from = getLayout(info, 2, fn, d), to = getLayout(info, 3, fn, d);
  Buf x = getBuf(info, 0, fn, "input", prod(d)), y = getBuf(info, 4, fn, "out", prod(d));
  DNNL_GUARD(fn, { relayout(d, from, to, x.p, y.p); })
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
    dxLayout = conv2dBackward(k, x.p, xLayout, dy.p, dyLayout, w.p, needDx ? dx.p : nullptr, dw.p, db.p, keep);
  })
  return Napi::Number::New(info.Env(), (double)dxLayout);
}

// matmul(a, b, batch, m, k, n, transA, transB, out): out[b] = op(A[b]) op(B[b]) through oneDNN's sgemm
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  const char* fn = "matmul";
  int64_t batch = getInt(info, 2, fn, "batch", 1, 1 << 30);
  int64_t m = getInt(info, 3, fn, "m", 1, 1 << 30), k = getInt(info, 4, fn, "k", 1, 1 << 30),
          n = getInt(info, 5, fn, "n", 1, 1 << 30);
  bool ta = info[6].ToBoolean(), tb = info[7].ToBoolean();
  Buf a = getBuf(info, 0, fn, "a", checkedSize(info, fn, batch, m, k));
  Buf b = getBuf(info, 1, fn, "b", checkedSize(info, fn, batch, k, n));
  Buf c = getBuf(info, 8, fn, "out", checkedSize(info, fn, batch, m, n));
  dnnl_status_t st = matmul(batch, m, k, n, ta, tb, a.p, b.p, c.p);
  if (st != dnnl_success) fail(info.Env(), fn, "dnnl_sgemm failed with status " + std::to_string((int)st));
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------------------ process

// setThreads(n): the OpenMP team size, shared by our loops and oneDNN (built on the same OpenMP runtime). A oneDNN
// primitive keeps the team size it was created with, so a change drops the cached convolution primitives.
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = getInt(info, 0, "setThreads", "threads", 1, 4096);
  if ((int)n != omp_get_max_threads()) convCacheClear();
  omp_set_num_threads((int)n);
  return info.Env().Undefined();
}

// cpuHasV3(): whether this CPU runs x86-64-v3 code (AVX2, FMA, BMI2...), the level of the second build of the addon
Napi::Value CpuHasV3(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpuHasV3());
}

// cpuHasV4(): whether this CPU runs x86-64-v4 code (v3 and AVX-512 F/BW/CD/DQ/VL), the level of the third build
Napi::Value CpuHasV4(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpuHasV4());
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
  o.Set("convCacheEntries", (double)convCacheEntries());
  o.Set("convCacheLimit", (double)convCacheLimit());
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
  convCacheClear();
  owned = false;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  {
    std::lock_guard<std::mutex> g(owner_mu);
    if (owned && owner != std::this_thread::get_id())
      throw Napi::Error::New(env,
                             "native: the addon is already in use by another thread of this process (its oneDNN state "
                             "is process-wide); use it from one thread, or use the reference backend in workers");
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
