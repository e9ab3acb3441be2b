// Annealed Langevin dynamics (NCSN, Song & Ermon 2019) with the model's score, grad log q(x_t) ~ -eps-hat /
// sqrt(1 - alphabar_t) (section 3.2; eps-hat from the prediction adapter, so x0 and v models give their own score),
// the step size set from a target signal-to-noise ratio (Song et al. 2021): x <- x + a s + sqrt(2a) z with
// a = 2 (snr ||z|| / ||s||)^2 per sample. As a sampler it ends each level by moving to the next one through x0-hat
// (as DDIM with eta 0); as the corrector of pc.ts it only runs the dynamics.
import * as ops from '../../engine/ops.js';
import type { Tensor } from '../../engine/tensor.js';
import { epsFromX0, scoreFromEps } from '../prediction.js';
import type { Sampler, StepContext } from './protocol.js';

/** nSteps of Langevin dynamics at (t, ab); draws noise c.noise(1 + k). */
export function langevinDynamics(c: StepContext, x: Tensor, t: number, ab: number, nSteps: number): Tensor {
  for (let k = 0; k < nSteps; k++) {
    const score = scoreFromEps(c.predict(x, t, ab).eps, ab);
    const z = c.noise(1 + k);
    const a = perSampleStepSize(score, z, c.snr);
    x = ops.add(ops.add(x, ops.mul(score, a)), ops.mul(z, ops.sqrt(ops.mul(a, 2))));
  }
  return x;
}

/** a = 2 (snr ||z|| / ||s||)^2 per sample, as [B, 1, ..., 1]. */
function perSampleStepSize(score: Tensor, z: Tensor, snr: number): Tensor {
  const dims = score.shape.map((_, k) => k).slice(1);
  const gs = ops.clamp(ops.sum(ops.square(score), dims, true), 1e-24, Infinity),
    zs = ops.sum(ops.square(z), dims, true);
  return ops.mul(ops.div(zs, gs), 2 * snr * snr);
}

export const langevin: Sampler = {
  name: 'langevin',
  about: 'annealed Langevin dynamics with the score of section 3.2 (3 steps per level unless told)',
  family: 'ddim',
  defaultSpacing: 'respaced',
  clipsByDefault: true,
  evals: (_plan, _k, L) => (L ?? 3) + 1,
  step(c, x, mem) {
    const { t, ab, prev, abPrev } = c.step;
    x = langevinDynamics(c, x, t, ab, c.langevinSteps ?? 3);
    const p = c.predict(x, t, ab);
    if (prev < 0) return { x: p.x0, predX0: p.x0, mem };
    const eps = epsFromX0(x, p.x0, ab);
    return {
      x: ops.add(ops.mul(p.x0, Math.sqrt(abPrev)), ops.mul(eps, Math.sqrt(1 - abPrev))),
      predX0: ops.clamp(p.x0, -1, 1),
      mem,
    };
  },
};
