// Algorithm 1 of the paper, one step on a batch, for code that trains without the Node training loop (the
// playground, a browser tab): t ~ Uniform({0..T-1}), eps ~ N(0, I) from the named streams, a gradient step on the
// loss (L_simple, eq. 14, unless the diffusion says otherwise), global-norm clipping, Adam, and the EMA of the weights.
// src/training/train.ts runs the same step with micro-batches, flips, dropout and checkpoints around it.
import * as T from '../engine/ops.js';
import { type Adam, type EMA, clipGradNorm } from '../engine/optim.js';
import { randomIntegers } from '../engine/random.js';
import { streams } from '../engine/streams.js';
import type { Tensor } from '../engine/tensor.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';

export interface Algorithm1Options {
  /** the random streams' seed and this step's index (the batch number) */
  seed: number;
  step: number;
  /** global gradient-norm clip (default 1, the paper's) */
  gradClip?: number;
  ema?: { ema: EMA; decay: number };
}

/** One step; returns the batch's mean loss as a 1-value tensor (read it with `await loss.data()` when wanted). */
export function algorithm1Step(d: GaussianDiffusion, model: DenoiseFn, adam: Adam, x0: Tensor, o: Algorithm1Options): Tensor {
  const B = x0.shape[0];
  const t = randomIntegers(B, 0, d.numTimesteps - 1, streams.timesteps(o.seed, o.step));
  const noise = T.randn(x0.shape, streams.trainNoise(o.seed, o.step));
  const { loss } = d.trainingLosses(model, x0, t, noise);
  const total = T.mean(loss);
  total.backward();
  clipGradNorm(adam.params, o.gradClip ?? 1);
  adam.update();
  adam.zeroGrad();
  o.ema?.ema.update(adam.params, o.ema.decay);
  return total;
}
