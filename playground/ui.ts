// The playground's form helpers: message areas next to the controls, whole-number fields checked in place, and time
// estimates (a rough guess from the backend until a step has been timed on this page, then the measured rate).
import type { SamplerName } from '../src/browser.js';

/** What each sampler is, in a line (shown under the sampling form). */
export const SAMPLER_INFO: Record<SamplerName, string> = {
  ancestral:
    "the paper's Algorithm 2: draws p(x_{t-1} | x_t) with fresh noise at each step, 1 network call a step; " +
    'best with many steps (100 to 1000)',
  ddim: 'DDIM: the same model without fresh noise, deterministic; good in 20 to 50 steps',
  langevin: 'annealed Langevin dynamics with the model as a score: 4 network calls a step',
  pc: 'predictor-corrector: an ancestral step, then a Langevin corrector step; 2 network calls a step',
  dpm2m: 'DPM-Solver++(2M): a second-order multistep ODE solver; good in 10 to 20 steps',
  dpm3m: 'DPM-Solver++(3M): third order; needs 20 steps or more',
  plms: 'PLMS (pseudo linear multistep): with clip on, the best of these at 10 steps on MNIST',
  heun: "Heun's second-order method (EDM): 2 network calls a step",
  euler: "Euler's method on the probability-flow ODE (diffusers' EulerDiscreteScheduler): 1 network call a step",
  'euler-a': "Euler ancestral: Euler steps with fresh noise (diffusers' EulerAncestralDiscreteScheduler)",
};

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Writes a message into a message area; errors are marked (red, role alert) so that they are seen and read out. */
export function say(id: string, text: string, kind: 'info' | 'error' = 'info'): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('err', kind === 'error');
  el.dataset.kind = text ? kind : '';
}

/** A whole number written in decimal digits, or null (empty, a fraction, an exponent, words). */
export function wholeNumber(s: string | null): number | null {
  if (s === null || !/^\s*-?\d+\s*$/.test(s)) return null;
  const v = Number(s);
  return Number.isSafeInteger(v) ? v : null;
}

/**
 * Reads the whole-number field `id` (its message area is `${id}Msg`): the number when it lies in [min, max], else
 * null with the reason written next to the field. `what` names the field in the message.
 */
export function readField(id: string, min: number, max: number, what: string): number | null {
  const input = $<HTMLInputElement>(id);
  const v = wholeNumber(input.value);
  const ok = v !== null && v >= min && v <= max;
  const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
  input.setAttribute('aria-invalid', String(!ok));
  if (ok) say(`${id}Msg`, '');
  else
    say(
      `${id}Msg`,
      input.value.trim() === ''
        ? `${what}: enter a whole number ${range}`
        : `${what} must be a whole number ${range}; "${input.value}" is not`,
      'error',
    );
  return ok ? v : null;
}

/** "about 40 s", "about 3 min": a duration for people. */
export function fmtDuration(sec: number): string {
  if (!Number.isFinite(sec)) return 'an unknown time';
  if (sec < 1) return 'under a second';
  if (sec < 90) return `about ${Math.round(sec)} s`;
  if (sec < 90 * 60) return `about ${Math.round(sec / 60)} min`;
  return `about ${(sec / 3600).toFixed(1)} h`;
}

/** The backend as the estimates tell them apart: a software WebGPU adapter is far slower than a GPU. */
export function backendKind(b: {
  name: string;
  fallback: boolean;
}): 'webgpu' | 'webgpu (software)' | 'wasm' | 'reference' {
  if (b.name === 'webgpu') return b.fallback ? 'webgpu (software)' : 'webgpu';
  return b.name === 'wasm' ? 'wasm' : 'reference';
}

/**
 * Seconds per network evaluation of one image of the shipped MNIST U-Net (1.1 M parameters, 28x28), and per call, on
 * each backend: rough figures from docs/benchmarks.md and a 2-core development machine, for the time before anything
 * has been timed in this tab.
 */
const PRIOR: Record<ReturnType<typeof backendKind>, { perImage: number; perCall: number; trainStep: number }> = {
  webgpu: { perImage: 0.003, perCall: 0.03, trainStep: 0.1 },
  'webgpu (software)': { perImage: 0.8, perCall: 0.5, trainStep: 4 },
  wasm: { perImage: 0.15, perCall: 0.05, trainStep: 0.3 },
  reference: { perImage: 2.5, perCall: 0, trainStep: 1.7 },
};

/** A model's cost relative to the MNIST U-Net (parameters times pixels). */
export const modelCost = (params: number, size: number) => (params * size * size) / (1_112_801 * 784);

/** Network evaluations of a sampling run. */
export function evalsOf(sampler: SamplerName, steps: number): number {
  if (sampler === 'heun' || sampler === 'pc') return 2 * steps - 1;
  if (sampler === 'plms') return steps + 1;
  return sampler === 'langevin' ? 4 * steps : steps;
}

/**
 * Time estimates for one backend: seconds per image per network evaluation, normalised by the model's cost. A timed
 * run replaces the backend's prior with what this tab measured.
 */
export class Estimator {
  private measured: number | null = null;
  private trainMeasured: number | null = null;
  constructor(readonly kind: ReturnType<typeof backendKind>) {}
  /** Seconds for `evals` network evaluations of a batch of `batch` images of a model of cost `cost`. */
  seconds(evals: number, batch: number, cost: number): number {
    if (this.measured !== null) return evals * batch * cost * this.measured;
    const p = PRIOR[this.kind];
    return evals * (p.perCall + batch * cost * p.perImage);
  }
  /** "about 40 s on wasm (...)": the estimate with where it comes from. */
  describe(sec: number, train = false): string {
    const timed = train ? this.trainMeasured !== null : this.measured !== null;
    const how = timed ? 'timed in this tab' : 'a rough guess until a step is timed';
    return `${fmtDuration(sec)} on ${this.kind} (${how})`;
  }
  /** Records a timed stretch: `sec` for `evals` evaluations of `batch` images. */
  record(sec: number, evals: number, batch: number, cost: number): void {
    if (evals > 0 && sec > 0) this.measured = sec / (evals * batch * cost);
  }
  trainSeconds(steps: number): number {
    return steps * (this.trainMeasured ?? PRIOR[this.kind].trainStep * 1.07);
  }
  recordTrain(secPerStep: number): void {
    if (secPerStep > 0) this.trainMeasured = secPerStep;
  }
}

/**
 * Times a run of `total` steps as it goes: the first step (which on WebGPU also compiles the shaders) is kept apart
 * from the later ones once there are some.
 */
export class StepClock {
  private readonly t0 = performance.now();
  private firstDone = 0;
  private done = 0;
  constructor(readonly total: number) {}
  tick(done: number): void {
    if (done >= 1 && !this.firstDone) this.firstDone = performance.now();
    this.done = done;
  }
  elapsed(): number {
    return (performance.now() - this.t0) / 1000;
  }
  /** Seconds per step, from the steps after the first when there are any. */
  perStep(): number {
    if (this.done >= 2) return (performance.now() - this.firstDone) / 1000 / (this.done - 1);
    return this.done === 1 ? (this.firstDone - this.t0) / 1000 : Number.NaN;
  }
  left(): number {
    return this.perStep() * (this.total - this.done);
  }
}
