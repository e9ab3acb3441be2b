// Heun's second-order method on the probability-flow ODE in sigma = sqrt((1 - a) / a), x~ = x / sqrt(a) (EDM,
// Karras et al. 2022, Algorithm 1, deterministic), stepped as diffusers' HeunDiscreteScheduler: an Euler step with
// the slope d = (x~ - x0-hat) / sigma, corrected with the slope at the next level (one more network call) but on the
// step to sigma = 0.
import * as ops from '../../engine/ops.js';
import type { Tensor } from '../../engine/tensor.js';
import type { ModelPrediction } from '../prediction.js';
import type { Sampler } from './protocol.js';

export const sigmaOf = (ab: number) => Math.sqrt((1 - ab) / ab);

/** The ODE's slope in the EDM variables: (x~ - x0-hat) / sigma, which is eps-hat unless x0-hat was clipped. */
export function slope(p: ModelPrediction, x: Tensor, ab: number, clip: boolean): Tensor {
  return clip ? ops.mul(ops.sub(ops.mul(x, 1 / Math.sqrt(ab)), p.x0), 1 / sigmaOf(ab)) : p.eps;
}

export const heun: Sampler = {
  name: 'heun',
  about: "Heun's method, EDM (diffusers' HeunDiscreteScheduler)",
  family: 'sigma',
  defaultSpacing: 'linspace',
  clipsByDefault: false,
  evals: (plan, k) => (plan[k].prev >= 0 ? 2 : 1),
  step(c, x, mem) {
    const { t, ab, prev, abPrev } = c.step;
    const s0 = sigmaOf(ab),
      s1 = prev >= 0 ? sigmaOf(abPrev) : 0;
    const xs = ops.mul(x, 1 / Math.sqrt(ab));
    const p = c.predict(x, t, ab);
    const d0 = slope(p, x, ab, c.clip);
    let xsNext = ops.add(xs, ops.mul(d0, s1 - s0));
    if (prev >= 0) {
      const xn = ops.mul(xsNext, Math.sqrt(abPrev));
      const d1 = slope(c.predict(xn, prev, abPrev), xn, abPrev, c.clip);
      xsNext = ops.add(xs, ops.mul(ops.add(d0, d1), (s1 - s0) / 2));
    }
    return { x: ops.mul(xsNext, Math.sqrt(abPrev)), predX0: p.x0, mem };
  },
};
