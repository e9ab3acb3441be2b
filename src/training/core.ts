// The training core: Algorithm 1 of the paper, one step at a time, with the paper's recipe (Adam, linear warmup,
// global-norm clipping, EMA of the weights), gradient accumulation, random flips, dropout, the named random streams
// and the per-step metrics. It imports nothing from Node: `ddpm train` (src/training/train.ts adds checkpoints, the
// run lock, logs and signals around it), library users and the playground page run this same code, so one seed trains
// the same in a tab as in Node. Data order, timesteps, noise, flips and dropout are pure functions of (seed, step).
import * as ops from '../engine/ops.js';
import { Adam, EMA, clipGradNorm, emaDecayAt } from '../engine/optim.js';
import { fillRandom, randomIntegers, randomPermutation } from '../engine/random.js';
import { streams } from '../engine/streams.js';
import { type Tensor, closeScope, openScope } from '../engine/tensor.js';
import type { DiffusionConfig, GaussianDiffusion } from '../diffusion/gaussian.js';
import { UNet, type UNetConfig } from '../model/unet.js';
import { type ImageDataset, makeBatch } from '../data/dataset.js';

export interface TrainOptions {
  /** the run folder (the Node trainer's; the core does not touch it) */
  outDir: string;
  unet: UNetConfig;
  diffusion: DiffusionConfig;
  steps: number;
  batchSize: number;
  lr: number;
  warmup: number;
  /** global gradient-norm bound (0: no clipping) */
  gradClip: number;
  emaDecay: number;
  /** Warm the EMA decay up as min(decay, (1 + step) / (10 + step)) (for short runs). */
  emaWarmup: boolean;
  flip: boolean;
  accumulate: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  sampleEvery: number;
  sampleSteps: number;
  seed: number;
  /** Stop after this many seconds (a checkpoint is written first). */
  maxSeconds?: number;
  /** Options (RESUME_FIELDS keys) allowed to differ from the saved run's when resuming. */
  override?: string[];
  /** Steps between sample-quality evaluations (callbacks.evaluate; 0: never). */
  evalEvery?: number;
  /**
   * Class-conditional models (unet.num_class_embeds): the probability that a label is replaced by the null class
   * (unet.ddpm_null_class) for classifier-free guidance (Ho & Salimans 2022; 0: never).
   */
  condDrop?: number;
  /** a model folder whose weights a new run starts from (fine-tuning; the Node trainer reads it) */
  init?: string;
  /**
   * The peak learning rate of the class embedding (default: lr). A larger one lets a zero-initialised embedding,
   * added to a model that already denoises well without it (--init), grow in hundreds of steps, not thousands.
   */
  embedLr?: number;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'outDir' | 'unet' | 'diffusion' | 'steps'> = {
  batchSize: 128,
  lr: 2e-4,
  warmup: 5000,
  gradClip: 1,
  emaDecay: 0.9999,
  emaWarmup: true,
  flip: false,
  accumulate: 1,
  checkpointEvery: 1000,
  keepCheckpoints: 3,
  sampleEvery: 0,
  sampleSteps: 100,
  seed: 0,
};

export interface StepMetrics {
  step: number;
  loss: number;
  /** mean L_simple in each quarter of the t range (null when the batch had none there) */
  loss_q: (number | null)[];
  grad_norm: number;
  lr: number;
  ema_decay: number;
  images_per_s: number;
  time_s: number;
  /** sample quality of the EMA weights at this step (train --eval-every) */
  quality?: Record<string, number>;
}

export interface TrainState {
  model: UNet;
  ema: EMA;
  adam: Adam;
  step: number;
  /** set when a signal stopped the run (after its checkpoint was written) */
  interrupted?: string;
}

/** A new run's state: the U-Net initialised from the seed, its EMA copy, Adam at step 0. */
export function createTrainState(o: Pick<TrainOptions, 'unet' | 'lr' | 'seed' | 'embedLr'>): TrainState {
  const model = new UNet(o.unet).init(o.seed);
  const params = [...model.params.values()];
  const adam = new Adam(params, { lr: o.lr });
  [...model.params.keys()].forEach((name, i) => {
    if (o.embedLr !== undefined && name.startsWith('class_embedding.')) adam.lrScale[i] = o.embedLr / o.lr;
  });
  return { model, ema: new EMA(params), adam, step: 0 };
}

/** The loss or the gradient norm of a step was not finite (its update was applied; the step count did not advance). */
export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    readonly what: string,
  ) {
    super(`training stopped at step ${step}: ${what}`);
  }
}

