// The reference backend: plain TypeScript loops, written to be obviously correct. It is the oracle that every
// other backend is tested against, and the fallback when the native addon is not built. The convolution, pooling
// and upsampling loops are in conv.ts, group norm and softmax in norm.ts; the rest is here.
import type { AdamHyper, Backend, BinaryOp, ConvParams, UnaryOp } from '../../engine/backend.js';
import * as conv from './conv.js';
import * as norm from './norm.js';

/** This backend's buffers: plain arrays (Float64Array in the float64 variant, typed as Float32Array here). */
type Storage = Float32Array;

/** Strides of `shape` (row-major) with 0 for dimensions broadcast to `outShape`. */
function broadcastStrides(shape: number[], outShape: number[]): number[] {
  const st = new Array<number>(outShape.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = shape[i] === 1 && outShape[i] !== 1 ? 0 : acc;
    acc *= shape[i];
  }
  return st;
}

/** Calls fn(outIndex, aIndex, bIndex) over every element of outShape, in row-major order. */
function forEachBroadcast(
  outShape: number[],
  sa: number[],
  sb: number[],
  fn: (o: number, ia: number, ib: number) => void,
): void {
  const r = outShape.length;
  const total = outShape.reduce((x, y) => x * y, 1);
  if (total === 0) return;
  const idx = new Array<number>(r).fill(0);
  let ia = 0,
    ib = 0;
  for (let o = 0; o < total; o++) {
    fn(o, ia, ib);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < outShape[d]) break;
      ia -= sa[d] * outShape[d];
      ib -= sb[d] * outShape[d];
      idx[d] = 0;
    }
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Standard normal CDF, the tanh approximation used by the official DDPM code (approx_standard_normal_cdf). */
function approxStandardNormalCdf(x: number): number {
  return 0.5 * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

/**
 * A copy of a rounded to bfloat16 (the top 16 bits of the float32, rounded to nearest even; NaN stays NaN), kept in
 * the array's own type: how oneDNN's reorders convert float32 to bf16, so a bf16 convolution here computes on the
 * same values as the native backend's.
 */
export function roundToBf16<A extends Float32Array | Float64Array>(a: A): A {
  const f = Float32Array.from(a);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) {
    const v = u[i];
    if ((v & 0x7f800000) === 0x7f800000 && v & 0x7fffff) continue; // NaN
    u[i] = ((v + 0x7fff + ((v >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return (a instanceof Float32Array ? f : Float64Array.from(f)) as A;
}

export class ReferenceBackend implements Backend<Storage> {
  readonly name: string;
  /** Float32Array normally; Float64Array for finite-difference gradient checks in double precision. */
  private readonly Arr: Float32ArrayConstructor | Float64ArrayConstructor;

  constructor(precision: 'float32' | 'float64' = 'float32') {
    this.Arr = precision === 'float64' ? Float64Array : Float32Array;
    this.name = precision === 'float64' ? 'reference-f64' : 'reference';
  }

  upload(values: Float32Array): Storage {
    return this.Arr.from(values) as Storage;
  }
  zeros(n: number): Storage {
    return this.alloc(n);
  }
  size(x: Storage): number {
    return x.length;
  }
  async read(x: Storage): Promise<Float32Array> {
    return Float32Array.from(x);
  }
  readSync(x: Storage): Float32Array {
    return x;
  }
  write(x: Storage, values: Float32Array): void {
    if (values.length !== x.length) throw new Error(`write: ${values.length} values for a buffer of ${x.length}`);
    x.set(values);
  }
  copy(x: Storage): Storage {
    return x.slice();
  }

  /** A zeroed buffer of n values, of this backend's precision (also handed to the loops of conv.ts and norm.ts). */
  private readonly alloc = (n: number): Storage => new this.Arr(n) as Storage;

  conv2d(x: Storage, xs: number[], w: Storage, ws: number[], b: Storage | null, p: ConvParams): Storage {
    if (p.bf16) [x, w] = [roundToBf16(x), roundToBf16(w)];
    return conv.conv2d(this.alloc, x, xs, w, ws, b, p);
  }

  conv2dBackward(
    x: Storage,
    xs: number[],
    dy: Storage,
    w: Storage,
    ws: number[],
    p: ConvParams,
    needDx: boolean,
    withBias: boolean,
  ) {
    const dx = needDx ? conv.conv2dBackwardData(this.alloc, dy, w, ws, p, xs) : null;
    return { dx, ...conv.conv2dBackwardWeights(this.alloc, x, xs, dy, ws, p, withBias) };
  }

  matmul(
    a: Storage,
    b: Storage,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
  ): Storage {
    const out = this.alloc(batch * m * n);
    for (let bt = 0; bt < batch; bt++) {
      const ao = bt * m * k,
        bo = bt * k * n,
        oo = bt * m * n;
      for (let i = 0; i < m; i++)
        for (let kk = 0; kk < k; kk++) {
          const av = transA ? a[ao + kk * m + i] : a[ao + i * k + kk];
          if (av === 0) continue;
          const row = oo + i * n;
          if (transB) for (let j = 0; j < n; j++) out[row + j] += av * b[bo + j * k + kk];
          else {
            const brow = bo + kk * n;
            for (let j = 0; j < n; j++) out[row + j] += av * b[brow + j];
          }
        }
    }
    return out;
  }

  binary(op: BinaryOp, a: Storage, as: number[], b: Storage, bs: number[], outShape: number[]): Storage {
    const out = this.alloc(outShape.reduce((x, y) => x * y, 1));
    const sa = broadcastStrides(as, outShape),
      sb = broadcastStrides(bs, outShape);
    switch (op) {
      case 'add':
        forEachBroadcast(outShape, sa, sb, (o, i, j) => {
          out[o] = a[i] + b[j];
        });
        break;
      case 'sub':
        forEachBroadcast(outShape, sa, sb, (o, i, j) => {
          out[o] = a[i] - b[j];
        });
        break;
      case 'mul':
        forEachBroadcast(outShape, sa, sb, (o, i, j) => {
          out[o] = a[i] * b[j];
        });
        break;
      case 'div':
        forEachBroadcast(outShape, sa, sb, (o, i, j) => {
          out[o] = a[i] / b[j];
        });
        break;
    }
    return out;
  }

  reduceSum(x: Storage, xs: number[], outShape: number[]): Storage {
    const out = new Float64Array(outShape.reduce((p, q) => p * q, 1));
    const so = broadcastStrides(outShape, xs);
    const sx = broadcastStrides(xs, xs);
    forEachBroadcast(xs, sx, so, (_o, ix, io) => {
      out[io] += x[ix];
    });
    return this.from(out);
  }

  unary(op: UnaryOp, x: Storage): Storage {
    const y = this.alloc(x.length);
    const f: (v: number) => number = {
      exp: Math.exp,
      log: Math.log,
      sqrt: Math.sqrt,
      tanh: Math.tanh,
      square: (v: number) => v * v,
      silu: (v: number) => v * norm.sigmoid(v),
      neg: (v: number) => -v,
      ncdf: approxStandardNormalCdf,
    }[op];
    for (let i = 0; i < x.length; i++) y[i] = f(x[i]);
    return y;
  }

  clamp(x: Storage, lo: number, hi: number): Storage {
    const y = this.alloc(x.length);
    for (let i = 0; i < x.length; i++) y[i] = Math.min(hi, Math.max(lo, x[i]));
    return y;
  }

  clampBackward(x: Storage, lo: number, hi: number, dy: Storage): Storage {
    const dx = this.alloc(x.length);
    for (let i = 0; i < x.length; i++) dx[i] = x[i] >= lo && x[i] <= hi ? dy[i] : 0;
    return dx;
  }

  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage): Storage {
    const dx = this.alloc(x.length);
    for (let i = 0; i < x.length; i++) {
      let d: number;
      switch (op) {
        case 'exp':
          d = y[i];
          break;
        case 'log':
          d = 1 / x[i];
          break;
        case 'sqrt':
          d = 0.5 / y[i];
          break;
        case 'square':
          d = 2 * x[i];
          break;
        case 'tanh':
          d = 1 - y[i] * y[i];
          break;
        case 'silu': {
          const s = norm.sigmoid(x[i]);
          d = s * (1 + x[i] * (1 - s));
          break;
        }
        case 'neg':
          d = -1;
          break;
        case 'ncdf': {
          // d/dx 0.5 (1 + tanh(u)), u = c (x + 0.044715 x^3)
          const v = x[i],
            th = Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v));
          d = 0.5 * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
          break;
        }
      }
      dx[i] = d * dy[i];
    }
    return dx;
  }

  affine(x: Storage, alpha: number, beta: number): Storage {
    const y = this.alloc(x.length);
    for (let i = 0; i < x.length; i++) y[i] = alpha * x[i] + beta;
    return y;
  }

  groupNorm(x: Storage, xs: number[], gamma: Storage, beta: Storage, groups: number, eps: number, silu: boolean) {
    return norm.groupNorm(this.alloc, x, xs, gamma, beta, groups, eps, silu);
  }

  groupNormBackward(
    x: Storage,
    xs: number[],
    gamma: Storage,
    beta: Storage,
    mean: Storage,
    rstd: Storage,
    groups: number,
    silu: boolean,
    dy: Storage,
  ) {
    return norm.groupNormBackward(this.alloc, x, xs, gamma, beta, mean, rstd, groups, silu, dy);
  }

  softmax(x: Storage, rows: number, cols: number): Storage {
    return norm.softmax(this.alloc, x, rows, cols);
  }

  softmaxBackward(y: Storage, dy: Storage, rows: number, cols: number): Storage {
    return norm.softmaxBackward(this.alloc, y, dy, rows, cols);
  }

  permute(x: Storage, xs: number[], perm: number[]): Storage {
    const outShape = perm.map((p) => xs[p]);
    const inStrides = broadcastStrides(xs, xs);
    const sx = perm.map((p) => inStrides[p]);
    const y = this.alloc(x.length);
    forEachBroadcast(outShape, sx, sx, (o, i) => {
      y[o] = x[i];
    });
    return y;
  }

  concat(xs: Storage[], shapes: number[][]): Storage {
    const N = shapes[0][0];
    const S = shapes[0].slice(2).reduce((p, q) => p * q, 1);
    const Ctot = shapes.reduce((a, s) => a + s[1], 0);
    const y = this.alloc(N * Ctot * S);
    for (let n = 0; n < N; n++) {
      let c0 = 0;
      for (let i = 0; i < xs.length; i++) {
        const c = shapes[i][1];
        y.set(xs[i].subarray(n * c * S, (n + 1) * c * S), (n * Ctot + c0) * S);
        c0 += c;
      }
    }
    return y;
  }

  sliceChannels(x: Storage, xs: number[], c0: number, c: number): Storage {
    const [N, C] = xs;
    const S = xs.slice(2).reduce((p, q) => p * q, 1);
    const y = this.alloc(N * c * S);
    for (let n = 0; n < N; n++) y.set(x.subarray((n * C + c0) * S, (n * C + c0 + c) * S), n * c * S);
    return y;
  }

  upsample2x(x: Storage, xs: number[]): Storage {
    return conv.upsample2x(this.alloc, x, xs);
  }

  pool2d(
    kind: 'max' | 'avg',
    x: Storage,
    xs: number[],
    k: number,
    stride: number,
    pad: number,
    countPad: boolean,
  ): Storage {
    return conv.pool2d(this.alloc, kind, x, xs, k, stride, pad, countPad);
  }

  upsample2xBackward(dy: Storage, xs: number[]): Storage {
    return conv.upsample2xBackward(this.alloc, dy, xs);
  }

  private from(a: Float64Array): Storage {
    const out = this.alloc(a.length);
    out.set(a);
    return out;
  }

  adamStep(p: Storage, g: Storage, m: Storage, v: Storage, h: AdamHyper): void {
    const bc1 = 1 - h.beta1 ** h.step,
      bc2 = 1 - h.beta2 ** h.step;
    for (let i = 0; i < p.length; i++) {
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
      const update = m[i] / bc1 / (Math.sqrt(v[i] / bc2) + h.eps);
      p[i] = p[i] * (1 - h.lr * h.weightDecay) - h.lr * update;
    }
  }

  emaUpdate(ema: Storage, p: Storage, decay: number): void {
    for (let i = 0; i < p.length; i++) ema[i] = decay * ema[i] + (1 - decay) * p[i];
  }

  sumSquares(x: Storage): Storage {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] * x[i];
    return this.Arr.of(s) as Storage;
  }

  scaleInPlace(x: Storage, s: Storage): void {
    const f = s[0];
    for (let i = 0; i < x.length; i++) x[i] *= f;
  }

  addInPlace(x: Storage, y: Storage): void {
    for (let i = 0; i < x.length; i++) x[i] += y[i];
  }
}
