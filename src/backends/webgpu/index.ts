/// <reference types="@webgpu/types" />
// The WebGPU backend: every kernel of the engine in WGSL (kernels.ts), forward and backward, on one GPUDevice. It runs
// wherever WebGPU does: a browser tab (navigator.gpu) or Node through the `webgpu` package (src/backends/select.ts).
// The device plumbing (buffers and their pool, command recording, dispatch) is in runtime.ts; here are the ops, each
// one or a few dispatches.
//
// Random numbers are drawn on the host by the engine (src/engine/random.ts) and uploaded, so every backend sees the
// same Philox words and sample i gets the same noise everywhere.
import {
  type AdamHyper,
  type Backend,
  type BinaryOp,
  type ConvParams,
  type UnaryOp,
  convOutSize,
} from '../../engine/backend.js';
import * as K from './kernels.js';
import { type GpuStorage, GpuRuntime } from './runtime.js';

export type { GpuStorage };

const f32bits = (() => {
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  return (v: number) => {
    f[0] = v;
    return u[0];
  };
})();

function rowMajorStrides(shape: number[]): number[] {
  const st = new Array<number>(shape.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/**
 * Merges adjacent dimensions that every stride list walks contiguously (and drops size-1 ones), so index decoding in
 * the kernels loops over as few dimensions as possible: a same-shape elementwise op becomes rank 1, a bias add rank
 * 2-3.
 */
function collapse(shape: number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const sh: number[] = [],
    st: number[][] = strides.map(() => []);
  shape.forEach((d, i) => {
    if (d === 1) return;
    const k = sh.length - 1;
    if (k >= 0 && strides.every((s, j) => st[j][k] === s[i] * d)) {
      sh[k] *= d;
      strides.forEach((s, j) => (st[j][k] = s[i]));
    } else {
      sh.push(d);
      strides.forEach((s, j) => st[j].push(s[i]));
    }
  });
  if (!sh.length) return { shape: [1], strides: strides.map(() => [0]) };
  if (sh.length > K.MAX_RANK) throw new Error(`webgpu: rank ${sh.length} above ${K.MAX_RANK}`);
  return { shape: sh, strides: st };
}

/** A list padded to MAX_RANK entries (the kernels read the first `rank`). */
const fill6 = (v: number[], fill: number) => [...v, ...new Array<number>(K.MAX_RANK - v.length).fill(fill)];

/** Every op of the engine as one or a few WGSL dispatches, recorded by GpuRuntime (runtime.ts). */
export class WebGPUBackend extends GpuRuntime implements Backend<GpuStorage> {
  readonly name = 'webgpu';

  private convParams(xs: number[], ws: number[], p: ConvParams, hasBias: boolean): number[] {
    const [, C, H, W] = xs;
    const [O, , KH, KW] = ws;
    const Ho = convOutSize(H, KH, p.padTop, p.padBottom, p.stride),
      Wo = convOutSize(W, KW, p.padLeft, p.padRight, p.stride);
    return [C, H, W, O, KH, KW, Ho, Wo, p.stride, p.padTop, p.padLeft, hasBias ? 1 : 0];
  }

  conv2d(x: GpuStorage, xs: number[], w: GpuStorage, ws: number[], b: GpuStorage | null, p: ConvParams): GpuStorage {
    if (p.bf16)
      throw new Error(
        'backend webgpu: precision bf16 is not implemented here ' +
          '(it is a CPU path: native backend on AVX512-BF16 / AMX); use f32',
      );
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws;
    const { padTop: pt, padBottom: pb, padLeft: pl, padRight: pr } = p;
    const Hp = H + pt + pb,
      Wp = W + pl + pr;
    let xp = x;
    if (pt || pb || pl || pr) {
      xp = this.alloc(N * C * Hp * Wp);
      this.each('padPlanes', () => K.padPlanes, xp.n, [H, W, Hp, Wp, pt, pl], [x], [xp]);
    }
    const cp = this.convParams(
      [N, C, Hp, Wp],
      ws,
      { stride: p.stride, padTop: 0, padBottom: 0, padLeft: 0, padRight: 0 },
      !!b,
    );
    const y = this.alloc(N * O * cp[6] * cp[7]);
    this.gemm('conv2d', () => K.conv2d, O, cp[6] * cp[7], C * KH * KW, cp, [xp, w, b ?? w], y, N);
    if (xp !== x) this.release(xp); // the padded copy: reused only by work recorded after this dispatch
    return y;
  }

  conv2dBackward(
    x: GpuStorage,
    xs: number[],
    dy: GpuStorage,
    w: GpuStorage,
    ws: number[],
    p: ConvParams,
    needDx: boolean,
    withBias: boolean,
  ) {
    const cp = this.convParams(xs, ws, p, false);
    const [N, C, H, W] = xs,
      [O, , KH, KW] = ws,
      Ho = cp[6],
      Wo = cp[7];
    let dx: GpuStorage | null = null;
    if (needDx) {
      dx = this.alloc(N * C * H * W);
      this.gemm('conv2dBackwardData', () => K.conv2dBackwardData, C, H * W, O * KH * KW, cp, [dy, w], dx, N);
    }
    const dw = this.alloc(O * C * KH * KW);
    this.gemm('conv2dBackwardWeights', () => K.conv2dBackwardWeights, O, C * KH * KW, N * Ho * Wo, cp, [dy, x], dw, 1);
    const db = withBias ? this.reduceSum(dy, [N, O, Ho * Wo], [1, O, 1]) : null;
    return { dx, dw, db };
  }

  matmul(
    a: GpuStorage,
    b: GpuStorage,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
  ): GpuStorage {
    const c = this.alloc(batch * m * n);
    if (k === 0) {
      this.encoder().clearBuffer(c.buf);
      return c;
    }
    // strides of A along m and k, of B along k and n
    const sa = transA ? [1, m] : [k, 1],
      sb = transB ? [1, k] : [n, 1];
    this.gemm('matmul', () => K.matmul, m, n, k, [...sa, ...sb], [a, b], c, batch);
    return c;
  }

  binary(op: BinaryOp, a: GpuStorage, as: number[], b: GpuStorage, bs: number[], outShape: number[]): GpuStorage {
    const n = outShape.reduce((p, q) => p * q, 1);
    const y = this.alloc(n);
    const strides = (s: number[]) => rowMajorStrides(s).map((st, i) => (s[i] === 1 && outShape[i] !== 1 ? 0 : st));
    const c = collapse(outShape, [strides(as), strides(bs)]);
    if (c.shape.length === 1 && c.strides[0][0] === 1 && c.strides[1][0] === 1)
      this.each(`same_${op}`, () => K.binarySame(op), n, [], [a, b], [y]);
    else
      this.each(
        `binary_${op}`,
        () => K.binary(op),
        n,
        [c.shape.length, ...fill6(c.shape, 1), ...fill6(c.strides[0], 0), ...fill6(c.strides[1], 0)],
        [a, b],
        [y],
      );
    return y;
  }

  reduceSum(x: GpuStorage, xs: number[], outShape: number[]): GpuStorage {
    const nOut = outShape.reduce((p, q) => p * q, 1);
    const y = this.alloc(nOut);
    const red = xs.map((d, i) => (outShape[i] === 1 ? d : 1));
    const nRed = red.reduce((p, q) => p * q, 1);
    // kept dimensions (decoded from the output index) and reduced ones (from the reduction index), each collapsed
    const xst = rowMajorStrides(xs);
    const kept = collapse(outShape, [xst]),
      reduced = collapse(red, [xst]);
    const rank = Math.max(kept.shape.length, reduced.shape.length);
    const padTo = (v: number[], f: number) => [...new Array<number>(rank - v.length).fill(f), ...v];
    this.rows(
      'reduceSum',
      () => K.reduceSum,
      nOut,
      [
        rank,
        nRed,
        0,
        ...fill6(padTo(kept.shape, 1), 1),
        ...fill6(padTo(reduced.shape, 1), 1),
        ...fill6(padTo(kept.strides[0], 0), 0),
        ...fill6(padTo(reduced.strides[0], 0), 0),
      ],
      [x],
      [y],
    );
    return y;
  }

  unary(op: UnaryOp, x: GpuStorage): GpuStorage {
    const y = this.alloc(x.n);
    this.each(`unary_${op}`, () => K.unary(op), x.n, [], [x], [y]);
    return y;
  }
  unaryBackward(op: UnaryOp, x: GpuStorage, y: GpuStorage, dy: GpuStorage): GpuStorage {
    const dx = this.alloc(x.n);
    this.each(`unaryBackward_${op}`, () => K.unaryBackward(op), x.n, [], [x, y, dy], [dx]);
    return dx;
  }
  clamp(x: GpuStorage, lo: number, hi: number): GpuStorage {
    const y = this.alloc(x.n);
    this.each('clamp', () => K.clamp, x.n, [f32bits(lo), f32bits(hi)], [x], [y]);
    return y;
  }
  clampBackward(x: GpuStorage, lo: number, hi: number, dy: GpuStorage): GpuStorage {
    const dx = this.alloc(x.n);
    this.each('clampBackward', () => K.clampBackward, x.n, [f32bits(lo), f32bits(hi)], [x, dy], [dx]);
    return dx;
  }
  affine(x: GpuStorage, alpha: number, beta: number): GpuStorage {
    const y = this.alloc(x.n);
    this.each('affine', () => K.affine, x.n, [f32bits(alpha), f32bits(beta)], [x], [y]);
    return y;
  }

  groupNorm(
    x: GpuStorage,
    xs: number[],
    gamma: GpuStorage,
    beta: GpuStorage,
    groups: number,
    eps: number,
    silu: boolean,
  ) {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const y = this.alloc(x.n),
      mean = this.alloc(N * groups),
      rstd = this.alloc(N * groups);
    this.rows(
      'groupNorm',
      () => K.groupNorm,
      N * groups,
      [C, S, groups, f32bits(eps), silu ? 1 : 0],
      [x, gamma, beta],
      [y, mean, rstd],
    );
    return { y, mean, rstd };
  }

  groupNormBackward(
    x: GpuStorage,
    xs: number[],
    gamma: GpuStorage,
    beta: GpuStorage,
    mean: GpuStorage,
    rstd: GpuStorage,
    groups: number,
    silu: boolean,
    dy: GpuStorage,
  ) {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const dx = this.alloc(x.n),
      dgamma = this.alloc(C),
      dbeta = this.alloc(C);
    const ins = [x, gamma, beta, mean, rstd, dy];
    this.rows('groupNormBackwardData', () => K.groupNormBackwardData, N * groups, [C, S, groups, silu ? 1 : 0], ins, [
      dx,
    ]);
    this.rows('groupNormBackwardAffine', () => K.groupNormBackwardAffine, C, [N, S, groups, silu ? 1 : 0], ins, [
      dgamma,
      dbeta,
    ]);
    return { dx, dgamma, dbeta };
  }

  softmax(x: GpuStorage, rows: number, cols: number): GpuStorage {
    const y = this.alloc(x.n);
    this.rows('softmax', () => K.softmax, rows, [cols], [x], [y]);
    return y;
  }
  softmaxBackward(y: GpuStorage, dy: GpuStorage, rows: number, cols: number): GpuStorage {
    const dx = this.alloc(y.n);
    this.rows('softmaxBackward', () => K.softmaxBackward, rows, [cols], [y, dy], [dx]);
    return dx;
  }

  permute(x: GpuStorage, xs: number[], perm: number[]): GpuStorage {
    const outShape = perm.map((p) => xs[p]);
    const st = rowMajorStrides(xs);
    const y = this.alloc(x.n);
    const c = collapse(outShape, [rowMajorStrides(outShape), perm.map((p) => st[p])]);
    this.each(
      'permute',
      () => K.permute,
      x.n,
      [c.shape.length, ...fill6(c.shape, 1), ...fill6(c.strides[1], 0)],
      [x],
      [y],
    );
    return y;
  }

  /** y[r*dstRow + dstOff + j] = x[r*srcRow + srcOff + j] for r < rows, j < len */
  private blockCopy(
    x: GpuStorage,
    y: GpuStorage,
    rows: number,
    len: number,
    srcRow: number,
    srcOff: number,
    dstRow: number,
    dstOff: number,
  ): void {
    this.each('blockCopy', () => K.blockCopy, rows * len, [len, srcRow, srcOff, dstRow, dstOff], [x], [y]);
  }

  concat(xs: GpuStorage[], shapes: number[][]): GpuStorage {
    const N = shapes[0][0],
      S = shapes[0].slice(2).reduce((p, q) => p * q, 1);
    const Ctot = shapes.reduce((a, s) => a + s[1], 0);
    const y = this.alloc(N * Ctot * S);
    let c0 = 0;
    xs.forEach((x, i) => {
      const c = shapes[i][1];
      this.blockCopy(x, y, N, c * S, c * S, 0, Ctot * S, c0 * S);
      c0 += c;
    });
    return y;
  }

  sliceChannels(x: GpuStorage, xs: number[], c0: number, c: number): GpuStorage {
    const [N, C] = xs,
      S = xs.slice(2).reduce((p, q) => p * q, 1);
    const y = this.alloc(N * c * S);
    this.blockCopy(x, y, N, c * S, C * S, c0 * S, c * S, 0);
    return y;
  }

  upsample2x(x: GpuStorage, xs: number[]): GpuStorage {
    const [, , H, W] = xs;
    const y = this.alloc(x.n * 4);
    this.each('upsample2x', () => K.upsample2x, y.n, [H, W], [x], [y]);
    return y;
  }
  upsample2xBackward(dy: GpuStorage, xs: number[]): GpuStorage {
    const [N, C, H, W] = xs;
    const dx = this.alloc(N * C * H * W);
    this.each('upsample2xBackward', () => K.upsample2xBackward, dx.n, [H, W], [dy], [dx]);
    return dx;
  }

  pool2d(
    kind: 'max' | 'avg',
    x: GpuStorage,
    xs: number[],
    k: number,
    stride: number,
    pad: number,
    countPad: boolean,
  ): GpuStorage {
    const [N, C, H, W] = xs;
    const Ho = convOutSize(H, k, pad, pad, stride),
      Wo = convOutSize(W, k, pad, pad, stride);
    const y = this.alloc(N * C * Ho * Wo);
    this.each(
      'pool2d',
      () => K.pool2d,
      y.n,
      [H, W, Ho, Wo, k, stride, pad, kind === 'max' ? 1 : 0, countPad ? 1 : 0],
      [x],
      [y],
    );
    return y;
  }

  adamStep(p: GpuStorage, g: GpuStorage, m: GpuStorage, v: GpuStorage, h: AdamHyper): void {
    const bc1 = 1 - h.beta1 ** h.step,
      bc2 = 1 - h.beta2 ** h.step;
    this.each(
      'adamStep',
      () => K.adamStep,
      p.n,
      [h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, bc1, bc2].map(f32bits),
      [g],
      [p, m, v],
    );
  }
  emaUpdate(ema: GpuStorage, p: GpuStorage, decay: number): void {
    this.each('emaUpdate', () => K.emaUpdate, p.n, [f32bits(decay)], [p], [ema]);
  }
  sumSquares(x: GpuStorage): GpuStorage {
    const y = this.alloc(1);
    this.rows(
      'reduceSum',
      () => K.reduceSum,
      1,
      [1, x.n, 1, ...fill6([1], 1), ...fill6([x.n], 1), ...fill6([0], 0), ...fill6([1], 0)],
      [x],
      [y],
    );
    return y;
  }
  scaleInPlace(x: GpuStorage, s: GpuStorage): void {
    this.each('scaleInPlace', () => K.scaleInPlace, x.n, [], [s], [x]);
  }
  addInPlace(x: GpuStorage, y: GpuStorage): void {
    this.each('addInPlace', () => K.addInPlace, x.n, [], [y], [x]);
  }
}

/**
 * Requests an adapter and a device from a WebGPU implementation (navigator.gpu, or the `webgpu` package's
 * create()).
 */
export async function createWebGPUBackend(gpu: GPU): Promise<WebGPUBackend> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('webgpu: no adapter (WebGPU is present but no GPU, or a software one, is available)');
  const lim = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBuffersPerShaderStage: Math.min(10, lim.maxStorageBuffersPerShaderStage),
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
    },
  });
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const desc = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') : '';
  // a fallback adapter is a software one (SwiftShader): correct, but slower than the wasm backend on the same CPU
  const fallback =
    info?.isFallbackAdapter ?? (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  return new WebGPUBackend(device, desc, gpu, fallback);
}
