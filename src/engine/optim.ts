// Optimisation: Adam / AdamW with bias correction, global-norm gradient clipping, and an exponential moving average
// of parameters. All updates run in place on the backend.
import { Tensor, getBackend } from './tensor.js';

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
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(params: Tensor[], o: AdamOptions) {
    this.params = params;
    this.m = params.map((p) => new Float32Array(p.size));
    this.v = params.map((p) => new Float32Array(p.size));
    this.lr = o.lr;
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
  }

  /** One update from the .grad of every parameter (parameters without a gradient are left alone). */
  update(): void {
    this.step++;
    const h = { lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, step: this.step };
    this.params.forEach((p, i) => {
      if (p.grad) getBackend().adamStep(p.storage, p.grad.storage, this.m[i], this.v[i], h);
    });
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }
}

/** The global L2 norm of all gradients. */
export function gradNorm(params: Tensor[]): number {
  let s = 0;
  for (const p of params) if (p.grad) s += getBackend().sumSquares(p.grad.storage);
  return Math.sqrt(s);
}

/** Scales all gradients so that their global norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  if (norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (const p of params) if (p.grad) getBackend().scaleInPlace(p.grad.storage, s);
  }
  return norm;
}

/** Exponential moving average of parameters: ema = decay * ema + (1 - decay) * param. */
export class EMA {
  readonly shadow: Float32Array[];

  constructor(params: Tensor[]) {
    this.shadow = params.map((p) => p.storage.slice());
  }

  update(params: Tensor[], decay: number): void {
    params.forEach((p, i) => getBackend().emaUpdate(this.shadow[i], p.storage, decay));
  }
}

/**
 * EMA decay warmed up for short runs: min(decay, (1 + step) / (10 + step)). A fixed 0.9999 keeps the average mostly
 * at the initial weights for thousands of steps, so samples of a short run would stay noise.
 */
export function emaDecayAt(step: number, decay: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}
