// Optimisation: Adam / AdamW with bias correction, global-norm gradient clipping, and an exponential moving average
// of parameters. All updates run in place on the backend; no value is read back.
import * as ops from './ops.js';
import { Tensor, getBackend, noGrad, swapValues } from './tensor.js';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (AdamW); 0 gives plain Adam. */
  weightDecay?: number;
}

export class Adam {
  readonly params: Tensor[];
  /** first and second moments, one tensor per parameter */
  readonly m: Tensor[];
  readonly v: Tensor[];
  step = 0;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** a factor on lr for each parameter (1: the common rate), e.g. a larger rate for a new class embedding */
  readonly lrScale: number[];

  constructor(params: Tensor[], o: AdamOptions) {
    this.params = params;
    this.m = params.map((p) => ops.zeros(p.shape));
    this.v = params.map((p) => ops.zeros(p.shape));
    this.lr = o.lr;
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
    this.lrScale = params.map(() => 1);
  }

  /** One update from the .grad of every parameter (parameters without a gradient are left alone). */
  update(): void {
    this.step++;
    const h = {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
      step: this.step,
    };
    this.params.forEach((p, i) => {
      const hp = this.lrScale[i] === 1 ? h : { ...h, lr: h.lr * this.lrScale[i] };
      if (p.grad) getBackend().adamStep(p.storage, p.grad.storage, this.m[i].storage, this.v[i].storage, hp);
    });
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }
}

/** The global L2 norm of all gradients, as a 1-value tensor (on the device). */
export function gradNorm(params: Tensor[]): Tensor {
  return noGrad(() => {
    let s: Tensor = ops.zeros([1]);
    for (const p of params) if (p.grad) s = ops.add(s, new Tensor(getBackend().sumSquares(p.grad.storage), [1]));
    return ops.sqrt(s);
  });
}

/**
 * Scales all gradients by min(1, maxNorm / (norm + 1e-6)), so that their global norm is at most maxNorm, without
 * reading the norm back (maxNorm 0: no clipping); returns the norm before clipping (a 1-value tensor).
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  const norm = gradNorm(params);
  if (maxNorm === 0) return norm; // 0: no clipping (the norm is still measured, for the log)
  if (!(maxNorm > 0)) throw new Error(`gradient clipping: the norm bound must be > 0 (or 0 for none), got ${maxNorm}`);
  const factor = noGrad(() => ops.clamp(ops.div(ops.full([1], maxNorm), ops.add(norm, 1e-6)), 0, 1));
  for (const p of params) if (p.grad) getBackend().scaleInPlace(p.grad.storage, factor.storage);
  return norm;
}

/** Exponential moving average of parameters: ema = decay * ema + (1 - decay) * param. */
export class EMA {
  /** the averaged values, one tensor per parameter */
  readonly shadow: Tensor[];

  constructor(params: Tensor[]) {
    this.shadow = params.map((p) => new Tensor(getBackend().copy(p.storage), p.shape));
  }

  update(params: Tensor[], decay: number): void {
    params.forEach((p, i) => getBackend().emaUpdate(this.shadow[i].storage, p.storage, decay));
  }
}

/** Runs fn with the parameters' values swapped for `values` (the EMA weights for sampling), then swaps back. */
export function withValues<R>(params: Tensor[], values: Tensor[], fn: () => R): R {
  swapValues(params, values);
  try {
    return fn();
  } finally {
    swapValues(params, values);
  }
}

/**
 * EMA decay warmed up for short runs: min(decay, (1 + step) / (10 + step)). A fixed 0.9999 keeps the average mostly
 * at the initial weights for thousands of steps, so samples of a short run would stay noise.
 */
export function emaDecayAt(step: number, decay: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}
