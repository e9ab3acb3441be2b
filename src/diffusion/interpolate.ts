// Interpolation in latent space (the paper's section 4.3, Fig. 8): encode two images to x_t with q(x_t | x_0) and the
// same noise, mix them linearly, and decode each mixture with the reverse chain from t.
import * as ops from '../engine/ops.js';
import { type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';
import { ancestralStep } from './samplers.js';

/**
 * x0a, x0b: [1, C, H, W] on [-1, 1]; lambdas in [0, 1]; t: model timestep index to encode to (paper: 500 of 1000).
 * Returns [lambdas.length, C, H, W]: row k decodes (1 - lambda_k) x_t(a) + lambda_k x_t(b). onStep(done, total)
 * reports progress through the t + 1 reverse steps.
 */
export function interpolate(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x0a: Tensor,
  x0b: Tensor,
  lambdas: number[],
  t: number,
  seed: number,
  onStep?: (done: number, total: number) => void,
): Tensor {
  if (!Number.isInteger(t) || t < 0 || t >= d.numTimesteps)
    throw new Error(`interpolate: t must be an integer in [0, ${d.numTimesteps - 1}], got ${t}`);
  return noGrad(() => {
    const K = lambdas.length;
    const one = [1, ...x0a.shape.slice(1)];
    const noise = ops.randn(one, streams.interpolate(seed, 0));
    const tt = new Int32Array(1).fill(t);
    const xa = d.qSample(x0a, tt, noise),
      xb = d.qSample(x0b, tt, noise);
    // mixtures as a batch: x = xa + lambda (xb - xa), lambda per row
    const lam = ops.fromArray(Float32Array.from(lambdas), [K, 1, 1, 1]);
    let x = ops.add(xa, ops.mul(lam, ops.sub(xb, xa)));
    const ones = ops.full([K, 1, 1, 1], 1);
    for (let s = t; s >= 0; s--) {
      // the same reverse-process noise for every mixture, so that rows differ only through lambda
      const z = ops.mul(ones, ops.randn(one, streams.interpolate(seed, 1 + t - s)));
      x = ancestralStep(d, model, x, new Int32Array(K).fill(s), d.config.clipSample, z).x;
      onStep?.(t - s + 1, t + 1);
    }
    return x;
  });
}
