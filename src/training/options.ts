// The training options as `ddpm train` takes them (flat, by flag name) turned into TrainOptions: a preset, the paper's
// process with the chosen schedule, prediction, variance and loss, and the recipe. For library users as for the CLI.
import { type DiffusionConfig, PAPER_DIFFUSION, validateDiffusionConfig } from '../diffusion/gaussian.js';
import { type BetaSchedule, scaledBetaRange } from '../diffusion/schedule.js';
import type { LossType, Prediction, VarianceType } from '../diffusion/gaussian.js';
import { PRESETS } from '../model/unet.js';
import { GaussianDiffusion } from '../diffusion/gaussian.js';
import { diffusionFromScheduler, schedulerConfig } from '../io/diffusers.js';
import { DEFAULT_TRAIN, type TrainOptions } from './core.js';

/** The flags of `ddpm train` (camelCase), all but out optional (DEFAULT_TRAIN and the paper's process fill in). */
export interface TrainFlags {
  out: string;
  preset?: string;
  steps?: number;
  batch?: number;
  lr?: number;
  warmup?: number;
  gradClip?: number;
  ema?: number;
  emaWarmup?: boolean;
  flip?: boolean;
  dropout?: number;
  accumulate?: number;
  checkpointEvery?: number;
  keep?: number;
  sampleEvery?: number;
  sampleSteps?: number;
  timesteps?: number;
  schedule?: BetaSchedule;
  prediction?: Prediction;
  variance?: VarianceType;
  loss?: LossType;
  maxMinutes?: number;
  seed?: number;
  evalEvery?: number;
  /** comma-separated option names allowed to differ on resume */
  override?: string;
  /** class-conditional: the number of classes of the data's labels */
  classes?: number;
  /** class-conditional: the probability of dropping a label to the null class (classifier-free guidance) */
  condDrop?: number;
  /** a model folder whose weights a new run starts from */
  init?: string;
  /** the class embedding's peak learning rate (default: lr) */
  embedLr?: number;
}

export function trainOptionsFrom(o: TrainFlags): TrainOptions {
  const name = o.preset ?? 'mnist';
  const make = PRESETS[name];
  if (!make) throw new Error(`--preset: unknown preset "${name}" (expected one of ${Object.keys(PRESETS).join(', ')})`);
  const unet = make();
  if (o.dropout !== undefined) unet.dropout = o.dropout;
  if (o.variance === 'learnedrange') unet.out_channels = 2 * unet.in_channels;
  if (o.embedLr !== undefined && !o.classes)
    throw new Error('--embed-lr: only for a class-conditional model (--classes N)');
  if (o.condDrop && !o.classes) throw new Error('--cond-drop: only for a class-conditional model (--classes N)');
  if (o.classes) {
    // one embedding per class, and one more for "no class" when labels are dropped (classifier-free guidance)
    unet.num_class_embeds = o.classes + (o.condDrop ? 1 : 0);
    if (o.condDrop) unet.ddpm_null_class = o.classes;
  }
  const T = o.timesteps ?? 1000;
  const range = T === 1000 ? { betaStart: 1e-4, betaEnd: 0.02 } : scaledBetaRange(T);
  const diffusion: DiffusionConfig = {
    ...PAPER_DIFFUSION,
    schedule: o.schedule ?? 'linear',
    timesteps: T,
    ...range,
    prediction: o.prediction ?? 'eps',
    variance: o.variance ?? 'fixedlarge',
    loss: o.loss ?? 'simple',
  };
  validateDiffusionConfig(diffusion);
  // the process must be one that the folder's readers take back: written and read as scheduler_config.json, and its
  // betas in (0, 1) (a short chain scales the linear range by 1000/T, up to beta = 1 at T = 20)
  try {
    diffusionFromScheduler(schedulerConfig(diffusion), 'scheduler_config.json');
    new GaussianDiffusion(diffusion);
  } catch (e) {
    throw new Error(
      `--timesteps ${T} --schedule ${diffusion.schedule}: not a usable process (${(e as Error).message}); use more ` +
        'timesteps or another schedule',
    );
  }
  const d = DEFAULT_TRAIN;
  return {
    ...d,
    outDir: o.out,
    unet,
    diffusion,
    steps: o.steps ?? 10000,
    batchSize: o.batch ?? d.batchSize,
    lr: o.lr ?? d.lr,
    warmup: o.warmup ?? d.warmup,
    gradClip: o.gradClip ?? d.gradClip,
    emaDecay: o.ema ?? d.emaDecay,
    emaWarmup: o.emaWarmup !== false,
    flip: !!o.flip,
    accumulate: o.accumulate ?? d.accumulate,
    checkpointEvery: o.checkpointEvery ?? d.checkpointEvery,
    keepCheckpoints: o.keep ?? d.keepCheckpoints,
    sampleEvery: o.sampleEvery ?? d.sampleEvery,
    sampleSteps: o.sampleSteps ?? d.sampleSteps,
    seed: o.seed ?? d.seed,
    maxSeconds: o.maxMinutes !== undefined ? o.maxMinutes * 60 : undefined,
    override: o.override
      ? o.override
          .split(',')
          .map((f) => f.trim().replace(/^--/, ''))
          .filter(Boolean)
      : undefined,
    evalEvery: o.evalEvery ?? 0,
    condDrop: o.condDrop ?? 0,
    init: o.init,
    embedLr: o.embedLr,
  };
}
