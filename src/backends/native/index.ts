// The native backend: the N-API addon built from native/ddpm_native.cc on oneDNN. Node-only.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { type AdamHyper, type Backend, type BinaryOp, type ConvParams, type UnaryOp, convOutSize } from '../../engine/backend.js';

/** This backend's buffers: Float32Arrays that the addon reads and writes in place. */
type Storage = Float32Array;


/* eslint-disable @typescript-eslint/no-explicit-any */
type Addon = Record<string, (...args: any[]) => any>;

const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY: Record<UnaryOp, number> = { exp: 0, log: 1, sqrt: 2, square: 3, tanh: 4, silu: 5, neg: 6, ncdf: 7 };

const prodOf = (s: number[]) => s.reduce((a, b) => a * b, 1);
const convArr = (p: ConvParams) => [p.stride, p.padTop, p.padBottom, p.padLeft, p.padRight];

let cached: { addon: Addon | null; error: string } | null = null;

/**
 * Loads the addon once; returns null (with the reason) when it was not built. On x86-64 the addon is built twice:
 * for the baseline (runs anywhere) and for x86-64-v3 (AVX2, FMA), and the second is used when the CPU has those
 * (our own loops run about twice as fast there; oneDNN picks its kernels at run time either way). DDPM_NATIVE_BUILD
 * =baseline forces the first.
 */
export function loadAddon(): { addon: Addon | null; error: string } {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/backends/native -> repository root
  const root = join(here, '..', '..', '..', '..');
  const require = createRequire(import.meta.url);
  const at = (name: string) => [join(root, 'build', 'Release', name), join(root, 'build', 'Debug', name)];
  let error = '';
  for (const c of at('ddpm_native.node')) {
    let base: Addon;
    try {
      base = require(c) as Addon;
    } catch (e) {
      // report the first failure (the release build), not the fallback's
      error ||= (e as Error).message.split('\n')[0];
      continue;
    }
    const v3 = c.replace('ddpm_native.node', 'ddpm_native_v3.node');
    if (process.env.DDPM_NATIVE_BUILD !== 'baseline' && base.cpuHasV3?.() && existsSync(v3)) {
      try {
        cached = { addon: require(v3) as Addon, error: '' };
        return cached;
      } catch {
        // fall back to the baseline build
      }
    }
    cached = { addon: base, error: '' };
    return cached;
  }
  cached = { addon: null, error };
  return cached;
}

export class NativeBackend implements Backend<Storage> {
  readonly name = 'native';
  readonly info: { onednn: string; threads: number };
  private readonly a: Addon;

  /** threads: the OpenMP team for our loops and oneDNN (default: what the caller computed, see select.ts). */
  constructor(addon: Addon, threads?: number) {
    this.a = addon;
    if (threads !== undefined) addon.setThreads(threads);
    this.info = addon.info();
  }

