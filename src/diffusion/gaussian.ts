// The Gaussian diffusion process of Ho, Jain & Abbeel (2020): forward process, posterior, reverse process and
// losses, one function per equation. Timesteps are indices t = 0..T-1 (the paper's t = 1..T).
import * as ops from '../engine/ops.js';
import { type Tensor, fmtShape } from '../engine/tensor.js';
import { type DiffusionTables, makeTables, betaSchedule, respacedBetas, type BetaSchedule } from './schedule.js';

export type Prediction = 'eps' | 'x0' | 'v';
export type VarianceType = 'fixedlarge' | 'fixedsmall' | 'learnedrange';
export type LossType = 'simple' | 'vlb' | 'hybrid';

/** The network: (x_t, t) to its output (eps, x0 or v; with learnedrange, 2C channels with the variance fraction). */
/** Model timesteps: integers, or fractional ones (the sigma-family layouts of diffusers' Euler and Heun schedulers). */
export type Timesteps = Int32Array | Float32Array;
export type DenoiseFn = (x: Tensor, t: Timesteps) => Tensor;

export interface DiffusionConfig {
  schedule: BetaSchedule;
  timesteps: number;
  betaStart: number;
  betaEnd: number;
  prediction: Prediction;
  variance: VarianceType;
  loss: LossType;
  clipSample: boolean;
  /**
   * A folder's scheduler settings for the samplers that lay steps out as diffusers does (its scheduler_config.json:
   * timestep_spacing, steps_offset, set_alpha_to_one; carried over as diffusers' from_config carries them to another
   * scheduler).
   */
  scheduler?: { timestepSpacing?: 'leading' | 'trailing' | 'linspace'; stepsOffset?: number; setAlphaToOne?: boolean };
}

export const PAPER_DIFFUSION: DiffusionConfig = {
  schedule: 'linear',
  timesteps: 1000,
  betaStart: 1e-4,
  betaEnd: 0.02,
  prediction: 'eps',
  variance: 'fixedlarge',
  loss: 'simple',
  clipSample: true,
};

const at = (table: Float64Array, t: Int32Array) => ops.gatherTimesteps(table, t);

export class GaussianDiffusion {
  readonly tables: DiffusionTables;
  readonly config: DiffusionConfig;
  /** For a respaced process: index i of this process is timestep timestepMap[i] of the model's original process. */
  readonly timestepMap: Int32Array;

  constructor(config: DiffusionConfig, betas?: Float64Array, timestepMap?: Int32Array) {
    this.config = config;
    this.tables = makeTables(
      betas ?? betaSchedule(config.schedule, config.timesteps, config.betaStart, config.betaEnd),
    );
    this.timestepMap = timestepMap ?? Int32Array.from({ length: this.tables.T }, (_, i) => i);
  }

  get numTimesteps(): number {
    return this.tables.T;
  }

  /** A process over a subset of timesteps (ascending) with the same alphabar there: respaced sampling. */
  respaced(use: number[]): GaussianDiffusion {
    return new GaussianDiffusion(
      this.config,
      respacedBetas(this.tables.alphasCumprod, use),
      Int32Array.from(use, (t) => this.timestepMap[t]),
    );
  }

  /** Model timesteps for this process's indices. */
  modelTimesteps(t: Int32Array): Int32Array {
    return t.map((i) => this.timestepMap[i]);
  }

  // ------------------------------------------------------------------ forward process

  /** Eq. (4): q(x_t | x_0) = N(sqrt(alphabar_t) x_0, (1 - alphabar_t) I); returns mean, variance, log-variance. */
  qMeanVariance(x0: Tensor, t: Int32Array) {
    return {
      mean: ops.mul(x0, at(this.tables.sqrtAlphasCumprod, t)),
      variance: at(this.tables.oneMinusAlphasCumprod, t),
      logVariance: at(this.tables.logOneMinusAlphasCumprod, t),
    };
  }

  /** Eq. (4) reparametrised: x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps. */
  qSample(x0: Tensor, t: Int32Array, noise: Tensor): Tensor {
    return ops.add(
      ops.mul(x0, at(this.tables.sqrtAlphasCumprod, t)),
      ops.mul(noise, at(this.tables.sqrtOneMinusAlphasCumprod, t)),
    );
  }

