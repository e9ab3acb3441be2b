// Image-to-image with SDEdit (Meng et al. 2021): the input noised part of the way up the chain, x_t = q(x_t | x_0),
// then the reverse chain of any sampler from there. strength is the fraction of the sampler's steps that run, laid
// out as diffusers' image-to-image pipelines do (the first int(steps * strength) steps from the bottom of the plan);
// strength 0 returns the input, strength 1 starts from the sampler's own x_T, so it is unconditional sampling with
// the same seed.
import * as ops from '../engine/ops.js';
import { type Tensor, noGrad } from '../engine/tensor.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';
import { type SampleOptions, type SamplerStep, initialNoise, sample, samplerPlan } from './samplers.js';

/** The plan's step a run of this strength starts at, and how many steps it runs. */
export function sdeditStart(total: number, strength: number): { first: number; steps: number } {
  if (!(strength >= 0 && strength <= 1)) throw new Error(`edit: strength must be in [0, 1], got ${strength}`);
  const steps = Math.min(total, Math.floor(total * strength + 1e-9));
  return { first: total - steps, steps };
}

/** Edits x0 ([B, C, H, W] on [-1, 1]); yields every step of the sampler and returns the images. */
export function* sdedit(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x0: Tensor,
  strength: number,
  opts: SampleOptions,
): Generator<SamplerStep, Tensor> {
  const { plan } = samplerPlan(d, opts);
  const { first, steps } = sdeditStart(plan.length, strength);
  if (steps === 0) return x0;
  const noise = initialNoise(x0.shape, opts.seed, opts.sampleStart ?? 0);
  // eq. (4) at the plan's point: x_t = sqrt(alphabar) x0 + sqrt(1 - alphabar) eps
  const ab = plan[first].ab;
  const x = first === 0 ? noise : noGrad(() => ops.add(ops.mul(x0, Math.sqrt(ab)), ops.mul(noise, Math.sqrt(1 - ab))));
  return yield* sample(d, model, x0.shape, { ...opts, start: { step: first, x } });
}
