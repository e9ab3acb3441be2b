// Bits per dimension: the variational bound of eq. (5), L = L_T + sum_{t>1} L_{t-1} + L_0, term by term, as the
// paper's Tables 1 and 2 report it (the official code's calc_bpd_loop).
import * as T from '../engine/ops.js';
import { Tensor, noGrad } from '../engine/tensor.js';
import type { DenoiseFn, GaussianDiffusion } from '../diffusion/gaussian.js';

export interface BpdResult {
  /** total bound in bits/dim, mean over images */
  total: number;
  prior: number;
  /** L_0: the discretized decoder term at t = 0 */
  decoder: number;
  /** sum of the KL terms t = 1..T-1 */
  kl: number;
  /** per evaluated timestep t: mean term in bits/dim (t = 0 is the decoder) and its weight in the sum */
  terms: { t: number; bpd: number; weight: number }[];
  /**
   * Rate-distortion of the reverse chain used as a code (paper Fig. 5, Table 4), for each evaluated t: the rate after
   * receiving x_t, L_T + sum_{s > t} L_s in bits/dim, and the distortion RMSE(x_0, x0_hat(x_t)) on the 0-255 scale.
   */
  rateDistortion: { t: number; rate: number; rmse: number }[];
  images: number;
}

/** Timesteps below this are always evaluated: their terms are the largest and change fastest with t. */
export const EXACT_HEAD = 100;

/**
 * The timesteps evaluated and the weight of each in the sum over t: all of them when tStride is 1; otherwise every
 * t below EXACT_HEAD (weight 1) and every tStride-th t above, each standing for (T - EXACT_HEAD) / count terms.
 */
export function evaluatedTimesteps(T: number, tStride: number): { t: number; weight: number }[] {
  if (tStride <= 1 || T <= EXACT_HEAD) return Array.from({ length: T }, (_, t) => ({ t, weight: 1 }));
  const tail: number[] = [];
  for (let t = EXACT_HEAD; t < T; t += tStride) tail.push(t);
  const w = (T - EXACT_HEAD) / tail.length;
  return [...Array.from({ length: EXACT_HEAD }, (_, t) => ({ t, weight: 1 })), ...tail.map((t) => ({ t, weight: w }))];
}

/** Terms for one batch x0 [B, C, H, W] on [-1, 1]: for each t, x_t ~ q(x_t|x_0) with noise from (seed, stream t), and the KL or decoder term. */
export function bpdBatch(d: GaussianDiffusion, model: DenoiseFn, x0: Tensor, seed: number, sampleStart: number, tStride = 1) {
  const B = x0.shape[0];
  const ts = evaluatedTimesteps(d.numTimesteps, tStride).map((e) => e.t);
  const perT = new Map<number, Float32Array>();
  const sqErr = new Map<number, number>();
  noGrad(() => {
    for (const t of ts) {
      const tt = new Int32Array(B).fill(t);
      const noise = T.randn(x0.shape, { seed, stream: 10 + t }, sampleStart);
      const xt = d.qSample(x0, tt, noise);
      const out = model(xt, d.modelTimesteps(tt));
      perT.set(t, d.vlbTermsBpd(out, x0, xt, tt, false).storage.slice());
      const x0hat = d.pMeanVariance(out, xt, tt, true).predX0.storage;
      let e = 0;
      for (let i = 0; i < x0hat.length; i++) e += (x0hat[i] - x0.storage[i]) ** 2;
      sqErr.set(t, e);
    }
  });
  const prior = noGrad(() => d.priorBpd(x0)).storage.slice();
  return { ts, perT, prior, sqErr };
}

export function bitsPerDim(d: GaussianDiffusion, model: DenoiseFn, batches: Iterable<{ x0: Tensor; start: number }>, seed: number, tStride = 1, onBatch?: (done: number) => void): BpdResult {
  const sums = new Map<number, number>(), sq = new Map<number, number>();
  let priorSum = 0, n = 0, dims = 0;
  for (const { x0, start } of batches) {
    const r = bpdBatch(d, model, x0, seed, start, tStride);
    dims = x0.size / x0.shape[0];
    for (const t of r.ts) {
      sums.set(t, (sums.get(t) ?? 0) + r.perT.get(t)!.reduce((a, b) => a + b, 0));
      sq.set(t, (sq.get(t) ?? 0) + r.sqErr.get(t)!);
    }
    priorSum += r.prior.reduce((a, b) => a + b, 0);
    n += x0.shape[0];
    onBatch?.(n);
  }
  const weights = new Map(evaluatedTimesteps(d.numTimesteps, tStride).map((e) => [e.t, e.weight]));
  const terms = [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([t, s]) => ({ t, bpd: s / n, weight: weights.get(t)! }));
  const decoder = terms[0].bpd;
  const kl = terms.slice(1).reduce((a, b) => a + b.bpd * b.weight, 0);
  const prior = priorSum / n;
  const rateDistortion: BpdResult['rateDistortion'] = [];
  let sent = 0;
  for (let k = terms.length - 1; k >= 0; k--) {
    const { t } = terms[k];
    rateDistortion.push({ t, rate: prior + sent, rmse: Math.sqrt(sq.get(t)! / (n * dims)) * 127.5 });
    if (t > 0) sent += terms[k].bpd * terms[k].weight;
  }
  return { total: prior + decoder + kl, prior, decoder, kl, terms, rateDistortion, images: n };
}
