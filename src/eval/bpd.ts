// Bits per dimension: the variational bound of eq. (5), L = L_T + sum_{t>1} L_{t-1} + L_0, term by term, as the
// paper's Tables 1 and 2 report it (the official code's calc_bpd_loop).
import * as ops from '../engine/ops.js';
import { type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
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
  /** whether the x0 estimate was clipped to [-1, 1] (the official default) */
  clip: boolean;
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

export interface BpdOptions {
  seed: number;
  /** above EXACT_HEAD, evaluate every tStride-th t (1: all T terms) */
  tStride?: number;
  /**
   * Clip the x0 estimate to [-1, 1] in the KL and decoder terms: the default of the official calc_bpd_loop
   * (clip_denoised=True, improved-diffusion gaussian_diffusion.py), used for the paper's tables. false gives the
   * unclipped bound.
   */
  clip?: boolean;
  /** called after each evaluated t of a batch: (images done before this batch, t's done in it, t's per batch) */
  onProgress?: (imagesDone: number, tDone: number, tTotal: number) => void;
}

/**
 * Terms for one batch x0 [B, C, H, W] on [-1, 1]: for each t, x_t ~ q(x_t|x_0) with noise from streams.bpdNoise(seed,
 * t),
 * the KL or decoder term, and the squared error of the (clipped when clip) x0 estimate.
 */
export async function bpdBatch(d: GaussianDiffusion, model: DenoiseFn, x0: Tensor, sampleStart: number, o: BpdOptions) {
  const B = x0.shape[0];
  const clip = o.clip ?? true;
  const ts = evaluatedTimesteps(d.numTimesteps, o.tStride ?? 1).map((e) => e.t);
  const perT = new Map<number, Float32Array>();
  const sqErr = new Map<number, number>();
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    const { terms, err } = noGrad(() => {
      const tt = new Int32Array(B).fill(t);
      const noise = ops.randn(x0.shape, streams.bpdNoise(o.seed, t), sampleStart);
      const xt = d.qSample(x0, tt, noise);
      const out = model(xt, d.modelTimesteps(tt));
      const x0hat = d.pMeanVariance(out, xt, tt, clip).predX0;
      return { terms: d.vlbTermsBpd(out, x0, xt, tt, clip), err: ops.sum(ops.square(ops.sub(x0hat, x0))) };
    });
    perT.set(t, await terms.data());
    sqErr.set(t, (await err.data())[0]);
    o.onProgress?.(sampleStart, k + 1, ts.length);
  }
  const prior = await noGrad(() => d.priorBpd(x0)).data();
  return { ts, perT, prior, sqErr };
}

export async function bitsPerDim(
  d: GaussianDiffusion,
  model: DenoiseFn,
  batches: Iterable<{ x0: Tensor; start: number; model?: DenoiseFn }>,
  o: BpdOptions,
): Promise<BpdResult> {
  const tStride = o.tStride ?? 1;
  const sums = new Map<number, number>(),
    sq = new Map<number, number>();
  let priorSum = 0,
    n = 0,
    dims = 0;
  // a batch may bring its own model function (a class-conditional model with the batch's labels)
  for (const { x0, start, model: own } of batches) {
    const r = await bpdBatch(d, own ?? model, x0, start, o);
    dims = x0.size / x0.shape[0];
    for (const t of r.ts) {
      sums.set(t, (sums.get(t) ?? 0) + r.perT.get(t)!.reduce((a, b) => a + b, 0));
      sq.set(t, (sq.get(t) ?? 0) + r.sqErr.get(t)!);
    }
    priorSum += r.prior.reduce((a, b) => a + b, 0);
    n += x0.shape[0];
  }
  const weights = new Map(evaluatedTimesteps(d.numTimesteps, tStride).map((e) => [e.t, e.weight]));
  const terms = [...sums.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([t, s]) => ({ t, bpd: s / n, weight: weights.get(t)! }));
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
  return { total: prior + decoder + kl, prior, decoder, kl, terms, rateDistortion, images: n, clip: o.clip ?? true };
}
