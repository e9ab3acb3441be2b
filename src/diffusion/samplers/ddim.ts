// DDIM (Song, Meng & Ermon 2021, eq. 12): x_prev = sqrt(a') x0-hat + sqrt(1 - a' - s^2) eps-hat + s z with
// s = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a'). eps-hat: improved-diffusion's ddim_sample re-derives it from the
// (clipped) x0-hat; diffusers' DDIMScheduler.step (use_clipped_model_output false, its default) keeps the model's own.
// The respaced plan follows the first, diffusers' spacings the second; they differ only where x0-hat is clipped.
import * as ops from '../../engine/ops.js';
import { epsFromX0 } from '../prediction.js';
import type { Sampler } from './protocol.js';

export const ddim: Sampler = {
  name: 'ddim',
  about: "DDIM, eta 0 deterministic (diffusers' DDIMScheduler under its spacings)",
  family: 'ddim',
  defaultSpacing: 'respaced',
  clipsByDefault: true,
  setAlphaToOne: true,
  evals: () => 1,
  step(c, x, mem) {
    const { t, ab, abPrev } = c.step;
    const p = c.predict(x, t, ab);
    const eps = c.clip && c.spacing === 'respaced' ? epsFromX0(x, p.x0, ab) : p.eps;
    const s = c.eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(Math.max(0, 1 - ab / abPrev));
    let out = ops.add(ops.mul(p.x0, Math.sqrt(abPrev)), ops.mul(eps, Math.sqrt(Math.max(0, 1 - abPrev - s * s))));
    if (s > 0) out = ops.add(out, ops.mul(c.noise(), s));
    return { x: out, predX0: p.x0, mem };
  },
};
