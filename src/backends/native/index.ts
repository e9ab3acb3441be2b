// The native backend: the N-API addon built from native/ddpm_native.cc on oneDNN. Node-only.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import {
  type AdamHyper,
  type Backend,
  type BinaryOp,
  type ConvParams,
  type UnaryOp,
  convOutSize,
} from '../../engine/backend.js';

/** This backend's buffers: Float32Arrays that the addon reads and writes in place. */
type Storage = Float32Array;

// biome-ignore lint/suspicious/noExplicitAny: the addon's functions are checked by the addon itself (native/binding)
type Addon = Record<string, (...args: any[]) => any>;

const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY: Record<UnaryOp, number> = { exp: 0, log: 1, sqrt: 2, square: 3, tanh: 4, silu: 5, neg: 6, ncdf: 7 };

const prodOf = (s: number[]) => s.reduce((a, b) => a * b, 1);
/**
 * An output buffer left uninitialised (malloc without the zero fill of new Float32Array, which costs 0.5 ms per 6 MB
 * on one thread here), for kernels that write every value of their outputs.
 */
const out = (n: number): Storage => new Float32Array(Buffer.allocUnsafeSlow(n * 4).buffer, 0, n);
const convArr = (p: ConvParams) => [p.stride, p.padTop, p.padBottom, p.padLeft, p.padRight];

let cached: { addon: Addon | null; error: string } | null = null;

/**
 * Loads the addon once; returns null (with the reason) when it was not built. On x86-64 the addon is built three
 * times: for the baseline (runs anywhere), for x86-64-v3 (AVX2, FMA) and for x86-64-v4 (AVX-512), and the highest
 * level the CPU runs is used (our own loops run about twice as fast at v3 as at the baseline, and v4 doubles their
 * vector width again; oneDNN picks its kernels at run time in all three). DDPM_NATIVE_BUILD=baseline, v3 or v4 asks
 * for one (a level the CPU lacks falls back to the next lower one).
 */
export function loadAddon(): { addon: Addon | null; error: string } {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/src/backends/native -> repository root
  const root = join(here, '..', '..', '..', '..');
  const require = createRequire(import.meta.url);
  const at = (name: string) => [join(root, 'build', 'Release', name), join(root, 'build', 'Debug', name)];
  const want = process.env.DDPM_NATIVE_BUILD || 'v4';
  if (!['baseline', 'v3', 'v4'].includes(want))
    throw new Error(`DDPM_NATIVE_BUILD must be baseline, v3 or v4, got "${want}"`);
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
    const levels = [
      { name: 'v4', ok: want === 'v4' && !!base.cpuHasV4?.() },
      { name: 'v3', ok: want !== 'baseline' && !!base.cpuHasV3?.() },
    ];
    for (const l of levels) {
      const file = c.replace('ddpm_native.node', `ddpm_native_${l.name}.node`);
      if (!l.ok || !existsSync(file)) continue;
      try {
        cached = { addon: require(file) as Addon, error: '' };
        return cached;
      } catch {
        // fall back to the next lower build
      }
    }
    cached = { addon: base, error: '' };
    return cached;
  }
  cached = { addon: null, error };
  return cached;
}

/** Activation layouts of the addon (native/ddpm_native.cc): channel-blocked nChw16c (f32 convolutions) and NHWC (bf16). */
const BLOCKED16 = 1;
/** A buffer's layout and the [N, C, H, W] it holds. */
interface Tag {
  layout: number;
  dims: number[];
}
/** The row-major shape whose order is the buffer's: [N, C/16, H*W, 16] or [N, H*W, C]. */
const physical = (t: Tag) =>
  t.layout === BLOCKED16
    ? [t.dims[0], t.dims[1] / 16, t.dims[2] * t.dims[3], 16]
    : [t.dims[0], t.dims[2] * t.dims[3], t.dims[1]];
/** The same for a [1|N, C|1, 1, 1] operand broadcast against it. */
const physicalPerChannel = (t: Tag, s: number[]) =>
  t.layout === BLOCKED16 ? [s[0], s[1] === 1 ? 1 : s[1] / 16, 1, s[1] === 1 ? 1 : 16] : [s[0], 1, s[1]];
