// Euler's method on the probability-flow ODE in sigma = sqrt((1 - a) / a), x~ = x / sqrt(a), stepped as diffusers'
// EulerDiscreteScheduler (s_churn 0): x~' = x~ + d (sigma' - sigma) with the slope d = (x~ - x0-hat) / sigma.
import * as ops from '../../engine/ops.js';
import { sigmaOf, slope } from './heun.js';
import type { Sampler } from './protocol.js';

export const euler: Sampler = {
  name: 'euler',
  about: "Euler's method on the probability-flow ODE (diffusers' EulerDiscreteScheduler)",
  family: 'sigma',
  defaultSpacing: 'linspace',
  clipsByDefault: false,
  evals: () => 1,
  step(c, x, mem) {
    const { t, ab, prev, abPrev } = c.step;
    const s0 = sigmaOf(ab),
      s1 = prev >= 0 ? sigmaOf(abPrev) : 0;
    const p = c.predict(x, t, ab);
    const xsNext = ops.add(ops.mul(x, 1 / Math.sqrt(ab)), ops.mul(slope(p, x, ab, c.clip), s1 - s0));
    return { x: ops.mul(xsNext, Math.sqrt(abPrev)), predX0: p.x0, mem };
  },
};
