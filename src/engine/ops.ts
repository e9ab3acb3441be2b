// Differentiable operations. Each computes its forward value on the current backend and records its backward.
import type { BinaryOp, ConvParams, UnaryOp } from './backend.js';
import { Tensor, fmtShape, getBackend, isGradEnabled, makeResult, shapeSize } from './tensor.js';
import { fillRandom, keyWords, type RandomKey } from './random.js';

const be = getBackend;

// ---------------------------------------------------------------- creation

/** A tensor holding a copy of host values (uploaded to the backend). */
export function tensor(values: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor {
  const n = shapeSize(shape);
  if (values.length !== n) throw new Error(`tensor: shape ${fmtShape(shape)} needs ${n} values, got ${values.length}`);
  return new Tensor(
    be().upload(values instanceof Float32Array ? values : Float32Array.from(values)),
    shape,
    requiresGrad,
  );
}

/** A tensor holding a copy of a Float32Array (the way host data enters the engine). */
export const fromArray = (values: Float32Array, shape: readonly number[], requiresGrad = false): Tensor =>
  tensor(values, shape, requiresGrad);

export function zeros(shape: readonly number[], requiresGrad = false): Tensor {
  return new Tensor(be().zeros(shapeSize(shape)), shape, requiresGrad);
}

export function full(shape: readonly number[], value: number): Tensor {
  return new Tensor(be().upload(new Float32Array(shapeSize(shape)).fill(value)), shape);
}

/** Standard normal noise of `shape`; dimension 0 indexes samples, numbered from sampleStart. */
export function randn(shape: readonly number[], key: RandomKey, sampleStart = 0): Tensor {
  const out = new Float32Array(shapeSize(shape));
  if (out.length) fillRandom(out, out.length / shape[0], key, sampleStart, 'normal');
  return new Tensor(be().upload(out), shape);
}

export function rand(shape: readonly number[], key: RandomKey, sampleStart = 0): Tensor {
  const out = new Float32Array(shapeSize(shape));
  if (out.length) fillRandom(out, out.length / shape[0], key, sampleStart, 'uniform');
  return new Tensor(be().upload(out), shape);
}

// ---------------------------------------------------------------- shape helpers

function broadcastShape(op: string, a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1,
      db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function padRank(s: number[], r: number): number[] {
  return [...new Array<number>(r - s.length).fill(1), ...s];
}

/** Sums a gradient of outShape back down to `shape` (the inverse of broadcasting). */
function unbroadcast(g: Tensor, shape: number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const target = padRank(shape, g.shape.length);
  return new Tensor(be().reduceSum(g.storage, g.shape, target), shape);
}

// ---------------------------------------------------------------- elementwise

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const outShape = broadcastShape(op, a.shape, b.shape);
  const r = outShape.length;
  const y = be().binary(op, a.storage, padRank(a.shape, r), b.storage, padRank(b.shape, r), outShape);
  return makeResult(op, y, outShape, [a, b], (g) => {
    switch (op) {
      case 'add':
        return [unbroadcast(g, a.shape), unbroadcast(g, b.shape)];
      case 'sub':
        return [unbroadcast(g, a.shape), unbroadcast(neg(g), b.shape)];
      case 'mul':
        return [
          a.requiresGrad || a.node ? unbroadcast(mul(g, b), a.shape) : null,
          b.requiresGrad || b.node ? unbroadcast(mul(g, a), b.shape) : null,
        ];
      case 'div': {
        const ga = a.requiresGrad || a.node ? unbroadcast(div(g, b), a.shape) : null;
        const gb = b.requiresGrad || b.node ? unbroadcast(neg(div(mul(g, a), mul(b, b))), b.shape) : null;
        return [ga, gb];
      }
    }
  });
}

const asTensor = (x: Tensor | number): Tensor => (typeof x === 'number' ? full([1], x) : x);

export function add(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === 'number' && typeof a !== 'number') return affine(a, 1, b);
  return binary('add', asTensor(a), asTensor(b));
}
export function sub(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === 'number' && typeof a !== 'number') return affine(a, 1, -b);
  return binary('sub', asTensor(a), asTensor(b));
}
export function mul(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === 'number' && typeof a !== 'number') return affine(a, b, 0);
  if (typeof a === 'number' && typeof b !== 'number') return affine(b, a, 0);
  return binary('mul', asTensor(a), asTensor(b));
}
export function div(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === 'number' && typeof a !== 'number') return affine(a, 1 / b, 0);
  return binary('div', asTensor(a), asTensor(b));
}

