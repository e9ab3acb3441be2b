// Step plans: which points of the process a sampler visits. Each reverse step goes from model timestep t (alphabar
// ab) to prev (alphabar abPrev; prev = -1 is the end). The layouts are improved-diffusion's respacing (the default of
// the DDPM-lineage samplers, as the paper's code samples) and the timestep_spacing of diffusers' schedulers (leading,
// trailing, linspace; laid out as each scheduler family lays them out in diffusers v0.27), Karras sigmas (Karras et
// al. 2022, rho = 7) and uniform log-SNR (Lu et al. 2022) for the ODE solvers.
import type { GaussianDiffusion } from '../gaussian.js';
import { roundHalfEven, spaceTimesteps } from '../schedule.js';

export interface PlanStep {
  /** model timestep of this step (fractional for the sigma-family linspace and Karras layouts) */
  t: number;
  ab: number;
  /** the timestep it moves to (-1: the end) and its alphabar */
  prev: number;
  abPrev: number;
  /** ancestral sampling adds noise at this step (improved-diffusion: all but the last; diffusers: t > 0) */
  noisy: boolean;
}

export type Spacing = 'respaced' | 'leading' | 'trailing' | 'linspace' | 'karras' | 'logsnr';
export const SPACINGS: Spacing[] = ['respaced', 'leading', 'trailing', 'linspace', 'karras', 'logsnr'];

/**
 * How a sampler's family lays diffusers' spacings out: 'ddim' as DDIMScheduler / DDPMScheduler / PNDMScheduler (n
 * timesteps, each stepping T / n down, to a final alphabar), 'dpm' as DPMSolverMultistepScheduler (n of n + 1 points,
 * then sigma = 0), 'sigma' as EulerDiscrete / EulerAncestralDiscrete / HeunDiscrete (n points, fractional under
 * linspace and Karras, then sigma = 0).
 */
export type PlanFamily = 'ddim' | 'dpm' | 'sigma';

export interface PlanOptions {
  /** improved-diffusion: a count, counts per section ("10,15,20") or "ddimN"; diffusers' layouts: a count */
  steps?: number | string;
  spacing: Spacing;
  /** diffusers' steps_offset (leading spacing) */
  stepsOffset?: number;
  /** ddim family: the alphabar after the last step is 1 (diffusers' set_alpha_to_one), else alphabar_0 */
  setAlphaToOne?: boolean;
}

const abOf = (sigma: number) => 1 / (1 + sigma * sigma);

/**
 * The reverse steps of a run, first to last. Refuses a plan that a sampler cannot run: a timestep outside [0, T), or a
 * step that does not move to a strictly higher alphabar (a repeated timestep, as the DPM-Solver layouts give with
 * steps = T; its zero-length step divides by zero). The one exception is the DDIM family's last step from t = 0 to a
 * final alphabar of alphabar_0 (set_alpha_to_one false, PNDM's default): a no-op step, as in diffusers.
 */
export function stepPlan(d: GaussianDiffusion, family: PlanFamily, o: PlanOptions): PlanStep[] {
  const plan = layout(d, family, o);
  checkPlan(plan, d.numTimesteps, family, o);
  return plan;
}

const FAMILY_NAMES: Record<PlanFamily, string> = {
  ddim: 'ancestral, ddim, langevin, pc, plms',
  dpm: 'dpm2m, dpm3m',
  sigma: 'heun, euler, euler-a',
};

