// DPM-Solver++ (Lu et al. 2022), multistep, data prediction: 2M (midpoint) and 3M, stepped as diffusers'
// DPMSolverMultistepScheduler (algorithm_type dpmsolver++, lower_order_final, final sigma 0): with
// lambda = log(alpha / sigma), alpha = sqrt(a), sigma = sqrt(1 - a), h = lambda_next - lambda_now and m0, m1, m2 the
// newest x0-hats,
//   first order  x' = (sigma' / sigma) x - alpha' (e^-h - 1) m0
//   2M           ... - alpha' (e^-h - 1) / 2 * D1,  D1 = (m0 - m1) / r0, r0 = h_0 / h
//   3M           ... + alpha' ((e^-h - 1) / h + 1) D1 - alpha' ((e^-h - 1 + h) / h^2 - 1/2) D2 (D1, D2 below).
// The first steps take the orders they have history for; the step to sigma = 0 is first order (it returns m0), and
// with fewer than 15 steps the one before it is at most second order.
import * as ops from '../../engine/ops.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Memory, Sampler, StepContext } from './protocol.js';

const lambdaOf = (ab: number) => 0.5 * Math.log(ab / (1 - ab));

function dpmStep(order: 2 | 3, c: StepContext, x: Tensor, mem: Memory) {
  const { t, ab, abPrev } = c.step;
  const m0 = c.predict(x, t, ab).x0;
  const lam = lambdaOf(ab);
  // newest last: the x0-hats and lambdas of the earlier steps (at most order - 1 of each)
  const next: Memory = {
    tensors: [...mem.tensors, m0].slice(-(order - 1)),
    numbers: [...mem.numbers, lam].slice(-order),
  };
  const n = c.plan.length;
  if (abPrev >= 1) return { x: m0, predX0: m0, mem: next };
  const lowerSecond = c.k === n - 2 && n < 15;
  const have = mem.tensors.length;
  const use = have === 0 ? 1 : order === 2 || have < 2 || lowerSecond ? 2 : 3;
  const alpha = Math.sqrt(abPrev),
    sigmaRatio = Math.sqrt((1 - abPrev) / (1 - ab));
  const h = lambdaOf(abPrev) - lam,
    em1 = Math.expm1(-h);
  let out = ops.add(ops.mul(x, sigmaRatio), ops.mul(m0, -alpha * em1));
  if (use === 2) {
    const r0 = (lam - mem.numbers[mem.numbers.length - 1]) / h;
    out = ops.add(out, ops.mul(ops.sub(m0, mem.tensors[have - 1]), (-0.5 * alpha * em1) / r0));
  } else if (use === 3) {
    const [m2, m1] = mem.tensors.slice(-2),
      [l2, l1] = mem.numbers.slice(-2);
    const r0 = (lam - l1) / h,
      r1 = (l1 - l2) / h;
    const d10 = ops.mul(ops.sub(m0, m1), 1 / r0),
      d11 = ops.mul(ops.sub(m1, m2), 1 / r1);
    const diff = ops.sub(d10, d11);
    const D1 = ops.add(d10, ops.mul(diff, r0 / (r0 + r1))),
      D2 = ops.mul(diff, 1 / (r0 + r1));
    out = ops.add(out, ops.mul(D1, alpha * (em1 / h + 1)));
    out = ops.add(out, ops.mul(D2, -alpha * ((em1 + h) / (h * h) - 0.5)));
  }
  return { x: out, predX0: m0, mem: next };
}

export const dpm2m: Sampler = {
  name: 'dpm2m',
  about: "DPM-Solver++ 2M (diffusers' DPMSolverMultistepScheduler, solver_order 2)",
  family: 'dpm',
  defaultSpacing: 'linspace',
  clipsByDefault: false,
  evals: () => 1,
  step: (c, x, mem) => dpmStep(2, c, x, mem),
};

export const dpm3m: Sampler = {
  name: 'dpm3m',
  about: "DPM-Solver++ 3M (diffusers' DPMSolverMultistepScheduler, solver_order 3)",
  family: 'dpm',
  defaultSpacing: 'linspace',
  clipsByDefault: false,
  evals: () => 1,
  step: (c, x, mem) => dpmStep(3, c, x, mem),
};