/** The images for one micro-batch: positions in an endless sequence of per-epoch permutations. */
export function batchIndices(
  n: number,
  first: number,
  count: number,
  seed: number,
  cache: Map<number, Int32Array>,
): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const pos = first + i,
      epoch = Math.floor(pos / n);
    let perm = cache.get(epoch);
    if (!perm) {
      perm = randomPermutation(n, streams.dataOrder(seed, epoch));
      cache.clear();
      cache.set(epoch, perm);
    }
    out[i] = perm[pos % n];
  }
  return out;
}

/**
 * The class labels of a micro-batch for a class-conditional model (undefined for an unconditional one): the data's
 * labels, each replaced by the null class with probability condDrop (drawn from the condDrop stream).
 */
export function labelsOf(o: TrainOptions, data: ImageDataset, idx: Int32Array, micro: number): Int32Array | undefined {
  const K = o.unet.num_class_embeds;
  if (!K) return undefined;
  const all = data.labels;
  if (!all) throw new Error(`${data.name}: a class-conditional model needs the images' labels, and this set has none`);
  const nul = o.unet.ddpm_null_class ?? null;
  const labels = Int32Array.from(idx, (i) => all[i]);
  for (const y of labels)
    if (y >= (nul ?? K)) throw new Error(`${data.name}: label ${y} is outside the model's ${nul ?? K} classes`);
  const p = o.condDrop ?? 0;
  if (p > 0) {
    if (nul === null) throw new Error('--cond-drop: the model has no null class (ddpm_null_class) to drop labels to');
    const u = new Float32Array(labels.length);
    fillRandom(u, 1, streams.condDrop(o.seed, micro), 0, 'uniform');
    u.forEach((v, i) => {
      if (v < p) labels[i] = nul;
    });
  }
  return labels;
}

/** Labels for n samples of a class-conditional model: its classes in turn (undefined for an unconditional one). */
export function cycledLabels(unet: UNetConfig, n: number): Int32Array | undefined {
  const K = unet.num_class_embeds;
  if (!K) return undefined;
  const classes = unet.ddpm_null_class ?? K;
  return Int32Array.from({ length: n }, (_, i) => i % classes);
}

/** The learning rate of step s (0-based): linear warmup over `warmup` steps, then constant (the paper's). */
export const learningRateAt = (o: Pick<TrainOptions, 'lr' | 'warmup'>, s: number): number =>
  o.lr * Math.min(1, (s + 1) / Math.max(1, o.warmup));

/**
 * One step of Algorithm 1, st.step -> st.step + 1: for each micro-batch, x0 from the data order, t ~ Uniform({0..T-1}),
 * eps ~ N(0, I), a gradient step on the loss (L_simple, eq. 14, unless the diffusion says otherwise); then clipping,
 * Adam at the warmed-up rate and the EMA update. The logged values come back in one read. Throws NonFiniteLossError
 * (before the state's step advances) when the loss or gradient norm is not finite.
 */