const sameDims = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * How the float32 3x3 convolutions are computed: `winograd` (default) uses oneDNN's Winograd F(4x4, 3x3) kernels
 * where they were measured faster on the project's U-Nets (3x3, stride 1, >= 16 input channels, maps of at least 7x7;
 * 1.3-2.2x faster per convolution, rounding error about 10x the direct one's: a relative 3e-6 against 3e-7);
 * `direct` uses oneDNN's direct kernels everywhere (what PyTorch runs on CPUs). bf16 convolutions are always direct.
 */
export type ConvAlgorithm = 'winograd' | 'direct';
export const CONV_ALGORITHMS: ConvAlgorithm[] = ['winograd', 'direct'];

export class NativeBackend implements Backend<Storage> {
  readonly name = 'native';
  /**
   * What runs here. convAlgorithm: the algorithm the 3x3 convolutions really run (oneDNN 2.6 has Winograd kernels only
   * for AVX-512 CPUs, so an AVX2 CPU runs direct ones whatever was asked); conv3x3: oneDNN's name of that kernel;
   * blockedLayout: whether float32 convolutions compute in the channel-blocked nChw16c layout that activations are kept
   * in between kernels (AVX-512; an AVX2 CPU computes in nChw8c, and activations stay plain NCHW there).
   */
  readonly info: {
    onednn: string;
    threads: number;
    bf16: boolean;
    convAlgorithm: ConvAlgorithm;
    conv3x3: string;
    winograd: boolean;
    blockedLayout: boolean;
  };
  private readonly a: Addon;
  /**
   * Layout tags. A buffer in this map holds [N, C, H, W] in the layout its convolution computed in (nChw16c for f32,
   * NHWC for bf16; the size is unchanged), as the convolution (or its data gradient) left it. Kernels that know the
   * layouts keep them: convolution forward and backward, group norm and its gradient, elementwise ops, per-channel
   * broadcasts and their reductions, concatenation and channel slices, upsampling and its gradient. Every other
   * kernel, and every read, sees the plain NCHW copy made by plain() (kept with the buffer, so a second read or a
   * second plain consumer costs nothing). In-place adds and scales keep a buffer's layout (gradient accumulation);
   * Adam and EMA run on plain buffers (weights, optimiser state); write() makes a buffer plain.
   */
  private readonly blocked = new WeakMap<Storage, Tag>();
  private readonly plainCopies = new WeakMap<Storage, Storage>();
  /**
   * Identities and versions of weight buffers: the addon keeps each convolution's weights in its own layout (and in
   * bf16, converted once) under (id, version); every in-place write bumps the version, so a cached copy is never
   * stale, and ids are never reused.
   */
  private readonly ids = new WeakMap<Storage, number>();
  private readonly versions = new WeakMap<Storage, number>();
  private nextId = 1;
  private idOf(w: Storage): number {
    let id = this.ids.get(w);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(w, id);
    }
    return id;
  }
  /** Called by every kernel that writes a buffer in place. */
  private touched(x: Storage): void {
    this.versions.set(x, (this.versions.get(x) ?? 0) + 1);
    this.plainCopies.delete(x);
  }

  /** threads: the OpenMP team for our loops and oneDNN (default: what the caller computed, see select.ts). */
  constructor(addon: Addon, threads?: number, convAlgorithm: ConvAlgorithm = 'winograd') {
    this.a = addon;
    if (threads !== undefined) addon.setThreads(threads);
    // probe what oneDNN runs on this CPU: a 32-channel 3x3 convolution under Winograd, and a convolution's own layout
    addon.setConvAlgorithm('winograd');
    const probe = [2, 32, 8, 8],
      pw = [16, 32, 3, 3],
      pp = [1, 1, 1, 1, 1];
    const winograd = /wino/.test(addon.convImplementations(probe, pw, pp, false).forward);
    const x = new Float32Array(16 * 16),
      w = new Float32Array(16 * 16),
      y = new Float32Array(16 * 16);
    const blockedLayout =
      addon.conv2dForward(x, [1, 16, 4, 4], w, [16, 16, 1, 1], null, [1, 0, 0, 0, 0], y, false, 0, true) === BLOCKED16;
    this.info = { ...addon.info(), bf16: addon.cpuHasBf16(), convAlgorithm, conv3x3: '', winograd, blockedLayout };
    this.setConvAlgorithm(convAlgorithm);
  }

  /**
   * Switches the convolution algorithm (ConvAlgorithm) for the convolutions that follow. Returns a notice when the
   * CPU cannot run the one asked for (Winograd without AVX-512: oneDNN runs direct kernels instead).
   */
  setConvAlgorithm(a: ConvAlgorithm): string {
    if (!CONV_ALGORITHMS.includes(a))
      throw new Error(`native: convolution algorithm must be ${CONV_ALGORITHMS.join(' or ')}, got "${a}"`);
    this.a.setConvAlgorithm(a);
    this.info.conv3x3 = this.a.convImplementations([2, 32, 8, 8], [16, 32, 3, 3], [1, 1, 1, 1, 1], false).forward;
    this.info.convAlgorithm = a === 'winograd' && !this.info.winograd ? 'direct' : a;
    return this.info.convAlgorithm === a
      ? ''
      : `oneDNN ${this.info.onednn} has Winograd kernels only for AVX-512 CPUs; this one runs direct ones (${this.info.conv3x3})`;
  }

  /** oneDNN's names of the kernels a float32 convolution of these shapes runs (forward, data and weight gradients). */
  convImplementations(
    xShape: number[],
    wShape: number[],
    p: ConvParams,
    bias = true,
  ): { forward: string; backwardData: string; backwardWeights: string } {
    return this.a.convImplementations(xShape, wShape, convArr(p), bias);
  }

  /** x in NCHW (x itself when it is plain; a conversion made once per blocked buffer otherwise). */
  private plain(x: Storage): Storage {
    const t = this.blocked.get(x);
    if (!t) return x;
    let y = this.plainCopies.get(x);
    if (!y) {
      y = out(x.length);
      this.a.relayout(x, t.dims, t.layout, 0, y);
      this.plainCopies.set(x, y);
    }
    return y;
  }
  /** x in the layout of tag t (x itself when it is already; converted otherwise). */
  private inLayout(x: Storage, t: Tag): Storage {
    const have = this.blocked.get(x);
    if (have && have.layout === t.layout && sameDims(have.dims, t.dims)) return x;
    const y = out(x.length);
    this.a.relayout(this.plain(x), t.dims, 0, t.layout, y);
    return this.tag(y, t);
  }
  private tag(y: Storage, t: Tag | undefined): Storage {
    if (t) this.blocked.set(y, t);
    return y;
  }
  /** x's tag when x is in a layout of ours and holds the 4-D shape xs. */
  private blockedAs(x: Storage, xs: number[]): Tag | undefined {
    const t = this.blocked.get(x);
    return t && sameDims(t.dims, xs) ? t : undefined;
  }
  /** Makes an in-place target plain (Adam and EMA targets are weights and optimiser state, plain already). */
  private makePlain(x: Storage): void {
    if (!this.blocked.has(x)) return;
    x.set(this.plain(x));
    this.blocked.delete(x);
    this.touched(x);
  }
  /** Whether x is stored blocked (tests and benchmarks). */
  isBlocked(x: unknown): boolean {
    return x instanceof Float32Array && this.blocked.has(x);
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
    return this.plain(x).slice();
  }
  readSync(x: Storage): Float32Array {
    return this.plain(x);
  }
  write(x: Storage, values: Float32Array): void {
    if (values.length !== x.length) throw new Error(`write: ${values.length} values for a buffer of ${x.length}`);
    x.set(values);
    this.blocked.delete(x);
    this.touched(x);
  }
  copy(x: Storage): Storage {
    return this.tag(x.slice(), this.blocked.get(x));
  }

  conv2d(x: Storage, xs: number[], w: Storage, ws: number[], b: Storage | null, p: ConvParams): Storage {
    const ho = convOutSize(xs[2], ws[2], p.padTop, p.padBottom, p.stride),
      wo = convOutSize(xs[3], ws[3], p.padLeft, p.padRight, p.stride);
    const y = out(xs[0] * ws[0] * ho * wo);
    const t = this.blockedAs(x, xs);
    const wp = this.plain(w);
    const layout = this.a.conv2dForward(
      t ? x : this.plain(x),
      xs,
      wp,
      ws,
      b && this.plain(b),
      convArr(p),
      y,
      !!p.bf16,
      t ? t.layout : 0,
      true,
      this.idOf(wp),
      this.versions.get(wp) ?? 0,
    );
    return this.tag(y, layout ? { layout, dims: [xs[0], ws[0], ho, wo] } : undefined);
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
    const dx = needDx ? out(prodOf(xs)) : null;
    const dw = out(prodOf(ws));
    const db = withBias ? out(ws[0]) : null;
    const ho = convOutSize(xs[2], ws[2], p.padTop, p.padBottom, p.stride),
      wo = convOutSize(xs[3], ws[3], p.padLeft, p.padRight, p.stride);
    const tx = this.blockedAs(x, xs),
      tdy = this.blockedAs(dy, [xs[0], ws[0], ho, wo]);
    const layout = this.a.conv2dBackward(
      tx ? x : this.plain(x),
      xs,
      tdy ? dy : this.plain(dy),
      this.plain(w),
      ws,
      convArr(p),
      dx,
      dw,
      db,
      tx ? tx.layout : 0,
      tdy ? tdy.layout : 0,
      true,
    );
    return { dx: dx && this.tag(dx, layout ? { layout, dims: xs } : undefined), dw, db };
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
    const y = out(batch * m * n);
    this.a.matmul(this.plain(a), this.plain(b), batch, m, k, n, transA, transB, y);
    return y;
  }
  binary(op: BinaryOp, a: Storage, as: number[], b: Storage, bs: number[], outShape: number[]): Storage {
    const y = out(prodOf(outShape));
    const da = this.blockedAs(a, as),
      db = this.blockedAs(b, bs);
    // a per-channel (or per-sample) operand [1|N, C|1, 1, 1] against one in our layout: the same broadcast on the
    // layout's row-major view, where the channel axis is split (C/16, 16) or last
    const perChannel = (s: number[], t: Tag) =>
      s.length === 4 &&
      s[2] === 1 &&
      s[3] === 1 &&
      (s[0] === 1 || s[0] === t.dims[0]) &&
      (s[1] === 1 || s[1] === t.dims[1]);
    if (da && db && da.layout === db.layout && sameDims(da.dims, db.dims) && sameDims(da.dims, outShape)) {
      this.a.binary(BINARY[op], a, [a.length], b, [b.length], [y.length], y);
      return this.tag(y, da);
    }
    // one operand in a layout, the other plain (or in another), same shape: the other joins the first's layout
    if ((da || db) && sameDims(as, bs) && sameDims(as, outShape)) {
      const t = (da ?? db)!;
      this.a.binary(BINARY[op], this.inLayout(a, t), [a.length], this.inLayout(b, t), [b.length], [y.length], y);
      return this.tag(y, t);
    }
    if (da && !db && sameDims(da.dims, outShape) && perChannel(bs, da)) {
      this.a.binary(BINARY[op], a, physical(da), this.plain(b), physicalPerChannel(da, bs), physical(da), y);
      return this.tag(y, da);
    }
    if (db && !da && sameDims(db.dims, outShape) && perChannel(as, db)) {
      this.a.binary(BINARY[op], this.plain(a), physicalPerChannel(db, as), b, physical(db), physical(db), y);
      return this.tag(y, db);
    }
    this.a.binary(BINARY[op], this.plain(a), as, this.plain(b), bs, outShape, y);
    return y;
  }
  reduceSum(x: Storage, xs: number[], outShape: number[]): Storage {
    const y = new Float32Array(prodOf(outShape));
    const t = this.blockedAs(x, xs);
    // the gradient of a per-channel broadcast: the same reduction on the layout's row-major view
    if (
      t &&
      outShape.length === 4 &&
      outShape[2] === 1 &&
      outShape[3] === 1 &&
      (outShape[0] === 1 || outShape[0] === xs[0]) &&
      (outShape[1] === 1 || outShape[1] === xs[1])
    ) {
      this.a.reduceSum(x, physical(t), physicalPerChannel(t, outShape), y);
      return y;
    }
    this.a.reduceSum(this.plain(x), xs, outShape, y);
    return y;
  }
  unary(op: UnaryOp, x: Storage): Storage {
    const y = out(x.length);
    this.a.unary(UNARY[op], x, y);
    return this.tag(y, this.blocked.get(x));
  }
  clamp(x: Storage, lo: number, hi: number): Storage {
    const y = out(x.length);
    this.a.clamp(x, lo, hi, y);
    return this.tag(y, this.blocked.get(x));
  }
  clampBackward(x: Storage, lo: number, hi: number, dy: Storage): Storage {
    const dx = out(x.length);
    this.a.clampBackward(this.plain(x), lo, hi, this.plain(dy), dx);
    return dx;
  }
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage): Storage {
    const dx = out(x.length);
    const t = this.blocked.get(x);
    if (t) {
      this.a.unaryBackward(UNARY[op], x, this.inLayout(y, t), this.inLayout(dy, t), dx);
      return this.tag(dx, t);
    }
    this.a.unaryBackward(UNARY[op], x, this.plain(y), this.plain(dy), dx);
    return dx;
  }
  affine(x: Storage, alpha: number, beta: number): Storage {
    const y = out(x.length);
    this.a.affine(x, alpha, beta, y);
    return this.tag(y, this.blocked.get(x));
  }
  groupNorm(x: Storage, xs: number[], gamma: Storage, beta: Storage, groups: number, eps: number, silu: boolean) {
    const y = out(x.length),
      mean = new Float32Array(xs[0] * groups),
      rstd = new Float32Array(xs[0] * groups);
    const t = this.blockedAs(x, xs);
    this.a.groupNorm(
      t ? x : this.plain(x),
      xs,
      this.plain(gamma),
      this.plain(beta),
      groups,
      eps,
      silu,
      y,
      mean,
      rstd,
      t ? t.layout : 0,
    );
    return { y: this.tag(y, t), mean, rstd };
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
    const dx = out(x.length),
      dgamma = new Float32Array(xs[1]),
      dbeta = new Float32Array(xs[1]);
    const t = this.blockedAs(x, xs);
    if (t) {
      this.a.groupNormBackward(
        x,
        xs,
        this.plain(gamma),
        this.plain(beta),
        mean,
        rstd,
        groups,
        silu,
        this.inLayout(dy, t),
        dx,
        dgamma,
        dbeta,
        t.layout,
      );
      return { dx: this.tag(dx, t), dgamma, dbeta };
    }
    this.a.groupNormBackward(
      this.plain(x),
      xs,
      this.plain(gamma),
      this.plain(beta),
      mean,
      rstd,
      groups,
      silu,
      this.plain(dy),
      dx,
      dgamma,
      dbeta,
    );
    return { dx, dgamma, dbeta };
  }
  softmax(x: Storage, rows: number, cols: number): Storage {
    const y = out(x.length);
    this.a.softmax(this.plain(x), rows, cols, y);
    return y;
  }
  softmaxBackward(y: Storage, dy: Storage, rows: number, cols: number): Storage {
    const dx = out(y.length);
    this.a.softmaxBackward(this.plain(y), this.plain(dy), rows, cols, dx);
    return dx;
  }
  permute(x: Storage, xs: number[], perm: number[]): Storage {
    const y = out(x.length);
    this.a.permute(this.plain(x), xs, perm, y);
    return y;
  }
  concat(xs: Storage[], shapes: number[][]): Storage {
    const C = shapes.reduce((s, sh) => s + sh[1], 0);
    const y = out(shapes[0][0] * C * prodOf(shapes[0].slice(2)));
    const tags = xs.map((x, i) => this.blockedAs(x, shapes[i]));
    const layout = tags[0]?.layout;
    if (layout && tags.every((t) => t?.layout === layout)) {
      // nChw16c: blocks of 16 channels concatenate like channels ([N, C_i/16, H*W*16] along axis 1); NHWC: each
      // pixel's channels ([N*H*W, C_i, 1] along axis 1)
      const view = (s: number[]) =>
        layout === BLOCKED16 ? [s[0], s[1] / 16, s[2] * s[3] * 16] : [s[0] * s[2] * s[3], s[1], 1];
      this.a.concat(xs, shapes.map(view), y);
      return this.tag(y, { layout, dims: [shapes[0][0], C, shapes[0][2], shapes[0][3]] });
    }
    this.a.concat(
      xs.map((x) => this.plain(x)),
      shapes,
      y,
    );
    return y;
  }
  sliceChannels(x: Storage, xs: number[], c0: number, c: number): Storage {
    const y = out(xs[0] * c * prodOf(xs.slice(2)));
    const t = this.blockedAs(x, xs);
    // whole 16-channel blocks of nChw16c ([N, C/16, H*W*16]), or any channels of NHWC ([N*H*W, C, 1])
    if (t && (t.layout !== BLOCKED16 || (c0 % 16 === 0 && c % 16 === 0))) {
      const [N, C, H, W] = xs,
        bl = t.layout === BLOCKED16;
      this.a.sliceChannels(x, bl ? [N, C / 16, H * W * 16] : [N * H * W, C, 1], bl ? c0 / 16 : c0, bl ? c / 16 : c, y);
      return this.tag(y, { layout: t.layout, dims: [N, c, H, W] });
    }
    this.a.sliceChannels(this.plain(x), xs, c0, c, y);
    return y;
  }
  upsample2x(x: Storage, xs: number[]): Storage {
    const y = out(x.length * 4);
    const t = this.blockedAs(x, xs);
    this.a.upsample2x(t ? x : this.plain(x), xs, y, t ? t.layout : 0);
    return this.tag(y, t && { layout: t.layout, dims: [xs[0], xs[1], 2 * xs[2], 2 * xs[3]] });
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
    const Ho = convOutSize(xs[2], k, pad, pad, stride),
      Wo = convOutSize(xs[3], k, pad, pad, stride);
    const y = new Float32Array(xs[0] * xs[1] * Ho * Wo);
    this.a.pool2d(kind === 'max' ? 0 : countPad ? 1 : 2, this.plain(x), xs, k, stride, pad, y);
    return y;
  }
  upsample2xBackward(dy: Storage, xs: number[]): Storage {
    const dx = out(prodOf(xs));
    const t = this.blockedAs(dy, [xs[0], xs[1], 2 * xs[2], 2 * xs[3]]);
    this.a.upsample2xBackward(t ? dy : this.plain(dy), xs, dx, t ? t.layout : 0);
    return this.tag(dx, t && { layout: t.layout, dims: xs });
  }
  adamStep(p: Storage, g: Storage, m: Storage, v: Storage, h: AdamHyper): void {
    for (const t of [p, m, v]) {
      this.makePlain(t);
      this.touched(t);
    }
    this.a.adamStep(p, this.plain(g), m, v, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.step);
  }
  emaUpdate(ema: Storage, p: Storage, decay: number): void {
    this.makePlain(ema);
    this.touched(ema);
    this.a.emaUpdate(ema, this.plain(p), decay);
  }
  dropoutMask(n: number, perSample: number, words: number[], p: number, like?: Storage): Storage {
    const y = out(n);
    const t = like && this.blocked.get(like);
    if (t && prodOf(t.dims) === n && prodOf(t.dims.slice(1)) === perSample) {
      this.a.dropoutMask(y, perSample, words, p, t.layout, t.dims);
      return this.tag(y, t);
    }
    this.a.dropoutMask(y, perSample, words, p);
    return y;
  }
  sumSquares(x: Storage): Storage {
    return Float32Array.of(this.a.sumSquares(this.plain(x)));
  }
  scaleInPlace(x: Storage, s: Storage): void {
    // elementwise: any layout
    this.touched(x);
    this.a.scaleInPlace(x, this.plain(s)[0]);
  }
  addInPlace(x: Storage, y: Storage): void {
    // the engine accumulates gradients with this: y joins x's layout
    const t = this.blocked.get(x);
    this.touched(x);
    this.a.addInPlace(x, t ? this.inLayout(y, t) : this.plain(y));
  }
}
