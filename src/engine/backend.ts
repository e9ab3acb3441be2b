// The backend interface: every kernel the engine needs, forward and backward.
//
// Storage is a Float32Array: both backends compute on the CPU, kernels run in program order and return their
// outputs at once. Tensor.data() is the asynchronous read a device backend will need; today the engine, the
// optimiser and a few places above it (EMA weight swap, checkpoints, data batches) still use the arrays directly,
// so a backend whose buffers live elsewhere cannot be plugged in yet.

export type Storage = Float32Array;

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

export interface Backend {
  readonly name: string;

  /** y[N,O,Ho,Wo] = conv(x[N,C,H,W], w[O,C,kh,kw]) + b[O] */
  conv2d(x: Storage, xs: number[], w: Storage, ws: number[], b: Storage | null, p: ConvParams): Storage;
  /** Gradients of conv2d: dx (when needDx), dw and db (when withBias). */
  conv2dBackward(x: Storage, xs: number[], dy: Storage, w: Storage, ws: number[], p: ConvParams, needDx: boolean, withBias: boolean): { dx: Storage | null; dw: Storage; db: Storage | null };

  /** out[b] = op(A[b]) op(B[b]), A as [batch, M, K] (or [batch, K, M] when transA), B as [batch, K, N] (or [batch, N, K]). */
  matmul(a: Storage, b: Storage, batch: number, m: number, k: number, n: number, transA: boolean, transB: boolean): Storage;

  /** Elementwise with numpy broadcasting; shapes have equal rank (padded with leading 1s). */
  binary(op: BinaryOp, a: Storage, as: number[], b: Storage, bs: number[], outShape: number[]): Storage;
  /** Sum x (shape xs) down to outShape (same rank, each dim equal to xs's or 1). */
  reduceSum(x: Storage, xs: number[], outShape: number[]): Storage;
  unary(op: UnaryOp, x: Storage): Storage;
  /** dL/dx for y = op(x). */
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage): Storage;
  /** y = min(hi, max(lo, x)) (lo may be -Infinity, hi Infinity) */
  clamp(x: Storage, lo: number, hi: number): Storage;
  /** dx = dy where lo <= x <= hi, else 0 (PyTorch's clamp gradient) */
  clampBackward(x: Storage, lo: number, hi: number, dy: Storage): Storage;
  /** y = alpha * x + beta */
  affine(x: Storage, alpha: number, beta: number): Storage;

  groupNorm(x: Storage, xs: number[], gamma: Storage, beta: Storage, groups: number, eps: number, silu: boolean): { y: Storage; mean: Storage; rstd: Storage };
  groupNormBackward(x: Storage, xs: number[], gamma: Storage, beta: Storage, mean: Storage, rstd: Storage, groups: number, silu: boolean, dy: Storage): { dx: Storage; dgamma: Storage; dbeta: Storage };

  /** Softmax over rows of length cols. */
  softmax(x: Storage, rows: number, cols: number): Storage;
  softmaxBackward(y: Storage, dy: Storage, rows: number, cols: number): Storage;

  permute(x: Storage, xs: number[], perm: number[]): Storage;
  /** Concatenate along axis 1 of [N, C_i, ...rest] tensors. */
  concat(xs: Storage[], shapes: number[][]): Storage;
  /** Slice channels [c0, c0 + c) of a [N, C, ...rest] tensor. */
  sliceChannels(x: Storage, xs: number[], c0: number, c: number): Storage;
  upsample2x(x: Storage, xs: number[]): Storage;
  upsample2xBackward(dy: Storage, xs: number[]): Storage;

  // Optimiser kernels, in place.
  adamStep(p: Storage, g: Storage, m: Storage, v: Storage, h: AdamHyper): void;
  emaUpdate(ema: Storage, p: Storage, decay: number): void;
  sumSquares(x: Storage): number;
  scaleInPlace(x: Storage, s: number): void;
  /** x += y */
  addInPlace(x: Storage, y: Storage): void;
}
