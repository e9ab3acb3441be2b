// The ODE solvers of the probability-flow ODE, one step each: DPM-Solver++ 2M and 3M, PLMS and Heun (EDM), on the
// VP coefficients alpha_t = sqrt(alphabar_t), sigma_t = sqrt(1 - alphabar_t). The sampling loop is samplers.ts's.
import * as ops from '../engine/ops.js';
import type { Tensor } from '../engine/tensor.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';

/** The VP coefficients at model timestep t: alpha = sqrt(abar), sigma = sqrt(1 - abar); t = -1 is the end (1, 0). */
function vp(d: GaussianDiffusion, t: number) {
  const ab = t >= 0 ? d.tables.alphasCumprod[t] : 1;
  return { alpha: Math.sqrt(ab), sigma: Math.sqrt(1 - ab), lambda: t >= 0 ? 0.5 * Math.log(ab / (1 - ab)) : Infinity };
}

/** x0 estimate of the model at timestep t (clipped when clip), and its eps. */
function predict(d: GaussianDiffusion, model: DenoiseFn, x: Tensor, t: number, clip: boolean) {
  const tt = new Int32Array(x.shape[0]).fill(t);
  const p = d.pMeanVariance(model(x, d.modelTimesteps(tt)), x, tt, clip);
  return { x0: p.predX0, eps: d.predictEpsFromX0(x, tt, p.predX0) };
}

/**
 * DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2, data prediction, multistep), from timestep t to prev, in
 * lambda = log(alpha / sigma) with h = lambda_prev - lambda_t:
 *   x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (e^{-h} - 1) D,
 *   D = x0_t for the first step, else (1 + 1/(2r)) x0_t - 1/(2r) x0_before with r = h_before / h.
 * The step to the end (prev = -1, sigma = 0) is first order and returns x0_t (lower_order_final).
 */
export function dpmSolver2mStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x: Tensor,
  t: number,
  prev: number,
  clip: boolean,
  x0Before: Tensor | null,
  hBefore: number,
) {
  const { x0 } = predict(d, model, x, t, clip);
  if (prev < 0) return { x: x0, predX0: x0, h: Infinity };
  const cur = vp(d, t),
    nxt = vp(d, prev);
  const h = nxt.lambda - cur.lambda;
  let D = x0;
  if (x0Before && Number.isFinite(hBefore)) {
    const r = hBefore / h;
    D = ops.add(ops.mul(x0, 1 + 1 / (2 * r)), ops.mul(x0Before, -1 / (2 * r)));
  }
  return { x: ops.add(ops.mul(x, nxt.sigma / cur.sigma), ops.mul(D, -nxt.alpha * Math.expm1(-h))), predX0: x0, h };
}

/**
 * DPM-Solver++(3M) (Lu et al. 2022, third-order multistep, data prediction; the update of diffusers'
 * multistep_dpm_solver_third_order_update): with m0, m1, m2 the newest x0 predictions, h = lambda_prev - lambda_t,
 * r0 = h_0 / h, r1 = h_1 / h (the earlier steps' differences), D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1,
 * D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1):
 *   x_prev = (sigma_prev / sigma_t) x - alpha_prev (e^{-h} - 1) m0 + alpha_prev ((e^{-h} - 1) / h + 1) D1
 *            - alpha_prev ((e^{-h} - 1 + h) / h^2 - 1/2) D2.
 * Lower orders while fewer predictions are known (the first step is first order, the second is 2M), and the step to
 * the end (sigma = 0) returns m0.
 */
