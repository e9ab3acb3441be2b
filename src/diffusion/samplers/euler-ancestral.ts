// Euler ancestral (k-diffusion's sample_euler_ancestral), stepped as diffusers' EulerAncestralDiscreteScheduler: in
// sigma = sqrt((1 - a) / a), x~ = x / sqrt(a), an Euler step down to sigma_down, then fresh noise of scale sigma_up,
// sigma_up = sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2), sigma_down = sqrt(sigma'^2 - sigma_up^2).
import * as ops from '../../engine/ops.js';
import { sigmaOf, slope } from './heun.js';
import type { Sampler } from './protocol.js';

export const eulerAncestral: Sampler = {
  name: 'euler-a',
  about: "Euler ancestral (diffusers' EulerAncestralDiscreteScheduler)",
  family: 'sigma',
  defaultSpacing: 'linspace',
  clipsByDefault: false,
  evals: () => 1,
  step(c, x, mem) {
    const { t, ab, prev, abPrev } = c.step;
    const s0 = sigmaOf(ab),
      s1 = prev >= 0 ? sigmaOf(abPrev) : 0;
    const up = Math.sqrt((s1 * s1 * (s0 * s0 - s1 * s1)) / (s0 * s0)),
      down = Math.sqrt(Math.max(0, s1 * s1 - up * up));
    const p = c.predict(x, t, ab);
    let xs = ops.add(ops.mul(x, 1 / Math.sqrt(ab)), ops.mul(slope(p, x, ab, c.clip), down - s0));
    if (up > 0) xs = ops.add(xs, ops.mul(c.noise(), up));
    return { x: ops.mul(xs, Math.sqrt(abPrev)), predX0: p.x0, mem };
  },
};
