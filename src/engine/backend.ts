// The backend interface: every kernel the engine needs, forward and backward.
//
// A backend owns its memory. Storage is opaque above the backend: the engine passes handles from one kernel to
// the next and never looks inside; values enter through upload() / write() and leave through read() (async, for
// device backends) or readSync() (CPU backends only). Kernels are called in program order and return their outputs
// as new handles (a device backend may enqueue the work and resolve read() after it).
// The CPU backends implement Backend<Float32Array> (Float64Array for the float64 reference used in gradient checks).

/** A backend's buffer handle. Nothing above src/engine and src/backends may look inside one. */
export type Storage = unknown;

/** Output size of a convolution along one axis: input h, kernel k, paddings p0 and p1, stride s. */
export function convOutSize(h: number, k: number, p0: number, p1: number, s: number): number {
  return Math.floor((h + p0 + p1 - k) / s) + 1;
}

export interface ConvParams {
  stride: number;
  padTop: number;
  padBottom: number;
  padLeft: number;
  padRight: number;
  /**
   * Forward only (sampling, evaluation): the input and the weights are rounded to bfloat16 (round to nearest even) and
   * the products accumulated in float32; the output is float32. A backend that cannot do this refuses it.
   */
  bf16?: boolean;
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
export type UnaryOp = 'exp' | 'log' | 'sqrt' | 'square' | 'tanh' | 'silu' | 'neg' | 'ncdf';

export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number; // decoupled (AdamW) when > 0
  step: number; // 1-based, for bias correction
}

// biome-ignore lint/suspicious/noExplicitAny: each backend has its own buffer type; code above the engine never sees it
export interface Backend<S = any> {
  readonly name: string;

  // Memory. A handle holds `size(x)` float values.
  /** A new buffer holding a copy of values. */
  upload(values: Float32Array): S;
  /** A new buffer of n zeros. */
  zeros(n: number): S;
  size(x: S): number;
  /** A copy of the values, when all work queued before has finished. */
  read(x: S): Promise<Float32Array>;
  /** The values now (CPU backends; the array may be the buffer itself: do not modify it). Device backends throw. */
  readSync(x: S): Float32Array;
  /** Overwrites the buffer's values in place. */
  write(x: S, values: Float32Array): void;
  copy(x: S): S;
  /**
   * Takes a buffer back now: nothing uses it again (engine scopes, tensor.ts). Optional: CPU backends leave their
   * buffers to the garbage collector.
   */
  release?(x: S): void;

  /** y[N,O,Ho,Wo] = conv(x[N,C,H,W], w[O,C,kh,kw]) + b[O] */
  conv2d(x: S, xs: number[], w: S, ws: number[], b: S | null, p: ConvParams): S;
  /** Gradients of conv2d: dx (when needDx), dw and db (when withBias). */
  conv2dBackward(
    x: S,
    xs: number[],
    dy: S,
    w: S,
    ws: number[],
    p: ConvParams,
    needDx: boolean,
    withBias: boolean,
  ): { dx: S | null; dw: S; db: S | null };

  /**
   * out[b] = op(A[b]) op(B[b]), A as [batch, M, K] (or [batch, K, M] when transA), B as [batch, K, N] (or [batch, N,
   * K]).
   */
  matmul(a: S, b: S, batch: number, m: number, k: number, n: number, transA: boolean, transB: boolean): S;

  /** Elementwise with numpy broadcasting; shapes have equal rank (padded with leading 1s). */
  binary(op: BinaryOp, a: S, as: number[], b: S, bs: number[], outShape: number[]): S;
  /** Sum x (shape xs) down to outShape (same rank, each dim equal to xs's or 1). */
  reduceSum(x: S, xs: number[], outShape: number[]): S;
  unary(op: UnaryOp, x: S): S;
  /** dL/dx for y = op(x). */
  unaryBackward(op: UnaryOp, x: S, y: S, dy: S): S;
  /** y = min(hi, max(lo, x)) (lo may be -Infinity, hi Infinity) */
  clamp(x: S, lo: number, hi: number): S;
  /** dx = dy where lo <= x <= hi, else 0 (PyTorch's clamp gradient) */
  clampBackward(x: S, lo: number, hi: number, dy: S): S;
  /** y = alpha * x + beta */
  affine(x: S, alpha: number, beta: number): S;

  groupNorm(
    x: S,
    xs: number[],
    gamma: S,
    beta: S,
    groups: number,
    eps: number,
    silu: boolean,
  ): { y: S; mean: S; rstd: S };
  groupNormBackward(
    x: S,
    xs: number[],
    gamma: S,
    beta: S,
    mean: S,
    rstd: S,
    groups: number,
    silu: boolean,
    dy: S,
  ): { dx: S; dgamma: S; dbeta: S };

  /** Softmax over rows of length cols. */
  softmax(x: S, rows: number, cols: number): S;
  softmaxBackward(y: S, dy: S, rows: number, cols: number): S;

  permute(x: S, xs: number[], perm: number[]): S;
  /** Concatenate along axis 1 of [N, C_i, ...rest] tensors. */
  concat(xs: S[], shapes: number[][]): S;
  /** Slice channels [c0, c0 + c) of a [N, C, ...rest] tensor. */
  sliceChannels(x: S, xs: number[], c0: number, c: number): S;
  upsample2x(x: S, xs: number[]): S;
  upsample2xBackward(dy: S, xs: number[]): S;
  /**
   * k x k pooling of [N, C, H, W] with stride and symmetric zero padding (forward only: the FID network). max; or
   * average over the window, counting padded positions when countPad (PyTorch's count_include_pad).
   */
  pool2d(kind: 'max' | 'avg', x: S, xs: number[], k: number, stride: number, pad: number, countPad: boolean): S;

  // Optimiser kernels, in place.
  adamStep(p: S, g: S, m: S, v: S, h: AdamHyper): void;
  emaUpdate(ema: S, p: S, decay: number): void;
  /** sum of x^2 as a 1-value buffer (stays on the device) */
  sumSquares(x: S): S;
  /** x *= s[0], s a 1-value buffer */
  scaleInPlace(x: S, s: S): void;
  /** x += y */
  addInPlace(x: S, y: S): void;

  /**
   * Optional: a dropout mask drawn by the backend itself, n values (perSample per sample) of 1 / (1 - p) where the
   * engine's uniform (fillRandom, key words [seedLo, seedHi, streamLo, streamHi], samples from 0) is >= p, else 0.
   * It must equal the host's mask bit for bit (the engine draws it on the host when a backend has no such kernel).
   * like: the buffer the mask will multiply, whose storage layout the mask may take.
   */
  dropoutMask?(n: number, perSample: number, words: number[], p: number, like?: S): S;
}
