// Samplers: ancestral sampling (Algorithm 2), respaced ancestral, DDIM, annealed Langevin dynamics with the eps-model
// as a score, and predictor-corrector. Each is a generator that yields after every step (x_t and the x0 estimate),
// so a caller can show progress, cancel, save the state and resume. Noise for sample i comes from the counter-based
// generator at (seed, streams.samplerNoise(step), sample = sampleStart + i): the same whatever the batch size.
import * as ops from '../engine/ops.js';
import { type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';
import { type TimestepSpacing, diffusersDdimTimesteps, spaceTimesteps } from './schedule.js';

export type SamplerName = 'ancestral' | 'ddim' | 'langevin' | 'pc' | 'dpm2m' | 'dpm3m' | 'plms' | 'heun';
export const SAMPLERS: SamplerName[] = ['ancestral', 'ddim', 'langevin', 'pc', 'dpm2m', 'dpm3m', 'plms', 'heun'];
/** Network evaluations per reverse step (heun: 2, except the last step). */
export const EVALS_PER_STEP: Record<SamplerName, number> = {
  ancestral: 1,
  ddim: 1,
  langevin: 4,
  pc: 2,
  dpm2m: 1,
  dpm3m: 1,
  plms: 1,
  heun: 2,
};

export interface SampleOptions {
  sampler: SamplerName;
  /**
   * Reverse steps: a count, counts per section ("10,15,20") or "ddimN", laid out as improved-diffusion's
   * space_timesteps; defaults to all T.
   */
  steps?: number | string;
  /** DDIM only: lay out `steps` timesteps as diffusers' DDIMScheduler does instead (leading, trailing, linspace). */
  timestepSpacing?: TimestepSpacing;
  seed: number;
  /** Index of the first sample of this batch in the whole run (for batch-independent noise). */
  sampleStart?: number;
  /** DDIM's eta (0: deterministic). */
  eta?: number;
  /** Clip the x0 estimate to [-1, 1] (default: defaultClip, the convention of the sampler's reference code). */
  clip?: boolean;
  /** Langevin / corrector steps per noise level and signal-to-noise ratio for the step size. */
  langevinSteps?: number;
  snr?: number;
}

/** Where a sampling run stands: enough to resume it exactly. */
export interface SamplerState {
  sampler: SamplerName;
  /** Number of reverse steps already taken. */
  done: number;
  total: number;
  shape: number[];
  seed: number;
  sampleStart: number;
  x: Float32Array;
  /** multistep samplers (dpm2m, plms): the earlier predictions they combine, newest last */
  history?: Float32Array[];
  /** dpm2m / dpm3m: the previous steps' lambda differences, newest last */
  hPrev?: number;
  hHistory?: number[];
}

export interface SamplerStep {
  /** Steps completed (1..total). */
  step: number;
  total: number;
  /** Model timestep just processed. */
  t: number;
  x: Tensor;
  predX0: Tensor;
  /** Reads back where the run stands (x and any history), enough to resume it exactly. */
  saveState: () => Promise<SamplerState>;
}

/**
 * Whether a sampler clips the x0 estimate unless told: the samplers of the DDPM lineage (ancestral, DDIM, Langevin,
 * PC) follow the model's clip_sample, as diffusers' DDPMScheduler and DDIMScheduler do; the ODE solvers (DPM-Solver++,
 * PLMS, Heun) do not clip, as diffusers' DPMSolverMultistepScheduler, PNDMScheduler and the EDM sampler do not.
 */
export function defaultClip(sampler: SamplerName, diffusion: GaussianDiffusion): boolean {
  return ['ancestral', 'ddim', 'langevin', 'pc'].includes(sampler) ? diffusion.config.clipSample : false;
}

/** x_T ~ N(0, I), drawn per sample. */
export function initialNoise(shape: number[], seed: number, sampleStart = 0): Tensor {
  return ops.randn(shape, streams.samplerInit(seed), sampleStart);
}

/**
 * The reverse steps of a run, first to last: model timestep t and the timestep prev it moves to (-1: the end, with
 * alphabar = 1), and i, the index of t in the respaced process (for the samplers that use its betas).
 */
export function samplerPlan(
  diffusion: GaussianDiffusion,
  opts: Pick<SampleOptions, 'sampler' | 'steps' | 'timestepSpacing'>,
): { plan: { i: number; t: number; prev: number }[]; proc: GaussianDiffusion } {
  const Tn = diffusion.numTimesteps;
  if (opts.timestepSpacing) {
    if (opts.sampler !== 'ddim')
      throw new Error(
        `sample: timestep spacing "${opts.timestepSpacing}" is diffusers' DDIM layout and applies to the ddim ` +
          `sampler only (got ${opts.sampler})`,
      );
    const n = typeof opts.steps === 'number' ? opts.steps : Number(opts.steps ?? Tn);
    if (!Number.isInteger(n))
      throw new Error(`sample: timestep spacing "${opts.timestepSpacing}" needs a step count, got "${opts.steps}"`);
    return {
      plan: diffusersDdimTimesteps(Tn, n, opts.timestepSpacing).map((p, k) => ({ ...p, i: n - 1 - k })),
      proc: diffusion,
    };
  }
  const use = opts.steps === undefined ? Array.from({ length: Tn }, (_, k) => k) : spaceTimesteps(Tn, opts.steps);
  const proc = use.length === Tn ? diffusion : diffusion.respaced(use);
  const plan = use
    .map((t, i) => ({ i, t: diffusion.timestepMap[t], prev: i > 0 ? diffusion.timestepMap[use[i - 1]] : -1 }))
    .reverse();
  return { plan, proc };
}

/** Runs a sampler; pass `resume` to continue a saved state. */
export function* sample(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  shape: number[],
  opts: SampleOptions,
  resume?: SamplerState,
): Generator<SamplerStep, Tensor> {
  const sampleStart = opts.sampleStart ?? 0;
  const clip = opts.clip ?? defaultClip(opts.sampler, diffusion);
  if (!SAMPLERS.includes(opts.sampler))
    throw new Error(`sample: unknown sampler "${opts.sampler}" (expected one of ${SAMPLERS.join(', ')})`);
  const { plan, proc } = samplerPlan(diffusion, opts);
  const total = plan.length;
  if (resume && (resume.sampler !== opts.sampler || resume.total !== total || resume.seed !== opts.seed))
    throw new Error(
      `sample: saved state (${resume.sampler}, ${resume.total} steps, seed ${resume.seed}) does not match the ` +
        `request (${opts.sampler}, ${total} steps, seed ${opts.seed})`,
    );
  let x = resume ? ops.fromArray(resume.x, resume.shape) : initialNoise(shape, opts.seed, sampleStart);
  const B = shape[0];
  // multistep samplers: earlier x0 (dpm2m) or eps (plms) predictions, newest last
  let history: Tensor[] = resume?.history?.map((h) => ops.fromArray(h, shape)) ?? [];
  let hPrev = resume?.hPrev ?? NaN;
  let hHistory: number[] = resume?.hHistory ?? [];
  for (let done = resume ? resume.done : 0; done < total; done++) {
    const { i, t, prev } = plan[done];
    const tIdx = new Int32Array(B).fill(i); // index into the (respaced) process
    const noise = () => ops.randn(x.shape, streams.samplerNoise(opts.seed, done), sampleStart);
    let predX0!: Tensor;
    noGrad(() => {
      switch (opts.sampler) {
        case 'ancestral':
          ({ x, predX0 } = ancestralStep(proc, model, x, tIdx, clip, noise()));
          break;
        case 'ddim':
          ({ x, predX0 } = ddimStep(diffusion, model, x, t, prev, clip, opts.eta ?? 0, noise()));
          break;
        case 'langevin':
          ({ x, predX0 } = langevinLevel(
            proc,
            model,
            x,
            tIdx,
            opts.langevinSteps ?? 3,
            opts.snr ?? 0.16,
            opts.seed,
            done,
            sampleStart,
            clip,
          ));
          break;
        case 'pc':
          ({ x, predX0 } = ancestralStep(proc, model, x, tIdx, clip, noise()));
          if (i > 0)
            ({ x } = langevinLevel(
              proc,
              model,
              x,
              new Int32Array(B).fill(i - 1),
              opts.langevinSteps ?? 1,
              opts.snr ?? 0.16,
              opts.seed,
              done,
              sampleStart,
              clip,
              true,
            ));
          break;
        case 'dpm2m': {
          const r = dpmSolver2mStep(
            diffusion,
            model,
            x,
            t,
            prev,
            clip,
            history.length ? history[history.length - 1] : null,
            hPrev,
          );
          ({ x, predX0 } = r);
          history = [r.predX0];
          hPrev = r.h;
          break;
        }
        case 'dpm3m': {
          const r = dpmSolver3mStep(diffusion, model, x, t, prev, clip, history, hHistory);
          ({ x, predX0 } = r);
          history = [...history, r.predX0].slice(-2);
          hHistory = [...hHistory, r.h].slice(-2);
          break;
        }
        case 'plms': {
          const r = plmsStep(diffusion, model, x, t, prev, clip, history);
          ({ x, predX0 } = r);
          history = [...history, r.eps].slice(-3);
          break;
        }
        case 'heun':
          ({ x, predX0 } = heunStep(diffusion, model, x, t, prev, clip));
          break;
      }
    });
    const [xNow, hist, hp, hh] = [x, history, hPrev, [...hHistory]];
    const saveState = async (): Promise<SamplerState> => {
      const state: SamplerState = {
        sampler: opts.sampler,
        done: done + 1,
        total,
        shape: [...shape],
        seed: opts.seed,
        sampleStart,
        x: await xNow.data(),
      };
      if (hist.length) state.history = await Promise.all(hist.map((h) => h.data()));
      if (opts.sampler === 'dpm2m') state.hPrev = hp;
      if (opts.sampler === 'dpm3m') state.hHistory = hh;
      return state;
    };
    yield { step: done + 1, total, t, x, predX0, saveState };
  }
  return x;
}

/** Runs a sampler to the end and returns x_0. */
export function sampleAll(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  shape: number[],
  opts: SampleOptions,
  onStep?: (s: SamplerStep) => void,
): Tensor {
  const it = sample(diffusion, model, shape, opts);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    onStep?.(r.value);
  }
}

