// The sampling loop over the sampler protocol (samplers/protocol.ts): one module per sampler in samplers/, listed in
// SAMPLER_LIST. The loop lays out the step plan, calls the network through the prediction adapter, draws the noise
// and yields after every step (x_t and the x0 estimate), so a caller can show progress, cancel, save the state and
// resume. Noise for sample i comes from the counter-based generator at (seed, streams.samplerNoise(step, sub),
// sample = sampleStart + i): the same whatever the batch size.
import * as ops from '../engine/ops.js';
import { LoopMemory, type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, DiffusionConfig, GaussianDiffusion } from './gaussian.js';
import { interpretOutput } from './prediction.js';
import { type PlanStep, SPACINGS, type Spacing, stepPlan } from './samplers/plan.js';
import type { Memory, Sampler, StepContext } from './samplers/protocol.js';
import { ancestral } from './samplers/ancestral.js';
import { ddim } from './samplers/ddim.js';
import { langevin } from './samplers/langevin.js';
import { pc } from './samplers/pc.js';
import { dpm2m, dpm3m } from './samplers/dpm-solver.js';
import { plms } from './samplers/plms.js';
import { heun } from './samplers/heun.js';
import { euler } from './samplers/euler.js';
import { eulerAncestral } from './samplers/euler-ancestral.js';

export type { PlanStep, Spacing } from './samplers/plan.js';
export { SPACINGS } from './samplers/plan.js';
export type { Sampler } from './samplers/protocol.js';

/** Every sampler, in the order the CLI and the page list them. Adding one: its file in samplers/ and a line here. */
export const SAMPLER_LIST: Sampler[] = [ancestral, ddim, langevin, pc, dpm2m, dpm3m, plms, heun, euler, eulerAncestral];
export type SamplerName =
  | 'ancestral'
  | 'ddim'
  | 'langevin'
  | 'pc'
  | 'dpm2m'
  | 'dpm3m'
  | 'plms'
  | 'heun'
  | 'euler'
  | 'euler-a';
export const SAMPLERS = SAMPLER_LIST.map((s) => s.name) as SamplerName[];

export function samplerOf(name: string): Sampler {
  const s = SAMPLER_LIST.find((x) => x.name === name);
  if (!s) throw new Error(`sample: unknown sampler "${name}" (expected one of ${SAMPLERS.join(', ')})`);
  return s;
}

export interface SampleOptions {
  sampler: SamplerName;
  /**
   * Reverse steps: a count, counts per section ("10,15,20") or "ddimN" (improved-diffusion's space_timesteps); a count
   * for diffusers' layouts. Defaults to all T.
   */
  steps?: number | string;
  /**
   * The step plan's layout (samplers/plan.ts): respaced (improved-diffusion), diffusers' leading / trailing /
   * linspace, karras or logsnr (ODE solvers). Default: the sampler's own (respaced for the DDPM lineage, diffusers'
   * default for the ODE solvers), respaced when steps is a section list.
   */
  timestepSpacing?: Spacing;
  /** diffusers' steps_offset (leading spacing; default 0) */
  stepsOffset?: number;
  /** ddim and plms under diffusers' spacings: diffusers' set_alpha_to_one (defaults: DDIM true, PNDM false) */
  setAlphaToOne?: boolean;
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
  /** Replaces the noise streams: the noise of step `step`, draw `sub` (to replay another implementation's draws). */
  noise?: (step: number, sub: number, shape: number[]) => Tensor;
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
  /** the plan's layout and model timesteps (a state of another plan of the same length is refused) */
  spacing?: Spacing;
  timesteps?: number[];
  x: Float32Array;
  /** multistep samplers: what they carry between steps (earlier predictions, newest last, and their numbers) */
  history?: Float32Array[];
  numbers?: number[];
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
 * PLMS, Heun, Euler) do not clip, as diffusers' DPMSolverMultistep, PNDM, Heun and Euler schedulers do not.
 */