  upload(values: Float32Array): Storage {
    return Float32Array.from(values);
  }
  zeros(n: number): Storage {
    return new Float32Array(n);
  }
  size(x: Storage): number {
    return x.length;
  }
  async read(x: Storage): Promise<Float32Array> {
    return x.slice();
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

  conv2d(x: Storage, xs: number[], w: Storage, ws: number[], b: Storage | null, p: ConvParams): Storage {
    const ho = convOutSize(xs[2], ws[2], p.padTop, p.padBottom, p.stride), wo = convOutSize(xs[3], ws[3], p.padLeft, p.padRight, p.stride);
    const y = new Float32Array(xs[0] * ws[0] * ho * wo);
    this.a.conv2dForward(x, xs, w, ws, b, convArr(p), y);
    return y;
  }
  conv2dBackward(x: Storage, xs: number[], dy: Storage, w: Storage, ws: number[], p: ConvParams, needDx: boolean, withBias: boolean) {
    const dx = needDx ? new Float32Array(prodOf(xs)) : null;
    const dw = new Float32Array(prodOf(ws));
    const db = withBias ? new Float32Array(ws[0]) : null;
    this.a.conv2dBackward(x, xs, dy, w, ws, convArr(p), dx, dw, db);
    return { dx, dw, db };
  }
  matmul(a: Storage, b: Storage, batch: number, m: number, k: number, n: number, transA: boolean, transB: boolean): Storage {
    const out = new Float32Array(batch * m * n);
    this.a.matmul(a, b, batch, m, k, n, transA, transB, out);
    return out;
  }
  binary(op: BinaryOp, a: Storage, as: number[], b: Storage, bs: number[], outShape: number[]): Storage {
    const y = new Float32Array(prodOf(outShape));
    this.a.binary(BINARY[op], a, as, b, bs, outShape, y);
    return y;
  }
  reduceSum(x: Storage, xs: number[], outShape: number[]): Storage {
    const y = new Float32Array(prodOf(outShape));
    this.a.reduceSum(x, xs, outShape, y);
    return y;
  }
  unary(op: UnaryOp, x: Storage): Storage {
    const y = new Float32Array(x.length);
    this.a.unary(UNARY[op], x, y);
    return y;
  }
  clamp(x: Storage, lo: number, hi: number): Storage {
    const y = new Float32Array(x.length);
    this.a.clamp(x, lo, hi, y);
    return y;
  }
  clampBackward(x: Storage, lo: number, hi: number, dy: Storage): Storage {
    const dx = new Float32Array(x.length);
    this.a.clampBackward(x, lo, hi, dy, dx);
    return dx;
  }
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage): Storage {
    const dx = new Float32Array(x.length);
    this.a.unaryBackward(UNARY[op], x, y, dy, dx);
    return dx;
  }
  affine(x: Storage, alpha: number, beta: number): Storage {
    const y = new Float32Array(x.length);
    this.a.affine(x, alpha, beta, y);
    return y;
  }
  groupNorm(x: Storage, xs: number[], gamma: Storage, beta: Storage, groups: number, eps: number, silu: boolean) {
    const y = new Float32Array(x.length), mean = new Float32Array(xs[0] * groups), rstd = new Float32Array(xs[0] * groups);
    this.a.groupNorm(x, xs, gamma, beta, groups, eps, silu, y, mean, rstd);
    return { y, mean, rstd };
  }
  groupNormBackward(x: Storage, xs: number[], gamma: Storage, beta: Storage, mean: Storage, rstd: Storage, groups: number, silu: boolean, dy: Storage) {
    const dx = new Float32Array(x.length), dgamma = new Float32Array(xs[1]), dbeta = new Float32Array(xs[1]);
    this.a.groupNormBackward(x, xs, gamma, beta, mean, rstd, groups, silu, dy, dx, dgamma, dbeta);
    return { dx, dgamma, dbeta };
  }
  softmax(x: Storage, rows: number, cols: number): Storage {
    const y = new Float32Array(x.length);
    this.a.softmax(x, rows, cols, y);
    return y;
  }
  softmaxBackward(y: Storage, dy: Storage, rows: number, cols: number): Storage {
    const dx = new Float32Array(y.length);
    this.a.softmaxBackward(y, dy, rows, cols, dx);
    return dx;
  }
  permute(x: Storage, xs: number[], perm: number[]): Storage {
    const y = new Float32Array(x.length);
    this.a.permute(x, xs, perm, y);
    return y;
  }
  concat(xs: Storage[], shapes: number[][]): Storage {
    const C = shapes.reduce((s, sh) => s + sh[1], 0);
    const y = new Float32Array(shapes[0][0] * C * prodOf(shapes[0].slice(2)));
    this.a.concat(xs, shapes, y);
    return y;
  }
  sliceChannels(x: Storage, xs: number[], c0: number, c: number): Storage {
    const y = new Float32Array(xs[0] * c * prodOf(xs.slice(2)));
    this.a.sliceChannels(x, xs, c0, c, y);
    return y;
  }
  upsample2x(x: Storage, xs: number[]): Storage {
    const y = new Float32Array(x.length * 4);
    this.a.upsample2x(x, xs, y);
    return y;
  }
  pool2d(kind: 'max' | 'avg', x: Storage, xs: number[], k: number, stride: number, pad: number, countPad: boolean): Storage {
    const Ho = convOutSize(xs[2], k, pad, pad, stride), Wo = convOutSize(xs[3], k, pad, pad, stride);
    const y = new Float32Array(xs[0] * xs[1] * Ho * Wo);
    this.a.pool2d(kind === 'max' ? 0 : countPad ? 1 : 2, x, xs, k, stride, pad, y);
    return y;
  }
  upsample2xBackward(dy: Storage, xs: number[]): Storage {
    const dx = new Float32Array(prodOf(xs));
    this.a.upsample2xBackward(dy, xs, dx);
    return dx;
  }
  adamStep(p: Storage, g: Storage, m: Storage, v: Storage, h: AdamHyper): void {
    this.a.adamStep(p, g, m, v, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.step);
  }
  emaUpdate(ema: Storage, p: Storage, decay: number): void {
    this.a.emaUpdate(ema, p, decay);
  }
  sumSquares(x: Storage): Storage {
    return Float32Array.of(this.a.sumSquares(x));
  }
  scaleInPlace(x: Storage, s: Storage): void {
    this.a.scaleInPlace(x, s[0]);
  }
  addInPlace(x: Storage, y: Storage): void {
    this.a.addInPlace(x, y);
  }
}
