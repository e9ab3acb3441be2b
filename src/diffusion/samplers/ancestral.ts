// Ancestral sampling, Algorithm 2 of the paper: x_prev = mu~(x0-hat, x_t) + sigma z, on any plan. Between two
// points with alphabar a (now) and a' (next) the step's own beta is 1 - a / a' (improved-diffusion's respacing;
// diffusers' DDPMScheduler computes the same), so this equals the paper's chain on all T steps, improved-diffusion's
// respaced chain, and DDPMScheduler under its timestep spacings (noise at t > 0, as it adds it).
import * as ops from '../../engine/ops.js';
import type { Tensor } from '../../engine/tensor.js';
import type { VarianceType } from '../gaussian.js';
import type { Sampler } from './protocol.js';

/** Eq. (7): mu~_t(x_0, x_t) = sqrt(a') beta / (1 - a) x_0 + sqrt(1 - beta) (1 - a') / (1 - a) x_t, beta = 1 - a/a'. */
export function posteriorMean(x0: Tensor, x: Tensor, ab: number, abPrev: number): Tensor {
  const beta = 1 - ab / abPrev;
  return ops.add(
    ops.mul(x0, (Math.sqrt(abPrev) * beta) / (1 - ab)),
    ops.mul(x, (Math.sqrt(1 - beta) * (1 - abPrev)) / (1 - ab)),
  );
}

/**
 * log sigma^2 of the step: fixedlarge beta, fixedsmall beta~ = beta (1 - a') / (1 - a) (floored at 1e-20, as
 * diffusers clamps it), learnedrange frac log beta + (1 - frac) log beta~ with frac = (v + 1) / 2 (improved DDPM).
 */
export function stepLogVariance(
  variance: VarianceType,
  ab: number,
  abPrev: number,
  varPart: Tensor | null,
): Tensor | number {
  const beta = 1 - ab / abPrev;
  const logSmall = Math.log(Math.max((beta * (1 - abPrev)) / (1 - ab), 1e-20)),
    logLarge = Math.log(beta);
  if (variance === 'fixedlarge') return logLarge;
  if (variance !== 'learnedrange') return logSmall;
  const frac = ops.affine(varPart!, 0.5, 0.5);
  return ops.add(ops.mul(frac, logLarge), ops.mul(ops.affine(frac, -1, 1), logSmall));
}

export const ancestral: Sampler = {
  name: 'ancestral',
  about: "Algorithm 2 (diffusers' DDPMScheduler under its spacings)",
  family: 'ddim',
  defaultSpacing: 'respaced',
  clipsByDefault: true,
  evals: () => 1,
  step(c, x, mem) {
    const { t, ab, abPrev, noisy } = c.step;
    const p = c.predict(x, t, ab);
    const mean = posteriorMean(p.x0, x, ab, abPrev);
    if (!noisy) return { x: mean, predX0: p.x0, mem };
    const logVar = stepLogVariance(c.config.variance, ab, abPrev, p.varPart);
    const sigma = typeof logVar === 'number' ? Math.exp(0.5 * logVar) : ops.exp(ops.mul(logVar, 0.5));
    return { x: ops.add(mean, ops.mul(c.noise(), sigma)), predX0: p.x0, mem };
  },
};