  /** Eqs. (6), (7): posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I), with the clipped log-variance. */
  qPosteriorMeanVariance(x0: Tensor, xt: Tensor, t: Int32Array) {
    return {
      mean: ops.add(
        ops.mul(x0, at(this.tables.posteriorMeanCoef1, t)),
        ops.mul(xt, at(this.tables.posteriorMeanCoef2, t)),
      ),
      variance: at(this.tables.posteriorVariance, t),
      logVariance: at(this.tables.posteriorLogVarianceClipped, t),
    };
  }

  // ------------------------------------------------------------------ parametrisations

  /**
   * Eq. (4) solved for x_0 (the route of eq. (11) in the code): x_0 = (x_t - sqrt(1 - alphabar_t) eps) /
   * sqrt(alphabar_t).
   */
  predictX0FromEps(xt: Tensor, t: Int32Array, eps: Tensor): Tensor {
    return ops.sub(
      ops.mul(xt, at(this.tables.sqrtRecipAlphasCumprod, t)),
      ops.mul(eps, at(this.tables.sqrtRecipm1AlphasCumprod, t)),
    );
  }

  predictEpsFromX0(xt: Tensor, t: Int32Array, x0: Tensor): Tensor {
    return ops.div(
      ops.sub(ops.mul(xt, at(this.tables.sqrtRecipAlphasCumprod, t)), x0),
      at(this.tables.sqrtRecipm1AlphasCumprod, t),
    );
  }

  /**
   * v-prediction (Salimans & Ho 2022): v = sqrt(alphabar) eps - sqrt(1 - alphabar) x_0, so x_0 = sqrt(alphabar) x_t -
   * sqrt(1 - alphabar) v.
   */
  predictX0FromV(xt: Tensor, t: Int32Array, v: Tensor): Tensor {
    return ops.sub(
      ops.mul(xt, at(this.tables.sqrtAlphasCumprod, t)),
      ops.mul(v, at(this.tables.sqrtOneMinusAlphasCumprod, t)),
    );
  }

  velocity(x0: Tensor, t: Int32Array, eps: Tensor): Tensor {
    return ops.sub(
      ops.mul(eps, at(this.tables.sqrtAlphasCumprod, t)),
      ops.mul(x0, at(this.tables.sqrtOneMinusAlphasCumprod, t)),
    );
  }

  /** Splits a learned-range output [B, 2C, ...] into the mean part and the variance fraction part. */
  splitOutput(out: Tensor, channels: number): { main: Tensor; varPart: Tensor | null } {
    if (this.config.variance !== 'learnedrange') return { main: out, varPart: null };
    if (out.shape[1] !== 2 * channels)
      throw new Error(
        `diffusion: learned variance needs ${2 * channels} output channels, model gave ${fmtShape(out.shape)}`,
      );
    return { main: ops.sliceChannels(out, 0, channels), varPart: ops.sliceChannels(out, channels, channels) };
  }

  /**
   * Eq. (1) with (11): p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) from the model output. The mean goes through
   * x0_hat, clipped to [-1, 1] when clip is set, and mu~_t(x0_hat, x_t), as the official code does.
   */
  pMeanVariance(modelOut: Tensor, xt: Tensor, t: Int32Array, clip: boolean) {
    const C = xt.shape[1];
    let main = modelOut,
      logVariance: Tensor;
    if (this.config.variance === 'learnedrange') {
      // improved DDPM: log sigma^2 = frac log beta_t + (1 - frac) log beta~_t, frac = (v + 1) / 2
      const parts = this.splitOutput(modelOut, C);
      main = parts.main;
      const frac = ops.affine(parts.varPart!, 0.5, 0.5);
      const maxLog = at(this.tables.logBetas, t),
        minLog = at(this.tables.posteriorLogVarianceClipped, t);
      logVariance = ops.add(ops.mul(frac, maxLog), ops.mul(ops.affine(frac, -1, 1), minLog));
    } else {
      const table =
        this.config.variance === 'fixedlarge'
          ? this.tables.fixedLargeLogVariance
          : this.tables.posteriorLogVarianceClipped;
      logVariance = at(table, t);
    }
    let predX0 =
      this.config.prediction === 'eps'
        ? this.predictX0FromEps(xt, t, main)
        : this.config.prediction === 'x0'
          ? main
          : this.predictX0FromV(xt, t, main);
    if (clip) predX0 = ops.clamp(predX0, -1, 1);
    const { mean } = this.qPosteriorMeanVariance(predX0, xt, t);
    return {
      mean,
      logVariance,
      predX0,
      eps: this.config.prediction === 'eps' ? main : this.predictEpsFromX0(xt, t, predX0),
    };
  }