/** Algorithm 2, one step: x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z = 0 at the last step. */
export function ancestralStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  xt: Tensor,
  t: Int32Array,
  clip: boolean,
  noise: Tensor,
) {
  const out = model(xt, d.modelTimesteps(t));
  const p = d.pMeanVariance(out, xt, t, clip);
  if (t[0] === 0) return { x: p.mean, predX0: p.predX0 };
  const sigma = ops.exp(ops.mul(p.logVariance, 0.5));
  return { x: ops.add(p.mean, ops.mul(sigma, noise)), predX0: p.predX0 };
}

/**
 * DDIM (Song, Meng & Ermon 2021, eq. 12), from model timestep t to prev (-1: the end, alphabar = 1):
 * x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
 * sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev). d is the model's full process.
 */
export function ddimStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  xt: Tensor,
  t: number,
  prev: number,
  clip: boolean,
  eta: number,
  noise: Tensor,
) {
  const tt = new Int32Array(xt.shape[0]).fill(t);
  const out = model(xt, d.modelTimesteps(tt));
  const p = d.pMeanVariance(out, xt, tt, clip);
  const eps = d.predictEpsFromX0(xt, tt, p.predX0);
  const ab = d.tables.alphasCumprod[t],
    abPrev = prev >= 0 ? d.tables.alphasCumprod[prev] : 1;
  const sigma = eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
  let x = ops.add(
    ops.mul(p.predX0, Math.sqrt(abPrev)),
    ops.mul(eps, Math.sqrt(Math.max(0, 1 - abPrev - sigma * sigma))),
  );
  if (prev >= 0 && sigma > 0) x = ops.add(x, ops.mul(noise, sigma));
  return { x, predX0: p.predX0 };
}

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

