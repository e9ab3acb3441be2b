// The sampler protocol. A sampler is one module: the family whose step plans it takes, its defaults, the network
// evaluations each step costs, and one reverse step. The driver (../samplers.ts) owns the loop, the noise streams, the
// model calls and saving / resuming; a sampler sees the network only through `predict` (the prediction adapter), so
// every sampler works with eps, x0 and v models alike. Adding a sampler: its own file here, a line in ../samplers.ts.
import type { Tensor } from '../../engine/tensor.js';
import type { DiffusionConfig } from '../gaussian.js';
import type { ModelPrediction } from '../prediction.js';
import type { PlanFamily, PlanStep, Spacing } from './plan.js';

export interface StepContext {
  /** the step to take and its place in the plan */
  step: PlanStep;
  k: number;
  plan: PlanStep[];
  config: DiffusionConfig;
  /** the network on x at model timestep t (alphabar ab), read by the prediction adapter (x0 clipped when clip is on) */
  predict(x: Tensor, t: number, ab: number): ModelPrediction;
  /** alphabar at an integer model timestep of the model's process */
  abAt(t: number): number;
  /** standard normal noise of this step; sub numbers several draws within one step */
  noise(sub?: number): Tensor;
  clip: boolean;
  /** the plan's layout: 'respaced' follows improved-diffusion's conventions, the others diffusers' */
  spacing: Spacing;
  eta: number;
  /** Langevin / corrector steps per level (the sampler's own default when undefined) and the target SNR */
  langevinSteps?: number;
  snr: number;
}

/** What a multistep sampler carries from step to step (saved and restored with the run). */
export interface Memory {
  tensors: Tensor[];
  numbers: number[];
}

export interface Sampler {
  readonly name: string;
  /** one line for --help and the docs */
  readonly about: string;
  readonly family: PlanFamily;
  /** the layout used when none is asked for */
  readonly defaultSpacing: Spacing;
  /** clips x0-hat by default when the model's clip_sample says so (the DDPM lineage); the ODE solvers do not */
  readonly clipsByDefault: boolean;
  /** ddim family: diffusers' default set_alpha_to_one for this scheduler (PNDM: false) */
  readonly setAlphaToOne?: boolean;
  /** network evaluations of step k of the plan */
  evals(plan: PlanStep[], k: number, langevinSteps?: number): number;
  step(c: StepContext, x: Tensor, mem: Memory): { x: Tensor; predX0: Tensor; mem: Memory };
}
