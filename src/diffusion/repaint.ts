// Inpainting with RePaint (Lugmayr et al. 2022): the reverse chain of an unconditional model in which, at every step,
// the known pixels are replaced by the original image noised to that step, with resampling (jumps back up the chain
// and down again, so that the generated part harmonises with the known part). The step, the undo step and the
// timestep layout are those of diffusers' RePaintScheduler (v0.27.2); test/repaint.test.ts checks ours against it.
import * as ops from '../engine/ops.js';
import { LoopMemory, type Tensor, noGrad } from '../engine/tensor.js';
import { streams } from '../engine/streams.js';
import type { DenoiseFn, GaussianDiffusion } from './gaussian.js';

export interface RepaintOptions {
  /** reverse steps over the T timesteps (diffusers' num_inference_steps; default 250, as the paper) */
  steps?: number;
  /** steps taken back up the chain per jump ("j" in the paper; default 10) */
  jumpLength?: number;
  /** how often each jump point is passed (1: no resampling; default 10) */
  jumpNSample?: number;
  /** the stochasticity of the unknown part's step (0: DDIM-like, 1: DDPM-like; diffusers' default 0) */
  eta?: number;
  /** clip the x0 estimate to [-1, 1] (diffusers: clip_sample, default true) */
  clip?: boolean;
  seed: number;
  /** index of the first image of this batch in the whole run (batch-independent noise) */
  sampleStart?: number;
}

/**
 * The timesteps of a RePaint run, as diffusers' RePaintScheduler.set_timesteps lays them out: from the top down in
 * steps of T / steps, and at every jumpLength-th step below the top, jumpNSample - 1 times, jumpLength steps back up
 * before going down again. A timestep above the one before it is an undo step.
 */