export function defaultClip(sampler: SamplerName, diffusion: GaussianDiffusion): boolean {
  return samplerOf(sampler).clipsByDefault ? diffusion.config.clipSample : false;
}

/** x_T ~ N(0, I), drawn per sample. */
export function initialNoise(shape: number[], seed: number, sampleStart = 0): Tensor {
  return ops.randn(shape, streams.samplerInit(seed), sampleStart);
}

/** The spacing a request runs with: the asked one, respaced for a section list, else the sampler's own. */
export function spacingOf(
  opts: Pick<SampleOptions, 'sampler' | 'steps' | 'timestepSpacing'>,
  folder?: DiffusionConfig['scheduler'],
): Spacing {
  if (opts.timestepSpacing) {
    if (!SPACINGS.includes(opts.timestepSpacing))
      throw new Error(`sample: unknown spacing "${opts.timestepSpacing}" (expected one of ${SPACINGS.join(', ')})`);
    return opts.timestepSpacing;
  }
  if (typeof opts.steps === 'string' && !/^\s*\d+\s*$/.test(opts.steps)) return 'respaced';
  // the DDPM lineage samples as the paper's code does; the others take the folder's layout, as from_config would
  const own = samplerOf(opts.sampler).defaultSpacing;
  return own === 'respaced' ? own : (folder?.timestepSpacing ?? own);
}

/** The reverse steps of a run, first to last (see samplers/plan.ts). */
export function samplerPlan(
  diffusion: GaussianDiffusion,
  opts: Pick<SampleOptions, 'sampler' | 'steps' | 'timestepSpacing' | 'stepsOffset' | 'setAlphaToOne'>,
): { plan: PlanStep[]; spacing: Spacing } {
  const s = samplerOf(opts.sampler);
  const folder = diffusion.config.scheduler;
  const spacing = spacingOf(opts, folder);
  const plan = stepPlan(diffusion, s.family, {
    steps: opts.steps,
    spacing,
    stepsOffset: opts.stepsOffset ?? folder?.stepsOffset,
    setAlphaToOne: opts.setAlphaToOne ?? folder?.setAlphaToOne ?? s.setAlphaToOne,
  });
  return { plan, spacing };
}