export async function trainStep(
  o: TrainOptions,
  diffusion: GaussianDiffusion,
  st: TrainState,
  data: ImageDataset,
  order: Map<number, Int32Array>,
): Promise<Omit<StepMetrics, 'images_per_s' | 'time_s'>> {
  // every tensor of the step (activations, gradients, the logged values) is released once its work is issued and its
  // read begun; the weights, Adam's moments and the EMA weights, made before, are updated in place. The scope spans no
  // await, so tensors that other code makes meanwhile are not the step's.
  const scope = openScope();
  let issued: ReturnType<typeof issueStep>;
  try {
    issued = issueStep(o, diffusion, st, data, order);
  } finally {
    closeScope(scope, []);
  }
  const { read, tMicro, lr, decay } = issued;
  const s = st.step,
    B = o.batchSize,
    Tn = diffusion.numTimesteps;
  const values = await read;
  let lossSum = 0,
    off = 0;
  const qSum = [0, 0, 0, 0],
    qN = [0, 0, 0, 0];
  for (const t of tMicro) {
    lossSum += values[off++];
    for (let i = 0; i < B; i++) {
      const q = Math.min(3, Math.floor((4 * t[i]) / Tn));
      qSum[q] += values[off++];
      qN[q]++;
    }
  }
  const gradNorm = values[off];
  if (!Number.isFinite(lossSum)) throw new NonFiniteLossError(s + 1, `loss is ${lossSum}`);
  if (!Number.isFinite(gradNorm)) throw new NonFiniteLossError(s + 1, `gradient norm is ${gradNorm}`);
  st.step = s + 1;
  return {
    step: st.step,
    loss: lossSum,
    loss_q: qSum.map((v, i) => (qN[i] ? v / qN[i] : null)),
    grad_norm: gradNorm,
    lr,
    ema_decay: decay,
  };
}

/** The step's work, issued; the read of its logged values (the losses, then the gradient norm) begun. */
function issueStep(
  o: TrainOptions,
  diffusion: GaussianDiffusion,
  st: TrainState,
  data: ImageDataset,
  order: Map<number, Int32Array>,
) {
  const s = st.step,
    B = o.batchSize,
    C = o.unet.in_channels,
    S = o.unet.sample_size,
    Tn = diffusion.numTimesteps;
  const params = [...st.model.params.values()];
  const logged: Tensor[] = []; // per micro-batch: the loss, then the per-sample MSE
  const tMicro: Int32Array[] = [];
  for (let micro = 0; micro < o.accumulate; micro++) {
    const mb = s * o.accumulate + micro; // global micro-batch number
    const idx = batchIndices(data.count, mb * B, B, o.seed, order);
    let flips: boolean[] | undefined;
    if (o.flip) {
      const u = new Float32Array(B);
      fillRandom(u, 1, streams.flips(o.seed, mb), 0, 'uniform');
      flips = Array.from(u, (v) => v < 0.5);
    }
    const x0 = makeBatch(data, idx, flips);
    const classLabels = labelsOf(o, data, idx, mb);
    const t = randomIntegers(B, 0, Tn - 1, streams.timesteps(o.seed, mb));
    const noise = ops.randn([B, C, S, S], streams.trainNoise(o.seed, mb));
    const { loss, mse } = diffusion.trainingLosses(
      (x, tt) => st.model.forward(x, tt, { dropout: { seed: o.seed, micro: mb }, classLabels }),
      x0,
      t,
      noise,
    );
    const total = ops.mul(ops.mean(loss), 1 / o.accumulate);
    total.backward();
    logged.push(ops.reshape(total, [1]), mse);
    tMicro.push(t);
  }
  const norm = clipGradNorm(params, o.gradClip);
  const lr = learningRateAt(o, s);
  st.adam.lr = lr;
  st.adam.update();
  st.adam.zeroGrad();
  const decay = o.emaWarmup ? emaDecayAt(s, o.emaDecay) : o.emaDecay;
  st.ema.update(params, decay);
  // the step's work is all issued; its logged values come back in one read (on a GPU, the only readback)
  const read = ops.concat([...logged, norm].map((x) => ops.reshape(x, [1, x.size]))).data();
  return { read, tMicro, lr, decay };
}
