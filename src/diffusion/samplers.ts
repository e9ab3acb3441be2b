// Samplers: ancestral sampling (Algorithm 2), respaced ancestral, DDIM, annealed Langevin dynamics with the eps-model
// as a score, and predictor-corrector. Each is a generator that yields after every step (x_t and the x0 estimate),
// so a caller can show progress, cancel, save the state and resume. Noise for sample i comes from the counter-based
// generator at (seed, streams.samplerNoise(step), sample = sampleStart + i): the same whatever the batch size.
import * as ops from '../engine/ops.js';
import { type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';
import { type TimestepSpacing, diffusersDdimTimesteps, spaceTimesteps } from './schedule.js';
import { dpmSolver2mStep, dpmSolver3mStep, heunStep, plmsStep } from './ode-solvers.js';

export { dpmSolver2mStep, dpmSolver3mStep, heunStep, plmsStep } from './ode-solvers.js';

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
  /** Start at step `step` of the plan from x instead of from x_T (image-to-image: see sdedit.ts). */
  start?: { step: number; x: Tensor };
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
  // a schedule whose alphabar reaches 0 (jsd's, at t = T - 1) has no x0 estimate there: only the full ancestral chain,
  // whose first step does not divide by sqrt(alphabar), can start from it
  const top = plan.length ? diffusion.tables.alphasCumprod[plan[0].t] : 1;
  if (!(top > 0) && !(opts.sampler === 'ancestral' && plan.length === diffusion.numTimesteps))
    throw new Error(
      `sample: alphabar is 0 at t = ${plan[0].t} (the ${diffusion.config.schedule} schedule), so the ${opts.sampler} ` +
        'sampler has no x0 estimate to start from; use the full ancestral chain (--sampler ancestral without --steps)',
    );
  const total = plan.length;
  if (resume && (resume.sampler !== opts.sampler || resume.total !== total || resume.seed !== opts.seed))
    throw new Error(
      `sample: saved state (${resume.sampler}, ${resume.total} steps, seed ${resume.seed}) does not match the ` +
        `request (${opts.sampler}, ${total} steps, seed ${opts.seed})`,
    );
  if (
    opts.start &&
    (resume || !(Number.isInteger(opts.start.step) && opts.start.step >= 0 && opts.start.step <= total))
  )
    throw new Error(
      `sample: start step ${opts.start.step} must be in [0, ${total}] and cannot be combined with resume`,
    );
  let x = resume
    ? ops.fromArray(resume.x, resume.shape)
    : opts.start
      ? opts.start.x
      : initialNoise(shape, opts.seed, sampleStart);
  const B = shape[0];
  // multistep samplers: earlier x0 (dpm2m) or eps (plms) predictions, newest last
  let history: Tensor[] = resume?.history?.map((h) => ops.fromArray(h, shape)) ?? [];
  let hPrev = resume?.hPrev ?? NaN;
  let hHistory: number[] = resume?.hHistory ?? [];
  for (let done = resume ? resume.done : (opts.start?.step ?? 0); done < total; done++) {
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
          // diffusers' timestep layouts come with diffusers' step (see ddimStep)
          ({ x, predX0 } = ddimStep(
            diffusion,
            model,
            x,
            t,
            prev,
            clip,
            opts.eta ?? 0,
            noise(),
            !!opts.timestepSpacing,
          ));
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
 * eps_hat: improved-diffusion's ddim_sample re-derives it from the (clipped) x0_hat; diffusers' DDIMScheduler.step
 * (use_clipped_model_output false, the default) keeps the model's own eps (`modelEps`). The two differ only where
 * x0_hat is clipped.
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
  modelEps = false,
) {
  const tt = new Int32Array(xt.shape[0]).fill(t);
  const out = model(xt, d.modelTimesteps(tt));
  const p = d.pMeanVariance(out, xt, tt, clip);
  // diffusers' eps: the model's own (pMeanVariance's eps for an eps model; from the unclipped x0 otherwise)
  const diffusersEps = () =>
    d.config.prediction === 'eps' ? p.eps : d.predictEpsFromX0(xt, tt, d.pMeanVariance(out, xt, tt, false).predX0);
  const eps = modelEps && clip ? diffusersEps() : d.predictEpsFromX0(xt, tt, p.predX0);
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
