// The native backend: the N-API addon built from native/ (one C++ file per kernel family, on oneDNN). Node-only. The
// addon's loading is in addon.ts, the bookkeeping of the activation layouts that buffers are kept in between kernels
// in layouts.ts; here are the ops, each one call into the addon.
import {
  type AdamHyper,
  type Backend,
  type BinaryOp,
  type ConvParams,
  type UnaryOp,
  convOutSize,
} from '../../engine/backend.js';
import { type Addon, loadAddon } from './addon.js';
import { ThreadGovernor, procReader } from './governor.js';
import {
  BLOCKED16,
  NativeLayouts,
  type Storage,
  type Tag,
  out,
  physical,
  physicalPerChannel,
  sameDims,
} from './layouts.js';

export { loadAddon };

const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY: Record<UnaryOp, number> = { exp: 0, log: 1, sqrt: 2, square: 3, tanh: 4, silu: 5, neg: 6, ncdf: 7 };

const prodOf = (s: number[]) => s.reduce((a, b) => a * b, 1);
const convArr = (p: ConvParams) => [p.stride, p.padTop, p.padBottom, p.padLeft, p.padRight];

/**
 * How the float32 3x3 convolutions are computed: `winograd` (default) uses oneDNN's Winograd F(4x4, 3x3) kernels
 * where they were measured faster on the project's U-Nets (3x3, stride 1, >= 16 input channels, maps of at least 7x7;
 * 1.3-2.2x faster per convolution, rounding error about 10x the direct one's: a relative 3e-6 against 3e-7);
 * `direct` uses oneDNN's direct kernels everywhere (what PyTorch runs on CPUs). bf16 convolutions are always direct.
 */
export type ConvAlgorithm = 'winograd' | 'direct';
export const CONV_ALGORITHMS: ConvAlgorithm[] = ['winograd', 'direct'];

export class NativeBackend extends NativeLayouts implements Backend<Storage> {
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
    /** whether the team shrinks while other processes keep the CPUs busy (governor.ts) */
    adaptiveThreads: boolean;
  };
  private readonly governor: ThreadGovernor | null = null;

  /**
   * threads: the OpenMP team for our loops and oneDNN (default: what the caller computed, see select.ts); adaptive:
   * run fewer while other processes keep the CPUs busy (governor.ts; where /proc tells, Linux).
   */
  constructor(addon: Addon, threads?: number, convAlgorithm: ConvAlgorithm = 'winograd', adaptive = false) {
    super(addon);
    if (threads !== undefined) addon.setThreads(threads);
    const reader = adaptive ? procReader() : null;
    if (reader) this.governor = new ThreadGovernor(addon.info().threads, (n) => addon.setThreads(n), reader);
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
    this.info = {
      ...addon.info(),
      bf16: addon.cpuHasBf16(),
      convAlgorithm,
      conv3x3: '',
      winograd,
      blockedLayout,
      adaptiveThreads: !!this.governor,
    };
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
      : `oneDNN ${this.info.onednn} has Winograd kernels only for AVX-512 CPUs; ` +
          `this one runs direct ones (${this.info.conv3x3})`;
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
    this.governor?.tick();
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