/** y = alpha * x + beta */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  const y = be().affine(x.storage, alpha, beta);
  return makeResult('affine', y, x.shape, [x], (g) => [affine(g, alpha, 0)]);
}

function unary(op: UnaryOp, x: Tensor): Tensor {
  const y = be().unary(op, x.storage);
  return makeResult(op, y, x.shape, [x], (g) => [new Tensor(be().unaryBackward(op, x.storage, y, g.storage), x.shape)]);
}

export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const square = (x: Tensor) => unary('square', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const silu = (x: Tensor) => unary('silu', x);
export const neg = (x: Tensor) => unary('neg', x);

/** Standard normal CDF, the official code's tanh approximation (used by the discretized decoder, eq. 13). */
export const normalCdf = (x: Tensor) => unary('ncdf', x);

/** min(hi, max(lo, x)); the gradient passes where lo <= x <= hi (as PyTorch's clamp). */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  if (!(lo <= hi)) throw new Error(`clamp: lower bound ${lo} exceeds upper bound ${hi}`);
  const y = be().clamp(x.storage, lo, hi);
  return makeResult('clamp', y, x.shape, [x], (g) => [
    new Tensor(be().clampBackward(x.storage, lo, hi, g.storage), x.shape),
  ]);
}

// ---------------------------------------------------------------- shape ops

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const infer = s.indexOf(-1);
  if (infer >= 0) s[infer] = x.size / shapeSize(s.filter((d) => d !== -1));
  if (shapeSize(s) !== x.size) throw new Error(`reshape: cannot view ${fmtShape(x.shape)} as ${fmtShape(shape)}`);
  return makeResult('reshape', x.storage, s, [x], (g) => [new Tensor(g.storage, x.shape)]);
}

export function permute(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.shape.length || [...perm].sort().some((p, i) => p !== i))
    throw new Error(`permute: ${JSON.stringify(perm)} is not a permutation of the axes of ${fmtShape(x.shape)}`);
  const y = be().permute(x.storage, x.shape, perm);
  const inv = perm.map((_, i) => perm.indexOf(i));
  return makeResult(
    'permute',
    y,
    perm.map((p) => x.shape[p]),
    [x],
    (g) => [permute(g, inv)],
  );
}

export function transpose(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return permute(x, perm);
}

/** Concatenates [N, C_i, ...] tensors along the channel axis. */
export function concat(xs: Tensor[]): Tensor {
  const s0 = xs[0].shape;
  for (const t of xs)
    if (t.shape.length !== s0.length || t.shape.some((d, i) => i !== 1 && d !== s0[i]))
      throw new Error(`concat: shapes ${fmtShape(s0)} and ${fmtShape(t.shape)} differ outside the channel axis`);
  const C = xs.reduce((a, t) => a + t.shape[1], 0);
  const y = be().concat(
    xs.map((t) => t.storage),
    xs.map((t) => t.shape),
  );
  const outShape = [s0[0], C, ...s0.slice(2)];
  return makeResult('concat', y, outShape, xs, (g) => {
    let c0 = 0;
    return xs.map((t) => {
      const part = new Tensor(be().sliceChannels(g.storage, outShape, c0, t.shape[1]), t.shape);
      c0 += t.shape[1];
      return part;
    });
  });
}

