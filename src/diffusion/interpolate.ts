// Interpolation in latent space (the paper's section 4.3, Fig. 8): encode two images to x_t with q(x_t | x_0) and the
// same noise, mix them linearly, and decode each mixture with the reverse chain from t.
import * as ops from '../engine/ops.js';
import { LoopMemory, type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';
import { ancestralStep } from './samplers.js';

/** One reverse step of the interpolation's decoding: `step` of `total` done, the batch of mixtures at timestep t. */
export interface InterpolationStep {
  step: number;
  total: number;
  t: number;
  x: Tensor;
}

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
  return noGrad(() => {
    const it = interpolationSteps(d, model, x0a, x0b, lambdas, t, seed);
    for (;;) {
      const r = it.next();
      if (r.done) return r.value;
      onStep?.(r.value.step, r.value.total);
    }
  });
}

/** interpolate as a generator of its reverse steps (run it under noGrad), for callers that show or stop each one. */
export function* interpolationSteps(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x0a: Tensor,
  x0b: Tensor,
  lambdas: number[],
  t: number,
  seed: number,
): Generator<InterpolationStep, Tensor> {
  if (!Number.isInteger(t) || t < 0 || t >= d.numTimesteps)
    throw new Error(`interpolate: t must be an integer in [0, ${d.numTimesteps - 1}], got ${t}`);
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
  const memory = new LoopMemory(); // a step's temporaries go when it ends, its x once the next has replaced it
  for (let s = t; s >= 0; s--) {
    x = memory.step(
      () => {
        // the same reverse-process noise for every mixture, so that rows differ only through lambda
        const z = ops.mul(ones, ops.randn(one, streams.interpolate(seed, 1 + t - s)));
        return ancestralStep(d, model, x, new Int32Array(K).fill(s), d.config.clipSample, z).x;
      },
      (r) => [r],
    );
    yield { step: t - s + 1, total: t + 1, t: s, x };
  }
  return x;
}