function checkPlan(plan: PlanStep[], T: number, family: PlanFamily, o: PlanOptions): void {
  const what = `--steps ${o.steps ?? T} --timestep-spacing ${o.spacing}`;
  const inRange = (t: number, lo: number) => Number.isFinite(t) && t >= lo && t < T;
  plan.forEach((p, k) => {
    // (respaced timesteps are model timesteps, in range by construction)
    if (o.spacing !== 'respaced' && (!inRange(p.t, 0) || !inRange(p.prev, -1))) {
      const offset =
        o.spacing === 'leading' && o.stepsOffset
          ? ` and steps_offset ${o.stepsOffset} (the model folder's scheduler_config.json)`
          : '';
      throw new Error(
        `sample: ${what}${offset} put timestep ${inRange(p.t, 0) ? p.prev : p.t} outside [0, ${T}); use fewer ` +
          'steps or another spacing',
      );
    }
    const noop = family === 'ddim' && k === plan.length - 1 && p.t === 0 && p.abPrev === p.ab;
    if (!(p.abPrev > p.ab) && !noop)
      throw new Error(
        `sample: ${what} lays out a step of zero length (step ${k + 1} of ${plan.length}, timestep ${p.t} to ` +
          `${p.prev < 0 ? 'the end' : p.prev}) for ${FAMILY_NAMES[family]}: every step must move to a less noisy ` +
          `point; use fewer steps (at most ${T - 1}) or another spacing`,
      );
  });
}

function layout(d: GaussianDiffusion, family: PlanFamily, o: PlanOptions): PlanStep[] {
  const abar = d.tables.alphasCumprod,
    T = d.numTimesteps;
  if (o.spacing === 'respaced') {
    let use: number[];
    try {
      use = o.steps === undefined ? Array.from({ length: T }, (_, k) => k) : spaceTimesteps(T, o.steps);
    } catch (e) {
      throw new Error(`sample: --steps ${(e as Error).message}`);
    }
    const ts = use.map((t) => d.timestepMap[t]).reverse();
    return ts.map((t, k) => {
      const prev = k + 1 < ts.length ? ts[k + 1] : -1;
      return { t, ab: abar[t], prev, abPrev: prev >= 0 ? abar[prev] : 1, noisy: prev >= 0 };
    });
  }
  if (family === 'ddim' && (o.spacing === 'karras' || o.spacing === 'logsnr'))
    throw new Error(
      `sample: the "${o.spacing}" spacing is for the ODE solvers (dpm2m, dpm3m, heun, euler, euler-a); ` +
        'the DDPM-lineage samplers take respaced, leading, trailing or linspace',
    );
  const n = typeof o.steps === 'number' ? o.steps : Number(o.steps ?? T);
  if (!Number.isInteger(n) || n < 1 || n > T)
    throw new Error(
      `sample: --steps "${o.steps}": --timestep-spacing "${o.spacing}" needs a step count in [1, ${T}] (section ` +
        'lists and ddimN are for --timestep-spacing respaced)',
    );
  const offset = o.stepsOffset ?? 0;
  if (family === 'ddim') {
    const ratio = Math.floor(T / n);
    const final = o.setAlphaToOne === false ? abar[0] : 1;
    return ddimTimesteps(T, n, o.spacing, offset).map((t) => {
      const prev = t - ratio >= 0 ? t - ratio : -1;
      return { t, ab: abar[t], prev, abPrev: prev >= 0 ? abar[prev] : final, noisy: t > 0 };
    });
  }
  // the ODE families step through sigma = sqrt((1 - ab) / ab) and end at sigma = 0; diffusers computes its sigma
  // table in float32, where 1 - ab loses digits near t = 0 (sigma_min, and so Karras' sigmas, move by ~1e-4)
  const f = Math.fround;
  const sigmas = Array.from(abar, (a) => Math.sqrt(f(f(1 - f(a)) / f(a))));
  let ts: number[], sig: number[];
  if (o.spacing === 'karras' || o.spacing === 'logsnr') {
    const lo = sigmas[0],
      hi = sigmas[T - 1];
    const ramp = (k: number) => (n === 1 ? 0 : k / (n - 1));
    sig =
      o.spacing === 'karras'
        ? Array.from({ length: n }, (_, k) => (hi ** (1 / 7) + ramp(k) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7)
        : Array.from({ length: n }, (_, k) => Math.exp(Math.log(hi) + ramp(k) * (Math.log(lo) - Math.log(hi))));
    ts = sig.map((s) => sigmaToT(s, sigmas));
    if (family === 'dpm') ts = ts.map(roundHalfEven);
  } else {
    ts = family === 'dpm' ? dpmTimesteps(T, n, o.spacing, offset) : sigmaTimesteps(T, n, o.spacing, offset);
    sig = ts.map((t) => interp(t, sigmas));
  }
  return ts.map((t, k) => {
    const last = k === ts.length - 1;
    return { t, ab: abOf(sig[k]), prev: last ? -1 : ts[k + 1], abPrev: last ? 1 : abOf(sig[k + 1]), noisy: !last };
  });
}

/** DDIMScheduler.set_timesteps (and DDPMScheduler's, PNDMScheduler's), descending. */
export function ddimTimesteps(T: number, n: number, spacing: Spacing, offset = 0): number[] {
  if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, k) => k * ratio + offset).reverse();
  }
  if (spacing === 'trailing') return trailing(T, n);
  // np.linspace(0, T - 1, n).round()
  return Array.from({ length: n }, (_, k) => roundHalfEven(lin(0, T - 1, n, k))).reverse();
}