/**
 * Annealed Langevin dynamics at noise level t (NCSN, Song & Ermon 2019) with the score of section 3.2,
 * grad log q(x_t) ~ -eps_theta(x_t, t) / sqrt(1 - alphabar_t), and the step size set from a target signal-to-noise
 * ratio (Song et al. 2021): x <- x + a s + sqrt(2a) z, a = 2 (snr ||z|| / ||s||)^2 per sample.
 * As a plain sampler (not a corrector) it ends each level by moving to the next level's scale through x0_hat.
 */
export function langevinLevel(
  d: GaussianDiffusion,
  model: DenoiseFn,
  x: Tensor,
  t: Int32Array,
  nSteps: number,
  snr: number,
  seed: number,
  step: number,
  sampleStart: number,
  clip: boolean,
  correctorOnly = false,
) {
  const i = t[0];
  const sqrt1m = d.tables.sqrtOneMinusAlphasCumprod[i];
  for (let k = 0; k < nSteps; k++) {
    const eps = d.splitOutput(model(x, d.modelTimesteps(t)), x.shape[1]).main;
    const score = ops.mul(eps, -1 / sqrt1m);
    const z = ops.randn(x.shape, streams.samplerNoise(seed, step, 1 + k), sampleStart);
    const a = perSampleStepSize(score, z, snr);
    x = ops.add(ops.add(x, ops.mul(score, a)), ops.mul(z, ops.sqrt(ops.mul(a, 2))));
  }
  const out = model(x, d.modelTimesteps(t));
  const p = d.pMeanVariance(out, x, t, clip);
  if (correctorOnly) return { x, predX0: p.predX0 };
  if (i === 0) return { x: p.predX0, predX0: p.predX0 };
  // move to level t-1: x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1}) eps_hat (deterministic, as DDIM eta=0)
  const abPrev = d.tables.alphasCumprodPrev[i];
  const eps = d.predictEpsFromX0(x, t, p.predX0);
  return {
    x: ops.add(ops.mul(p.predX0, Math.sqrt(abPrev)), ops.mul(eps, Math.sqrt(1 - abPrev))),
    predX0: ops.clamp(p.predX0, -1, 1),
  };
}

/** a = 2 (snr ||z|| / ||s||)^2 per sample, as [B, 1, ..., 1]. */
function perSampleStepSize(score: Tensor, z: Tensor, snr: number): Tensor {
  const dims = score.shape.map((_, k) => k).slice(1);
  const gs = ops.clamp(ops.sum(ops.square(score), dims, true), 1e-24, Infinity),
    zs = ops.sum(ops.square(z), dims, true);
  return ops.mul(ops.div(zs, gs), 2 * snr * snr);
}
