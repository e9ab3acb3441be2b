// PLMS (Liu et al. 2022, pseudo linear multistep), stepped as diffusers' PNDMScheduler with skip_prk_steps: the first
// step is a pseudo improved-Euler step (eps at x_t, a DDIM-like step to the next level, eps there, and the step
// again with their mean: one more network call), then Adams-Bashforth combinations of the newest eps and up to three
// earlier ones, (3 e0 - e1) / 2, (23 e0 - 16 e1 + 5 e2) / 12, (55 e0 - 59 e1 + 37 e2 - 9 e3) / 24. The step itself is
// PNDM's transfer x' = sqrt(a' / a) x - (a' - a) e / (a sqrt(1 - a') + sqrt(a (1 - a) a')), which is DDIM with eta 0.
// As in diffusers, the combinations are of the network's raw outputs, turned into eps at the step's own alphabar
// (the same thing for eps models; for v models it is PNDMScheduler's convention).
import * as ops from '../../engine/ops.js';
import type { Tensor } from '../../engine/tensor.js';
import { epsFromOutput, epsFromX0, x0FromEps } from '../prediction.js';
import type { Sampler, StepContext } from './protocol.js';

/** PNDM's _get_prev_sample (with clipping: x0-hat clipped and eps re-derived from it). */
function transfer(c: StepContext, x: Tensor, e: Tensor, ab: number, abPrev: number): Tensor {
  if (c.clip) {
    const x0 = ops.clamp(x0FromEps(x, e, ab), -1, 1);
    return ops.add(ops.mul(x0, Math.sqrt(abPrev)), ops.mul(epsFromX0(x, x0, ab), Math.sqrt(1 - abPrev)));
  }
  const denom = ab * Math.sqrt(1 - abPrev) + Math.sqrt(ab * (1 - ab) * abPrev);
  return ops.sub(ops.mul(x, Math.sqrt(abPrev / ab)), ops.mul(e, (abPrev - ab) / denom));
}

const COEF = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]];

export const plms: Sampler = {
  name: 'plms',
  about: "PLMS with its improved-Euler start (diffusers' PNDMScheduler, skip_prk_steps)",
  family: 'ddim',
  defaultSpacing: 'leading',
  clipsByDefault: false,
  setAlphaToOne: false,
  evals: (plan, k) => (k === 0 && plan.length > 1 ? 2 : 1),
  step(c, x, mem) {
    const { t, ab, abPrev } = c.step;
    const p = c.predict(x, t, ab);
    const eps = (raw: Tensor, xx: Tensor, a: number) => epsFromOutput(c.config.prediction, raw, xx, a);
    if (c.k === 0 && c.plan.length > 1) {
      // the improved-Euler start: diffusers steps to plan[1].t from plan[1].t + (T / n) (= t but under linspace)
      const s = c.plan[0],
        n1 = c.plan[1];
      const xEuler = transfer(c, x, p.eps, ab, abPrev);
      const raw1 = c.predict(xEuler, n1.t, n1.ab).main;
      const from = n1.t + (s.t - s.prev);
      const abFrom = from === t ? ab : c.abAt(from);
      const mean = ops.mul(ops.add(p.main, raw1), 0.5);
      const xOut = transfer(c, x, eps(mean, x, abFrom), abFrom, n1.ab);
      return { x: xOut, predX0: p.x0, mem: { tensors: [p.main], numbers: [] } };
    }
    const e = [p.main, ...[...mem.tensors].reverse()]; // e[0] newest
    const coef = COEF[Math.min(3, e.length - 1)];
    let ePrime = ops.mul(e[0], coef[0]);
    for (let j = 1; j < coef.length; j++) ePrime = ops.add(ePrime, ops.mul(e[j], coef[j]));
    const next = { tensors: [...mem.tensors, p.main].slice(-3), numbers: [] };
    return { x: transfer(c, x, eps(ePrime, x, ab), ab, abPrev), predX0: p.x0, mem: next };
  },
};