/** DPMSolverMultistepScheduler.set_timesteps: n of n + 1 points, the one at 0 dropped. */
function dpmTimesteps(T: number, n: number, spacing: Spacing, offset: number): number[] {
  if (spacing === 'leading') {
    const ratio = Math.floor(T / (n + 1));
    return Array.from({ length: n + 1 }, (_, k) => k * ratio + offset)
      .reverse()
      .slice(0, n);
  }
  if (spacing === 'trailing') return trailing(T, n);
  return Array.from({ length: n + 1 }, (_, k) => roundHalfEven(lin(0, T - 1, n + 1, k)))
    .reverse()
    .slice(0, n);
}

/** EulerDiscreteScheduler.set_timesteps (Heun's, EulerAncestral's): linspace stays fractional (float32). */
function sigmaTimesteps(T: number, n: number, spacing: Spacing, offset: number): number[] {
  if (spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, k) => k * ratio + offset).reverse();
  }
  if (spacing === 'trailing') return trailing(T, n);
  return Array.from({ length: n }, (_, k) => Math.fround(lin(0, T - 1, n, k))).reverse();
}

/**
 * np.arange(T, 0, -T / n).round() - 1, its first n: numpy's arange takes ceil(T / (T / n)) points, one more (ending at
 * timestep -1) where that quotient rounds above n (n = 61, 103, 121, ... of T = 1000).
 */
function trailing(T: number, n: number): number[] {
  const step = T / n;
  return Array.from({ length: n }, (_, k) => roundHalfEven(T - k * step) - 1);
}

/** np.linspace(a, b, n)[k] */
function lin(a: number, b: number, n: number, k: number): number {
  return n === 1 ? a : k === n - 1 ? b : a + k * ((b - a) / (n - 1));
}

/** np.interp(t, arange(len), table) */
function interp(t: number, table: number[]): number {
  const i = Math.min(Math.max(Math.floor(t), 0), table.length - 1),
    j = Math.min(i + 1, table.length - 1);
  return table[i] + (t - i) * (table[j] - table[i]);
}

/** diffusers' _sigma_to_t: the timestep whose sigma this is, interpolating log sigma between neighbours. */
function sigmaToT(sigma: number, sigmas: number[]): number {
  const ls = Math.log(Math.max(sigma, 1e-10)),
    logs = sigmas.map(Math.log);
  let low = 0;
  for (let i = 0; i < logs.length; i++) if (ls - logs[i] >= 0) low = i;
  low = Math.min(low, logs.length - 2);
  const w = Math.min(1, Math.max(0, (logs[low] - ls) / (logs[low] - logs[low + 1])));
  return (1 - w) * low + w * (low + 1);
}
