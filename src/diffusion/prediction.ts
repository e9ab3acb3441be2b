// The prediction adapter: what the network's output says at a point of the process with signal level alphabar, as
// eps-hat, x0-hat and the score, whatever the model predicts (eps, x0 or v; with learned variances the first C
// channels). Every sampler reads the network through this one function, so none assumes an eps model.
import * as ops from '../engine/ops.js';
import type { Tensor } from '../engine/tensor.js';
import type { DiffusionConfig, Prediction } from './gaussian.js';

export interface ModelPrediction {
  /** the network's own output (its first C channels: eps, x0 or v) */
  main: Tensor;
  /** the model's own eps-hat (for x0 and v models, derived from the unclipped x0-hat, as diffusers does) */
  eps: Tensor;
  /** x0-hat, clipped to [-1, 1] when asked */
  x0: Tensor;
  /** learned-range models: the variance fraction channels (v in [-1, 1]); null otherwise */
  varPart: Tensor | null;
}

/**
 * Eq. (4) read three ways, with a = alphabar: x_t = sqrt(a) x0 + sqrt(1 - a) eps, v = sqrt(a) eps - sqrt(1 - a) x0
 * (Salimans & Ho 2022). ab must be in (0, 1].
 */
export function interpretOutput(
  config: Pick<DiffusionConfig, 'prediction' | 'variance'>,
  out: Tensor,
  x: Tensor,
  ab: number,
  clip: boolean,
): ModelPrediction {
  const C = x.shape[1];
  let main = out,
    varPart: Tensor | null = null;
  if (config.variance === 'learnedrange') {
    if (out.shape[1] !== 2 * C)
      throw new Error(`sampler: a learned-variance model must give ${2 * C} channels, got ${out.shape[1]}`);
    main = ops.sliceChannels(out, 0, C);
    varPart = ops.sliceChannels(out, C, C);
  }
  const sa = Math.sqrt(ab),
    s1 = Math.sqrt(1 - ab);
  let eps: Tensor, x0: Tensor;
  if (config.prediction === 'eps') {
    eps = main;
    x0 = x0FromEps(x, eps, ab);
  } else if (config.prediction === 'x0') {
    x0 = main;
    eps = epsFromX0(x, x0, ab);
  } else {
    x0 = ops.sub(ops.mul(x, sa), ops.mul(main, s1));
    eps = ops.add(ops.mul(x, s1), ops.mul(main, sa));
  }
  return { main, eps, x0: clip ? ops.clamp(x0, -1, 1) : x0, varPart };
}

/** eps-hat from a raw output (eps, x0 or v) on x_t at alphabar a. */
export function epsFromOutput(prediction: Prediction, main: Tensor, x: Tensor, ab: number): Tensor {
  if (prediction === 'eps') return main;
  if (prediction === 'x0') return epsFromX0(x, main, ab);
  return ops.add(ops.mul(x, Math.sqrt(1 - ab)), ops.mul(main, Math.sqrt(ab)));
}

/** x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) */
export function x0FromEps(x: Tensor, eps: Tensor, ab: number): Tensor {
  return ops.sub(ops.mul(x, 1 / Math.sqrt(ab)), ops.mul(eps, Math.sqrt(1 / ab - 1)));
}

/** eps = (x_t - sqrt(a) x0) / sqrt(1 - a) */
export function epsFromX0(x: Tensor, x0: Tensor, ab: number): Tensor {
  return ops.mul(ops.sub(ops.mul(x, 1 / Math.sqrt(ab)), x0), 1 / Math.sqrt(1 / ab - 1));
}

/** The score of section 3.2: grad log q(x_t) ~ -eps_theta(x_t, t) / sqrt(1 - alphabar_t). */
export function scoreFromEps(eps: Tensor, ab: number): Tensor {
  return ops.mul(eps, -1 / Math.sqrt(1 - ab));
}