/** Network evaluations of a whole run. */
export function networkEvals(plan: PlanStep[], sampler: SamplerName, langevinSteps?: number): number {
  const s = samplerOf(sampler);
  return plan.reduce((n, _, k) => n + s.evals(plan, k, langevinSteps), 0);
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
  const sampler = samplerOf(opts.sampler);
  const clip = opts.clip ?? defaultClip(opts.sampler, diffusion);
  const { plan, spacing } = samplerPlan(diffusion, opts);
  // a schedule whose alphabar reaches 0 (jsd's, at t = T - 1) has no x0 estimate there: only the full ancestral chain,
  // whose first step does not divide by sqrt(alphabar), can start from it
  if (plan.length && !(plan[0].ab > 0) && !(opts.sampler === 'ancestral' && plan.length === diffusion.numTimesteps))
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
  const timesteps = plan.map((p) => p.t);
  if (
    resume &&
    ((resume.spacing !== undefined && resume.spacing !== spacing) ||
      (resume.timesteps !== undefined && resume.timesteps.join(',') !== timesteps.join(',')))
  )
    throw new Error(
      `sample: saved state (${resume.sampler}, ${resume.total} steps, spacing ${resume.spacing ?? '?'}) was drawn ` +
        `with another step plan than the request (${spacing}${resume.spacing === spacing ? ', other timesteps' : ''}` +
        '); resuming it would mix the two',
    );
  if (resume && ('hPrev' in resume || 'hHistory' in resume))
    throw new Error('sample: the saved state was written by an older ddpm whose DPM-Solver steps differ; start over');
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
  let mem: Memory = {
    tensors: resume?.history?.map((h) => ops.fromArray(h, shape)) ?? [],
    numbers: resume?.numbers ?? [],
  };
  const predict = (xx: Tensor, t: number, ab: number) => {
    const tt = Number.isInteger(t) ? new Int32Array(B).fill(t) : new Float32Array(B).fill(t);
    return interpretOutput(diffusion.config, model(xx, tt), xx, ab, clip);
  };
  const abAt = (t: number) => diffusion.tables.alphasCumprod[t];
  const memory = new LoopMemory();
  for (let done = resume ? resume.done : (opts.start?.step ?? 0); done < total; done++) {
    const c: StepContext = {
      step: plan[done],
      k: done,
      plan,
      config: diffusion.config,
      predict,
      abAt,
      noise: (sub = 0) =>
        opts.noise
          ? opts.noise(done, sub, x.shape)
          : ops.randn(x.shape, streams.samplerNoise(opts.seed, done, sub), sampleStart),
      clip,
      spacing,
      eta: opts.eta ?? 0,
      langevinSteps: opts.langevinSteps,
      snr: opts.snr ?? 0.16,
    };
    // the step's temporaries go when it ends; the state it made goes once the next step has replaced it
    let predX0!: Tensor;
    ({ x, predX0, mem } = memory.step(
      () => noGrad(() => sampler.step(c, x, mem)),
      (r) => [r.x, r.predX0, ...r.mem.tensors],
      (r) => [r.x, ...r.mem.tensors],
    ));
    const [xNow, memNow] = [x, mem];
    const saveState = async (): Promise<SamplerState> => {
      const state: SamplerState = {
        sampler: opts.sampler,
        done: done + 1,
        total,
        shape: [...shape],
        seed: opts.seed,
        sampleStart,
        spacing,
        timesteps,
        x: await xNow.data(),
      };
      if (memNow.tensors.length) state.history = await Promise.all(memNow.tensors.map((h) => h.data()));
      if (memNow.numbers.length) state.numbers = [...memNow.numbers];
      return state;
    };
    yield { step: done + 1, total, t: plan[done].t, x, predX0, saveState };
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

/** One step of a sampler outside a run, at index i of a (respaced) process d, with the given noise. */
function singleStep(
  s: Sampler,
  d: GaussianDiffusion,
  model: DenoiseFn,
  xt: Tensor,
  step: PlanStep,
  clip: boolean,
  noise: Tensor,
  extra: Partial<StepContext> = {},
) {
  const B = xt.shape[0];
  const c: StepContext = {
    step,
    k: 0,
    plan: [step],
    config: d.config,
    predict: (x, t, ab) => interpretOutput(d.config, model(x, new Int32Array(B).fill(t)), x, ab, clip),
    abAt: (t) => d.tables.alphasCumprod[t],
    noise: () => noise,
    clip,
    spacing: 'respaced',
    eta: 0,
    snr: 0.16,
    ...extra,
  };
  return noGrad(() => s.step(c, xt, { tensors: [], numbers: [] }));
}

/** Algorithm 2, one step at index i (all of t the same) of the process d: x_{t-1} = mu_theta(x_t, t) + sigma_t z. */
export function ancestralStep(
  d: GaussianDiffusion,
  model: DenoiseFn,
  xt: Tensor,
  t: Int32Array,
  clip: boolean,
  noise: Tensor,
) {
  const i = t[0];
  const step = {
    t: d.timestepMap[i],
    ab: d.tables.alphasCumprod[i],
    prev: i > 0 ? d.timestepMap[i - 1] : -1,
    abPrev: d.tables.alphasCumprodPrev[i],
    noisy: i > 0,
  };
  const r = singleStep(ancestral, d, model, xt, step, clip, noise);
  return { x: r.x, predX0: r.predX0 };
}

/** DDIM (samplers/ddim.ts), one step of the full process d from model timestep t to prev (-1: the end). */
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
  const step = {
    t,
    ab: d.tables.alphasCumprod[t],
    prev,
    abPrev: prev >= 0 ? d.tables.alphasCumprod[prev] : 1,
    noisy: prev >= 0,
  };
  const r = singleStep(ddim, d, model, xt, step, clip, noise, { eta });
  return { x: r.x, predX0: r.predX0 };
}