/** Channels [c0, c0 + c) of a [N, C, ...] tensor. */
export function sliceChannels(x: Tensor, c0: number, c: number): Tensor {
  const C = x.shape[1];
  if (!(Number.isInteger(c0) && Number.isInteger(c) && c0 >= 0 && c >= 1 && c0 + c <= C))
    throw new Error(`sliceChannels: channels [${c0}, ${c0 + c}) are outside the ${C} channels of ${fmtShape(x.shape)}`);
  const outShape = [x.shape[0], c, ...x.shape.slice(2)];
  const y = be().sliceChannels(x.storage, x.shape, c0, c);
  return makeResult('sliceChannels', y, outShape, [x], (g) => {
    const parts: Tensor[] = [];
    if (c0 > 0) parts.push(zeros([x.shape[0], c0, ...x.shape.slice(2)]));
    parts.push(g);
    if (c0 + c < C) parts.push(zeros([x.shape[0], C - c0 - c, ...x.shape.slice(2)]));
    return [parts.length === 1 ? g : concat(parts)];
  });
}

/** Nearest-neighbour upsampling by 2 of [N, C, H, W]. */
export function upsample2x(x: Tensor): Tensor {
  if (x.shape.length !== 4) throw new Error(`upsample2x: expected [N,C,H,W], got ${fmtShape(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const y = be().upsample2x(x.storage, x.shape);
  return makeResult('upsample2x', y, [N, C, 2 * H, 2 * W], [x], (g) => [
    new Tensor(be().upsample2xBackward(g.storage, x.shape), x.shape),
  ]);
}

/**
 * k x k max or average pooling of [N, C, H, W] (stride, symmetric padding; average over valid positions unless
 * countPad). Forward only (the FID network): its backward throws.
 */
export function pool2d(kind: 'max' | 'avg', x: Tensor, k: number, stride: number, pad = 0, countPad = false): Tensor {
  if (x.shape.length !== 4) throw new Error(`pool2d: expected [N,C,H,W], got ${fmtShape(x.shape)}`);
  if (
    !(
      Number.isInteger(k) &&
      k >= 1 &&
      Number.isInteger(stride) &&
      stride >= 1 &&
      Number.isInteger(pad) &&
      pad >= 0 &&
      pad < k
    )
  )
    throw new Error(`pool2d: invalid kernel ${k}, stride ${stride} or padding ${pad}`);
  const [N, C, H, W] = x.shape;
  if (H + 2 * pad < k || W + 2 * pad < k)
    throw new Error(`pool2d: input ${fmtShape(x.shape)} is smaller than the ${k}x${k} window`);
  const Ho = Math.floor((H + 2 * pad - k) / stride) + 1,
    Wo = Math.floor((W + 2 * pad - k) / stride) + 1;
  const y = be().pool2d(kind, x.storage, x.shape, k, stride, pad, countPad);
  return makeResult(`${kind}Pool2d`, y, [N, C, Ho, Wo], [x], () => {
    throw new Error(`${kind}Pool2d: forward only (used by the FID network)`);
  });
}

// ---------------------------------------------------------------- reductions

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number[], keepDims = false): Tensor {
  const ax = (axes ?? x.shape.map((_, i) => i)).map((a) => (a < 0 ? a + x.shape.length : a));
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const y = be().reduceSum(x.storage, x.shape, kept);
  const outShape = keepDims ? kept : x.shape.filter((_, i) => !ax.includes(i));
  return makeResult('sum', y, outShape, [x], (g) => [
    // g broadcast to x's shape (the zeros a tensor, so that the step's scope owns their buffer)
    new Tensor(be().binary('add', g.storage, kept, zeros(x.shape).storage, x.shape, x.shape), x.shape),
  ]);
}

export function mean(x: Tensor, axes?: number[], keepDims = false): Tensor {
  const ax = axes ?? x.shape.map((_, i) => i);
  const n = ax.reduce((p, a) => p * x.shape[a < 0 ? a + x.shape.length : a], 1);
  return mul(sum(x, ax, keepDims), 1 / n);
}

// ---------------------------------------------------------------- linear algebra

/** Batched matrix product: a [..., M, K] @ b [..., K, N]; b may be 2-D and is then shared across the batch. */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  const ra = a.shape.length,
    rb = b.shape.length;
  if (ra < 2 || rb < 2)
    throw new Error(`matmul: operands must have rank >= 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const M = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const Ka = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = a.shape.slice(0, -2),
    batchB = b.shape.slice(0, -2);
  const batch = shapeSize(batchA);
  const shared = rb === 2 && !transA; // b shared across batch: fold the batch into M
  if (Ka !== Kb || (!shared && (batchA.length !== batchB.length || batchA.some((d, i) => d !== batchB[i]))))
    throw new Error(
      `matmul: shapes ${fmtShape(a.shape)}${transA ? 'ᵀ' : ''} and ${fmtShape(b.shape)}${transB ? 'ᵀ' : ''} do not ` +
        `match`,
    );
  const outShape = [...batchA, M, N];
  const y = shared
    ? be().matmul(a.storage, b.storage, 1, batch * M, Ka, N, false, transB)
    : be().matmul(a.storage, b.storage, batch, M, Ka, N, transA, transB);
  return makeResult('matmul', y, outShape, [a, b], (g) => {
    // y = A B  =>  dA = g B^T, dB = A^T g (with transposes folded in)
    let ga: Tensor | null = null,
      gb: Tensor | null = null;
    if (a.requiresGrad || a.node) ga = transA ? matmul(b, g, transB, true) : matmul(g, b, false, !transB);
    if (b.requiresGrad || b.node) {
      if (shared) {
        const a2 = reshape(a.detach(), [batch * M, Ka]),
          g2 = reshape(g, [batch * M, N]);
        gb = transB ? matmul(g2, a2, true, false) : matmul(a2, g2, true, false);
      } else gb = transB ? matmul(g, a, true, transA) : matmul(a.detach(), g, !transA, false);
    }
    return [ga ? reshape(ga, a.shape) : null, gb ? reshape(gb, b.shape) : null];
  });
}

/** y = x W^T + b with W of shape [out, in] (PyTorch's nn.Linear layout). */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  if (x.shape[x.shape.length - 1] !== w.shape[1])
    throw new Error(
      `linear: input ${fmtShape(x.shape)} does not match weight ${fmtShape(w.shape)} (expected last dim ${w.shape[1]})`,
    );
  const y = matmul(x, w, false, true);
  return b ? add(y, b) : y;
}