  // ------------------------------------------------------------------ losses

  /** Eq. (14), L_simple: mean over pixels of ||target - model||^2 per sample (target eps, x_0 or v). */
  lossSimplePerSample(modelMain: Tensor, target: Tensor): Tensor {
    const d = ops.square(ops.sub(modelMain, target));
    return ops.mean(d, d.shape.map((_, i) => i).slice(1));
  }

  /** The training target for the configured parametrisation. */
  target(x0: Tensor, t: Int32Array, noise: Tensor): Tensor {
    return this.config.prediction === 'eps'
      ? noise
      : this.config.prediction === 'x0'
        ? x0
        : this.velocity(x0, t, noise);
  }

  /**
   * One term of the bound, eq. (5), in bits per dimension, per sample: L_{t-1} = KL(q(x_{t-1}|x_t,x_0) ||
   * p(x_{t-1}|x_t))
   * for t > 0, and the decoder term L_0 = -log p(x_0|x_1) of eq. (13) at t = 0 (index 0 here). Differentiable in the
   * model output, the decoder included. clip: clip the x0 estimate to [-1, 1] first (the official calc_bpd_loop's
   * default when evaluating; training uses the unclipped estimate, as improved-diffusion's training_losses does).
   */
  vlbTermsBpd(modelOut: Tensor, x0: Tensor, xt: Tensor, t: Int32Array, clip = false): Tensor {
    const q = this.qPosteriorMeanVariance(x0, xt, t);
    const p = this.pMeanVariance(modelOut, xt, t, clip);
    const dims = x0.shape.map((_, i) => i).slice(1);
    const isFirst = Float32Array.from(t, (v) => (v === 0 ? 1 : 0));
    const m = ops.fromArray(isFirst, [t.length, ...dims.map(() => 1)]);
    const kl = ops.mul(ops.mean(normalKl(q.mean, q.logVariance, p.mean, p.logVariance), dims), 1 / Math.LN2);
    if (!isFirst.some((v) => v === 1)) return kl;
    const nll = ops.mul(
      ops.mean(ops.neg(discretizedGaussianLogLikelihood(x0, p.mean, ops.mul(p.logVariance, 0.5))), dims),
      1 / Math.LN2,
    );
    const mask = ops.reshape(m, [t.length]);
    return ops.add(ops.mul(nll, mask), ops.mul(kl, ops.affine(mask, -1, 1)));
  }

  /** L_T = KL(q(x_T | x_0) || N(0, I)) in bits per dimension, per sample. */
  priorBpd(x0: Tensor): Tensor {
    const tLast = new Int32Array(x0.shape[0]).fill(this.numTimesteps - 1);
    const q = this.qMeanVariance(x0, tLast);
    const kl = normalKl(q.mean, q.logVariance, ops.zeros([1]), ops.zeros([1]));
    return ops.mul(ops.mean(kl, kl.shape.map((_, i) => i).slice(1)), 1 / Math.LN2);
  }

  /**
   * The training loss per sample for one batch, in the units and scale of improved-diffusion's training_losses:
   * - simple: L_simple, eq. (14), the mean squared error of the prediction (eps, x0 or v).
   * - vlb: the bound's term for the sampled t in bits per dimension, times T ("rescaled KL": an unbiased estimate of
   *   the whole bound in bits/dim); mean and variance both learn from it.
   * - hybrid: L_simple + (T / 1000) times the bound's term in bits/dim with the mean's gradient stopped, so only the
   *   learned variance learns from the bound (improved DDPM's L_hybrid, "rescaled MSE"). Only with learnedrange.
   * mse is always L_simple per sample (for logging).
   */
  trainingLosses(model: DenoiseFn, x0: Tensor, t: Int32Array, noise: Tensor): { loss: Tensor; mse: Tensor } {
    validateDiffusionConfig(this.config);
    const xt = this.qSample(x0, t, noise);
    const out = model(xt, this.modelTimesteps(t));
    const C = x0.shape[1];
    const { main, varPart } = this.splitOutput(out, C);
    const mse = this.lossSimplePerSample(main, this.target(x0, t, noise));
    const Tn = this.numTimesteps;
    switch (this.config.loss) {
      case 'simple':
        return { loss: mse, mse };
      case 'vlb':
        return { loss: ops.mul(this.vlbTermsBpd(out, x0, xt, t), Tn), mse };
      case 'hybrid': {
        // stop the gradient of the mean through the bound: only the variance learns from it
        const frozen = ops.concat([main.detach(), varPart!]);
        return { loss: ops.add(mse, ops.mul(this.vlbTermsBpd(frozen, x0, xt, t), Tn / 1000)), mse };
      }
    }
  }
}