export function repaintTimesteps(T: number, steps: number, jumpLength: number, jumpNSample: number): number[] {
  const n = Math.min(T, steps);
  for (const [name, v] of [
    ['steps', steps],
    ['jump length', jumpLength],
    ['jump count', jumpNSample],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`inpaint: ${name} must be an integer >= 1, got ${v}`);
  const jumps = new Map<number, number>();
  for (let j = 0; j < n - jumpLength; j += jumpLength) jumps.set(j, jumpNSample - 1);
  const out: number[] = [];
  let t = n;
  while (t >= 1) {
    t -= 1;
    out.push(t);
    const left = jumps.get(t) ?? 0;
    if (left > 0) {
      jumps.set(t, left - 1);
      for (let k = 0; k < jumpLength; k++) out.push(++t);
    }
  }
  const stride = Math.floor(T / n);
  return out.map((v) => v * stride);
}

/** The model's output as eps (the first C channels; x0- and v-prediction models converted through x0). */
function epsOf(d: GaussianDiffusion, out: Tensor, x: Tensor, t: Int32Array): Tensor {
  const C = x.shape[1];
  if (d.config.prediction === 'eps') return out.shape[1] === C ? out : ops.sliceChannels(out, 0, C);
  return d.predictEpsFromX0(x, t, d.pMeanVariance(out, x, t, false).predX0);
}

/**
 * One RePaint step from timestep t to t - stride (diffusers' RePaintScheduler.step): the unknown part by a DDIM step
 * with eta, the known part as q(x_prev | x_0) of the original image, both with the same noise; mask 1 = known.
 */
export function repaintStep(
  d: GaussianDiffusion,
  eps: Tensor,
  x: Tensor,
  t: number,
  stride: number,
  known: Tensor,
  mask: Tensor,
  eta: number,
  clip: boolean,
  noise: Tensor,
): { x: Tensor; predX0: Tensor } {
  const abar = d.tables.alphasCumprod;
  const ab = abar[t],
    prev = t - stride,
    abPrev = prev >= 0 ? abar[prev] : 1; // final_alpha_cumprod = 1
  let predX0 = ops.affine(ops.sub(x, ops.mul(eps, Math.sqrt(1 - ab))), 1 / Math.sqrt(ab), 0);
  if (clip) predX0 = ops.clamp(predX0, -1, 1);
  const variance = ((1 - abPrev) / (1 - ab)) * (1 - ab / abPrev);
  const std = eta * Math.sqrt(variance);
  let unknown = ops.add(ops.mul(predX0, Math.sqrt(abPrev)), ops.mul(eps, Math.sqrt(1 - abPrev - std * std)));
  if (t > 0 && eta > 0) unknown = ops.add(unknown, ops.mul(noise, std));
  const knownPart = ops.add(ops.mul(known, Math.sqrt(abPrev)), ops.mul(noise, Math.sqrt(1 - abPrev)));
  const out = ops.add(ops.mul(mask, knownPart), ops.mul(ops.affine(mask, -1, 1), unknown));
  return { x: out, predX0 };
}

/** Back up the chain from t to t + stride (diffusers' undo_step): x <- sqrt(1 - beta) x + sqrt(beta) z, per step. */
export function repaintUndo(d: GaussianDiffusion, x: Tensor, t: number, stride: number, noise: (i: number) => Tensor) {
  let y = x;
  for (let i = 0; i < stride; i++) {
    const beta = d.tables.betas[t + i];
    y = ops.add(ops.mul(y, Math.sqrt(1 - beta)), ops.mul(noise(i), Math.sqrt(beta)));
  }
  return y;
}

export interface RepaintStep {
  /** position in the timestep list (1..total) */
  step: number;
  total: number;
  t: number;
  x: Tensor;
  /** the x0 estimate (null on undo steps) */
  predX0: Tensor | null;
}

/**
 * Inpaints `known` ([B, C, H, W] on [-1, 1]) where `mask` (broadcastable to it; 1 = keep, 0 = generate) is 0, as
 * diffusers' RePaintPipeline runs the scheduler. Yields after every step; returns the images. Noise: x_T from the
 * sampler's initial stream, the k-th entry of the timestep list from the inpaint stream (per sample, so batches
 * split anywhere give the same images). `noiseFor` replaces the noise (tests that feed another implementation's).
 */
export function* inpaint(
  d: GaussianDiffusion,
  model: DenoiseFn,
  known: Tensor,
  mask: Tensor,
  o: RepaintOptions,
  noiseFor?: (k: number, sub: number) => Tensor,
): Generator<RepaintStep, Tensor> {
  const T = d.numTimesteps,
    steps = Math.min(T, o.steps ?? 250);
  const ts = repaintTimesteps(T, steps, o.jumpLength ?? 10, o.jumpNSample ?? 10);
  const stride = Math.floor(T / steps),
    start = o.sampleStart ?? 0,
    shape = known.shape;
  const noise = noiseFor ?? ((k: number, sub: number) => ops.randn(shape, streams.inpaint(o.seed, k, sub), start));
  let x = noiseFor ? noiseFor(-1, 0) : ops.randn(shape, streams.samplerInit(o.seed), start);
  let tLast = ts[0] + 1;
  // a step's temporaries go when it ends, its x once the next step has replaced it (engine scopes)
  const memory = new LoopMemory();
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    let predX0: Tensor | null = null;
    ({ x, predX0 } = memory.step(
      () =>
        noGrad(() => {
          if (!(t < tLast)) return { x: repaintUndo(d, x, tLast, stride, (i) => noise(k, 1 + i)), predX0: null };
          const tt = new Int32Array(shape[0]).fill(t);
          const eps = epsOf(d, model(x, d.modelTimesteps(tt)), x, tt);
          return repaintStep(d, eps, x, t, stride, known, mask, o.eta ?? 0, o.clip ?? true, noise(k, 0));
        }),
      (r) => (r.predX0 ? [r.x, r.predX0] : [r.x]),
      (r) => [r.x],
    ));
    tLast = t;
    yield { step: k + 1, total: ts.length, t, x, predX0 };
  }
  return x;
}