// ---------------------------------------------------------------- convolution

export interface Conv2dOptions {
  stride?: number;
  /** Symmetric padding, or [top, bottom, left, right]. */
  padding?: number | [number, number, number, number];
  /** 'bf16': input and weights rounded to bfloat16, float32 accumulation (forward only; see ConvParams.bf16). */
  precision?: Precision;
}

export type Precision = 'f32' | 'bf16';

export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad;
  const p: ConvParams = { stride, padTop: pt, padBottom: pb, padLeft: pl, padRight: pr };
  if (opts.precision === 'bf16') {
    if (isGradEnabled() && [x, w, b].some((t) => t && (t.requiresGrad || t.node)))
      throw new Error(
        'conv2d: precision bf16 is forward-only (sampling, evaluation); run it under noGrad, and train in f32',
      );
    p.bf16 = true;
  } else if (opts.precision !== undefined && opts.precision !== 'f32')
    throw new Error(`conv2d: unknown precision "${opts.precision}" (expected f32 or bf16)`);
  if (x.shape.length !== 4 || w.shape.length !== 4 || x.shape[1] !== w.shape[1])
    throw new Error(
      `conv2d: input ${fmtShape(x.shape)} and weight ${fmtShape(w.shape)} do not match (expected [N,C,H,W] and ` +
        `[O,C,kh,kw])`,
    );
  if (b && (b.shape.length !== 1 || b.shape[0] !== w.shape[0]))
    throw new Error(`conv2d: bias ${fmtShape(b.shape)} does not match weight ${fmtShape(w.shape)}`);
  if (!(stride >= 1) || [pt, pb, pl, pr].some((v) => v < 0 || !Number.isInteger(v)))
    throw new Error(`conv2d: invalid stride ${stride} or padding ${JSON.stringify(pad)}`);
  const [N, , H, W] = x.shape;
  const [O, , KH, KW] = w.shape;
  const Ho = Math.floor((H + pt + pb - KH) / stride) + 1,
    Wo = Math.floor((W + pl + pr - KW) / stride) + 1;
  if (Ho < 1 || Wo < 1)
    throw new Error(`conv2d: input ${fmtShape(x.shape)} is smaller than kernel ${fmtShape(w.shape)}`);
  const y = be().conv2d(x.storage, x.shape, w.storage, w.shape, b ? b.storage : null, p);
  return makeResult('conv2d', y, [N, O, Ho, Wo], b ? [x, w, b] : [x, w], (g) => {
    const needDx = !!(x.requiresGrad || x.node);
    const { dx, dw, db } = be().conv2dBackward(x.storage, x.shape, g.storage, w.storage, w.shape, p, needDx, !!b);
    const out: (Tensor | null)[] = [dx ? new Tensor(dx, x.shape) : null, new Tensor(dw, w.shape)];
    if (b) out.push(new Tensor(db!, b.shape));
    return out;
  });
}