/** Checks (for training) that loss and variance go together as in the official code; throws naming both otherwise. */
export function validateDiffusionConfig(c: DiffusionConfig): void {
  if (c.loss === 'hybrid' && c.variance !== 'learnedrange')
    throw new Error(
      `diffusion: loss "hybrid" needs variance "learnedrange" (with a fixed variance the official code has no bound ` +
        `term to add; use loss "simple", or "vlb" to train the mean through the bound), got variance "${c.variance}"`,
    );
  if (c.loss === 'simple' && c.variance === 'learnedrange')
    throw new Error(
      'diffusion: variance "learnedrange" with loss "simple" would never train the variance; use loss "hybrid" ' +
        '(L_simple + the bound for the variance) or "vlb"',
    );
}

/** KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats. */
export function normalKl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor): Tensor {
  // 0.5 (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2))
  const a = ops.sub(ops.add(ops.sub(logvar2, logvar1), ops.exp(ops.sub(logvar1, logvar2))), 1);
  const b = ops.mul(ops.square(ops.sub(mean1, mean2)), ops.exp(ops.neg(logvar2)));
  return ops.mul(ops.add(a, b), 0.5);
}

/**
 * Eq. (13): log-likelihood of data x (on [-1, 1], 256 levels) under the discretized Gaussian decoder with the given
 * means and log-scales, differentiable in means and logScales. Each level owns [x - 1/255, x + 1/255]; the extreme
 * levels extend to -inf and +inf. As diffusion_utils_2.py: probabilities are clamped at 1e-12 before the log, and
 * x < -0.999 / x > 0.999 select the edge levels.
 */
const STEP = 2 ** 40;

export function discretizedGaussianLogLikelihood(x: Tensor, means: Tensor, logScales: Tensor): Tensor {
  const centered = ops.sub(x, means);
  const invStdv = ops.exp(ops.neg(logScales));
  const cdfPlus = ops.normalCdf(ops.mul(invStdv, ops.add(centered, 1 / 255)));
  const cdfMin = ops.normalCdf(ops.mul(invStdv, ops.sub(centered, 1 / 255)));
  const logCdfPlus = ops.log(ops.clamp(cdfPlus, 1e-12, Infinity));
  const logOneMinusCdfMin = ops.log(ops.clamp(ops.affine(cdfMin, -1, 1), 1e-12, Infinity));
  const logCdfDelta = ops.log(ops.clamp(ops.sub(cdfPlus, cdfMin), 1e-12, Infinity));
  // where(x < -0.999, logCdfPlus, where(x > 0.999, logOneMinusCdfMin, logCdfDelta)) as masks over the data
  // (a step function: 2^40 (-0.999 - x) is 0 or at least 1 in magnitude for any float32 x not within 2^-40 of -0.999)
  const low = ops.clamp(ops.affine(x, -STEP, -0.999 * STEP), 0, 1); // 1 where x < -0.999
  const high = ops.clamp(ops.affine(x, STEP, -0.999 * STEP), 0, 1); // 1 where x > 0.999
  const mid = ops.affine(ops.add(low, high), -1, 1);
  return ops.add(ops.add(ops.mul(logCdfPlus, low), ops.mul(logOneMinusCdfMin, high)), ops.mul(logCdfDelta, mid));
}

export function makeDiffusion(cfg: Partial<DiffusionConfig> = {}): GaussianDiffusion {
  return new GaussianDiffusion({ ...PAPER_DIFFUSION, ...cfg });
}
