// Predictor-corrector (Song et al. 2021): the ancestral step as predictor, then Langevin dynamics at the level it
// reached as corrector (1 step per level unless told), but after the last step.
import { ancestral } from './ancestral.js';
import { langevinDynamics } from './langevin.js';
import type { Sampler } from './protocol.js';

export const pc: Sampler = {
  name: 'pc',
  about: 'predictor-corrector: the ancestral step, then Langevin correction (1 step per level unless told)',
  family: 'ddim',
  defaultSpacing: 'respaced',
  clipsByDefault: true,
  evals: (plan, k, L) => 1 + (plan[k].prev >= 0 ? (L ?? 1) : 0),
  step(c, x, mem) {
    const r = ancestral.step(c, x, mem);
    const { prev, abPrev } = c.step;
    if (prev < 0) return r;
    return { x: langevinDynamics(c, r.x, prev, abPrev, c.langevinSteps ?? 1), predX0: r.predX0, mem };
  },
};