// ---------------------------------------------------------------- normalisation and attention

/** GroupNorm over [N, C, ...] with per-channel affine; with silu, fused GroupNorm followed by SiLU. */
export function groupNorm(x: Tensor, gamma: Tensor, beta: Tensor, groups: number, eps: number, silu = false): Tensor {
  const C = x.shape[1];
  if (x.shape.length < 2 || C % groups !== 0)
    throw new Error(`groupNorm: ${C} channels of ${fmtShape(x.shape)} do not split into ${groups} groups`);
  if (gamma.size !== C || beta.size !== C)
    throw new Error(
      `groupNorm: affine parameters ${fmtShape(gamma.shape)}, ${fmtShape(beta.shape)} do not match ${C} channels`,
    );
  const r = be().groupNorm(x.storage, x.shape, gamma.storage, beta.storage, groups, eps, silu);
  // the saved statistics as tensors, so that the step's scope owns their buffers (tensor.ts)
  const mean = new Tensor(r.mean, [x.shape[0] * groups]),
    rstd = new Tensor(r.rstd, [x.shape[0] * groups]);
  return makeResult(silu ? 'groupNorm+silu' : 'groupNorm', r.y, x.shape, [x, gamma, beta], (g) => {
    const d = be().groupNormBackward(
      x.storage,
      x.shape,
      gamma.storage,
      beta.storage,
      mean.storage,
      rstd.storage,
      groups,
      silu,
      g.storage,
    );
    return [new Tensor(d.dx, x.shape), new Tensor(d.dgamma, gamma.shape), new Tensor(d.dbeta, beta.shape)];
  });
}

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  const cols = x.shape[x.shape.length - 1];
  const rows = x.size / cols;
  const y = be().softmax(x.storage, rows, cols);
  return makeResult('softmax', y, x.shape, [x], (g) => [
    new Tensor(be().softmaxBackward(y, g.storage, rows, cols), x.shape),
  ]);
}

/** Inverted dropout with keep-probability 1 - p; the mask is drawn from the counter-based generator. */
export function dropout(x: Tensor, p: number, key: RandomKey): Tensor {
  if (p <= 0) return x;
  if (p >= 1) throw new Error(`dropout: probability must be below 1, got ${p}`);
  const b = be(),
    perSample = x.size / x.shape[0];
  if (b.dropoutMask) return mul(x, new Tensor(b.dropoutMask(x.size, perSample, keyWords(key), p, x.storage), x.shape));
  const u = new Float32Array(x.size);
  fillRandom(u, perSample, key, 0, 'uniform');
  const scale = 1 / (1 - p);
  for (let i = 0; i < u.length; i++) u[i] = u[i] >= p ? scale : 0;
  return mul(x, new Tensor(b.upload(u), x.shape));
}

/** Per-sample scalars: table[t[i]] for each i, as shape [B, 1, 1, 1] (float64 tables, rounded to float32 once). */
export function gatherTimesteps(table: Float64Array, t: Int32Array | number[], rank = 4): Tensor {
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) {
    const k = t[i];
    if (!Number.isInteger(k) || k < 0 || k >= table.length)
      throw new Error(`gatherTimesteps: timestep ${k} outside [0, ${table.length - 1}]`);
    out[i] = table[k];
  }
  return new Tensor(be().upload(out), [t.length, ...new Array<number>(rank - 1).fill(1)]);
}