export function dpmSolver3mStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x: Tensor,
  t: number,
  prev: number,
  clip: boolean,
  x0Before: Tensor[],
  hBefore: number[],
) {
  const { x0 } = predict(d, model, x, t, clip);
  if (prev < 0) return { x: x0, predX0: x0, h: Infinity };
  const cur = vp(d, t),
    nxt = vp(d, prev);
  const h = nxt.lambda - cur.lambda;
  const em1 = Math.expm1(-h);
  let out = ops.add(ops.mul(x, nxt.sigma / cur.sigma), ops.mul(x0, -nxt.alpha * em1));
  if (x0Before.length === 1 || (x0Before.length >= 2 && !Number.isFinite(hBefore[0]))) {
    // second order (2M): - alpha (e^{-h} - 1) / 2 * D1, D1 = (m0 - m1) / r0
    const r0 = hBefore[hBefore.length - 1] / h;
    out = ops.add(out, ops.mul(ops.sub(x0, x0Before[x0Before.length - 1]), (-0.5 * nxt.alpha * em1) / r0));
  } else if (x0Before.length >= 2) {
    const [m2, m1] = x0Before.slice(-2);
    const r0 = hBefore[hBefore.length - 1] / h,
      r1 = hBefore[hBefore.length - 2] / h;
    const d10 = ops.mul(ops.sub(x0, m1), 1 / r0),
      d11 = ops.mul(ops.sub(m1, m2), 1 / r1);
    const diff = ops.sub(d10, d11);
    const D1 = ops.add(d10, ops.mul(diff, r0 / (r0 + r1))),
      D2 = ops.mul(diff, 1 / (r0 + r1));
    out = ops.add(out, ops.mul(D1, nxt.alpha * (em1 / h + 1)));
    out = ops.add(out, ops.mul(D2, -nxt.alpha * ((em1 + h) / (h * h) - 0.5)));
  }
  return { x: out, predX0: x0, h };
}

/**
 * PLMS (Liu et al. 2022, pseudo linear multistep): the DDIM step (eta 0) taken with the Adams-Bashforth combination
 * of the current and up to three earlier eps predictions, (55 e0 - 59 e1 + 37 e2 - 9 e3) / 24, with the lower-order
 * formulas while fewer are known (e0; (3 e0 - e1) / 2; (23 e0 - 16 e1 + 5 e2) / 12).
 */
export function plmsStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x: Tensor,
  t: number,
  prev: number,
  clip: boolean,
  epsBefore: Tensor[],
) {
  const { x0, eps } = predict(d, model, x, t, clip);
  const e = [eps, ...[...epsBefore].reverse()]; // e[0] newest
  const COEF = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]][
    Math.min(3, e.length - 1)
  ];
  let ePrime = ops.mul(e[0], COEF[0]);
  for (let k = 1; k < COEF.length; k++) ePrime = ops.add(ePrime, ops.mul(e[k], COEF[k]));
  const tt = new Int32Array(x.shape[0]).fill(t);
  let x0p = d.predictX0FromEps(x, tt, ePrime);
  if (clip) x0p = ops.clamp(x0p, -1, 1);
  const nxt = vp(d, prev);
  const epsUsed = clip ? d.predictEpsFromX0(x, tt, x0p) : ePrime;
  return { x: ops.add(ops.mul(x0p, nxt.alpha), ops.mul(epsUsed, nxt.sigma)), predX0: x0, eps };
}

/**
 * Heun's second-order method on the probability-flow ODE in the variables of EDM (Karras et al. 2022, Algorithm 1,
 * deterministic): x~ = x / alpha, sigma~ = sigma / alpha, dx~/dsigma~ = (x~ - x0(x~)) / sigma~; an Euler step from t to
 * prev, corrected by the slope at prev (one more network evaluation) unless prev is the end (sigma~ = 0).
 */
export function heunStep(d: GaussianDiffusion, model: DenoiseFn, x: Tensor, t: number, prev: number, clip: boolean) {
  const cur = vp(d, t),
    nxt = vp(d, prev);
  const s0 = cur.sigma / cur.alpha,
    s1 = nxt.sigma / nxt.alpha;
  const xs = ops.mul(x, 1 / cur.alpha);
  const { x0 } = predict(d, model, x, t, clip);
  const d0 = ops.mul(ops.sub(xs, x0), 1 / s0);
  let xsNext = ops.add(xs, ops.mul(d0, s1 - s0));
  if (prev >= 0) {
    const { x0: x0n } = predict(d, model, ops.mul(xsNext, nxt.alpha), prev, clip);
    const d1 = ops.mul(ops.sub(xsNext, x0n), 1 / s1);
    xsNext = ops.add(xs, ops.mul(ops.add(d0, d1), (s1 - s0) / 2));
  }
  return { x: ops.mul(xsNext, nxt.alpha), predX0: x0 };
}
