// The diffusers model format, pure (no file access, so it also runs in a browser): config.json and
// scheduler_config.json to and from this project's configs, weights by name into a U-Net, and a whole folder parsed
// from its files' contents (src/io/checkpoint.ts reads them from disk; the playground from a dropped folder).
import { type DiffusionConfig, PAPER_DIFFUSION } from '../diffusion/gaussian.js';
import { BETA_SCHEDULES, type BetaSchedule, betaSchedule } from '../diffusion/schedule.js';
import { type UNet, type UNetConfig, validateConfig, withDefaults } from '../model/unet.js';
import { type Tensor, fmtShape } from '../engine/tensor.js';
import { type SafeTensor, parseSafetensors } from './safetensors.js';

export const WEIGHTS_FILE = 'diffusion_pytorch_model.safetensors';

const OLD_ATTENTION_NAMES: [RegExp, string][] = [
  [/\.query\./, '.to_q.'],
  [/\.key\./, '.to_k.'],
  [/\.value\./, '.to_v.'],
  [/\.proj_attn\./, '.to_out.0.'],
];

/** Renames the attention tensors of checkpoints saved before 2023 (query, key, value, proj_attn). */
export function normalizeName(name: string): string {
  for (const [re, rep] of OLD_ATTENTION_NAMES)
    if (re.test(name) && name.includes('attentions')) return name.replace(re, rep);
  return name;
}

const SCHEDULE_TO_DIFFUSERS: Partial<Record<BetaSchedule, string>> = {
  linear: 'linear',
  cosine: 'squaredcos_cap_v2',
  sigmoid: 'sigmoid',
};
const VARIANCE_TO_DIFFUSERS = {
  fixedlarge: 'fixed_large',
  fixedsmall: 'fixed_small',
  learnedrange: 'learned_range',
} as const;
const PREDICTION_TO_DIFFUSERS = { eps: 'epsilon', x0: 'sample', v: 'v_prediction' } as const;

export function schedulerConfig(d: DiffusionConfig): Record<string, unknown> {
  const native = SCHEDULE_TO_DIFFUSERS[d.schedule];
  return {
    _class_name: 'DDPMScheduler',
    beta_start: d.betaStart,
    beta_end: d.betaEnd,
    beta_schedule: native ?? 'linear',
    // schedules diffusers lacks travel as explicit betas
    trained_betas: native ? null : Array.from(betaSchedule(d.schedule, d.timesteps, d.betaStart, d.betaEnd)),
    ddpm_schedule: d.schedule,
    num_train_timesteps: d.timesteps,
    clip_sample: d.clipSample,
    variance_type: VARIANCE_TO_DIFFUSERS[d.variance],
    prediction_type: PREDICTION_TO_DIFFUSERS[d.prediction],
    ddpm_loss: d.loss,
    ...(d.scheduler?.timestepSpacing ? { timestep_spacing: d.scheduler.timestepSpacing } : {}),
    ...(d.scheduler?.stepsOffset !== undefined ? { steps_offset: d.scheduler.stepsOffset } : {}),
    ...(d.scheduler?.setAlphaToOne !== undefined ? { set_alpha_to_one: d.scheduler.setAlphaToOne } : {}),
  };
}

const DIFFUSERS_SCHEDULES: Record<string, BetaSchedule> = {
  linear: 'linear',
  squaredcos_cap_v2: 'cosine',
  sigmoid: 'sigmoid',
};

/** The most diffusion steps a folder may ask for (its tables are float64 arrays of this length). */
const MAX_TIMESTEPS = 1_000_000;

/** Scheduler fields this project has no choice for, with the value it implements (others are refused). */
const SCHEDULER_FIXED: Record<string, unknown> = {
  thresholding: false,
  clip_sample_range: 1,
  rescale_betas_zero_snr: false,
};
const SCHEDULER_KNOWN = new Set([
  'beta_start',
  'beta_end',
  'beta_schedule',
  'trained_betas',
  'ddpm_schedule',
  'num_train_timesteps',
  'clip_sample',
  'variance_type',
  'prediction_type',
  'ddpm_loss',
  'timestep_spacing',
  'dynamic_thresholding_ratio',
  'sample_max_value',
  'set_alpha_to_one',
  'steps_offset',
]);

export function diffusionFromScheduler(
  raw: Record<string, unknown>,
  file: string,
  unknown: string[] = [],
): { config: DiffusionConfig; betas?: Float64Array } {
  const bad = (field: string, msg: string) => new Error(`${file}: field "${field}" ${msg}`);
  for (const [k, want] of Object.entries(SCHEDULER_FIXED))
    if (raw[k] !== undefined && raw[k] !== null && raw[k] !== want)
      throw bad(k, `is ${JSON.stringify(raw[k])}; only ${JSON.stringify(want)} is implemented`);
  for (const k of Object.keys(raw))
    if (!k.startsWith('_') && !SCHEDULER_KNOWN.has(k) && !(k in SCHEDULER_FIXED)) unknown.push(k);
  const fromDiffusers = raw.beta_schedule === undefined ? 'linear' : DIFFUSERS_SCHEDULES[raw.beta_schedule as string];
  if (raw.ddpm_schedule !== undefined) {
    const own = raw.ddpm_schedule as BetaSchedule;
    if (!BETA_SCHEDULES.includes(own))
      throw bad('ddpm_schedule', `${JSON.stringify(own)} is not one of ${BETA_SCHEDULES.join(', ')}`);
    // our own key travels beside diffusers' beta_schedule; the two must describe the same schedule
    const expected = SCHEDULE_TO_DIFFUSERS[own] ?? 'linear';
    if (raw.beta_schedule !== undefined && raw.beta_schedule !== expected)
      throw bad(
        'beta_schedule',
        `is ${JSON.stringify(raw.beta_schedule)} but "ddpm_schedule" is ${JSON.stringify(own)} (which diffusers ` +
          `calls ${JSON.stringify(expected)}); the two disagree`,
      );
    if (!SCHEDULE_TO_DIFFUSERS[own] && !Array.isArray(raw.trained_betas))
      throw bad('trained_betas', `must list the betas of the "${own}" schedule (diffusers has no name for it)`);
  } else if (!fromDiffusers && !Array.isArray(raw.trained_betas))
    throw bad(
      'beta_schedule',
      `${JSON.stringify(raw.beta_schedule)} is not supported (linear, squaredcos_cap_v2, sigmoid, or trained_betas)`,
    );
  const schedName = (raw.ddpm_schedule as string) ?? fromDiffusers;
  const variance = Object.entries(VARIANCE_TO_DIFFUSERS).find(
    ([, v]) => v === (raw.variance_type ?? 'fixed_small'),
  )?.[0];
  if (!variance)
    throw bad(
      'variance_type',
      `${JSON.stringify(raw.variance_type)} is not supported (fixed_large, fixed_small, learned_range)`,
    );
  const prediction = Object.entries(PREDICTION_TO_DIFFUSERS).find(
    ([, v]) => v === (raw.prediction_type ?? 'epsilon'),
  )?.[0];
  if (!prediction)
    throw bad(
      'prediction_type',
      `${JSON.stringify(raw.prediction_type)} is not supported (epsilon, sample, v_prediction)`,
    );
  const T = (raw.num_train_timesteps as number) ?? 1000;
  if (!Number.isInteger(T) || T < 1 || T > MAX_TIMESTEPS)
    throw bad(
      'num_train_timesteps',
      `must be a whole number in [1, ${MAX_TIMESTEPS}], got ${JSON.stringify(raw.num_train_timesteps)}`,
    );
  if (raw.trained_betas != null && !Array.isArray(raw.trained_betas))
    throw bad('trained_betas', `must be a list of ${T} betas or null, got ${JSON.stringify(raw.trained_betas)}`);
  const config: DiffusionConfig = {
    ...PAPER_DIFFUSION,
    schedule: (schedName ?? 'linear') as BetaSchedule,
    timesteps: T,
    betaStart: (raw.beta_start as number) ?? 1e-4,
    betaEnd: (raw.beta_end as number) ?? 0.02,
    variance: variance as DiffusionConfig['variance'],
    prediction: prediction as DiffusionConfig['prediction'],
    clipSample: (raw.clip_sample as boolean) ?? true,
    // a learned variance is trained with the hybrid loss unless the folder says otherwise (improved-diffusion's
    // default)
    loss: ((raw.ddpm_loss as string) ?? (variance === 'learnedrange' ? 'hybrid' : 'simple')) as DiffusionConfig['loss'],
  };
  const spacing = raw.timestep_spacing,
    offset = raw.steps_offset,
    alphaOne = raw.set_alpha_to_one;
  if (spacing !== undefined && spacing !== null && !['leading', 'trailing', 'linspace'].includes(spacing as string))
    throw bad('timestep_spacing', `${JSON.stringify(spacing)} is not one of leading, trailing, linspace`);
  if (
    offset !== undefined &&
    offset !== null &&
    !(Number.isInteger(offset) && (offset as number) >= 0 && (offset as number) < T)
  )
    throw bad(
      'steps_offset',
      `must be a whole number in [0, ${T - 1}] (num_train_timesteps ${T}), got ${JSON.stringify(offset)}`,
    );
  if (alphaOne !== undefined && alphaOne !== null && typeof alphaOne !== 'boolean')
    throw bad('set_alpha_to_one', `must be true or false, got ${JSON.stringify(alphaOne)}`);
  const scheduler = {
    ...(spacing ? { timestepSpacing: spacing as 'leading' | 'trailing' | 'linspace' } : {}),
    ...(typeof offset === 'number' ? { stepsOffset: offset } : {}),
    ...(typeof alphaOne === 'boolean' ? { setAlphaToOne: alphaOne } : {}),
  };
  if (Object.keys(scheduler).length) config.scheduler = scheduler;
  if (typeof config.clipSample !== 'boolean')
    throw bad('clip_sample', `must be true or false, got ${JSON.stringify(raw.clip_sample)}`);
  if (!['simple', 'vlb', 'hybrid'].includes(config.loss))
    throw bad('ddpm_loss', `${JSON.stringify(raw.ddpm_loss)} is not one of simple, vlb, hybrid`);
  for (const f of ['beta_start', 'beta_end'] as const)
    if (raw[f] !== undefined && !(typeof raw[f] === 'number' && (raw[f] as number) > 0 && (raw[f] as number) < 1))
      throw bad(f, `must be a number in (0, 1), got ${JSON.stringify(raw[f])}`);
  let betas: Float64Array | undefined;
  if (Array.isArray(raw.trained_betas)) {
    if (raw.trained_betas.length !== T)
      throw bad('trained_betas', `has ${raw.trained_betas.length} values for ${T} timesteps`);
    betas = Float64Array.from(raw.trained_betas as number[]);
    const k = betas.findIndex((b) => !(b > 0 && b <= 1));
    if (k >= 0)
      throw bad(
        'trained_betas',
        `value ${k} is ${JSON.stringify((raw.trained_betas as unknown[])[k])}, expected a number in (0, 1]`,
      );
  }
  return { config, betas };
}

export interface ModelFolder {
  unetConfig: UNetConfig;
  diffusion: { config: DiffusionConfig; betas?: Float64Array };
  weights: Map<string, SafeTensor>;
  /** fields of config.json / scheduler_config.json that are not known here (each one a line to show the user) */
  warnings: string[];
}

/**
 * A model folder from its files' contents: config.json and scheduler_config.json parsed as JSON (the scheduler may be
 * absent: the paper's process), the safetensors bytes (or a function giving them, called once the configs are valid).
 * `names` label errors and warnings with where each came from.
 */
export function parseModelFolder(
  files: {
    config: Record<string, unknown>;
    scheduler?: Record<string, unknown>;
    weights: Uint8Array | (() => Uint8Array);
  },
  names: { dir: string; config: string; scheduler: string; weights: string },
): ModelFolder {
  const rawCfg = files.config;
  if (rawCfg._class_name && rawCfg._class_name !== 'UNet2DModel')
    throw new Error(
      `${names.config}: field "_class_name" is ${JSON.stringify(rawCfg._class_name)}, expected "UNet2DModel"`,
    );
  const unknownUnet: string[] = [],
    unknownSched: string[] = [];
  const unetConfig = withDefaults(rawCfg, names.config, unknownUnet);
  validateConfig(unetConfig, names.config);
  const diffusion = files.scheduler
    ? diffusionFromScheduler(files.scheduler, names.scheduler, unknownSched)
    : { config: { ...PAPER_DIFFUSION } };
  const warnings = [
    ...(unknownUnet.length ? [`warning: ${names.config}: unknown field(s) ${unknownUnet.join(', ')} ignored`] : []),
    ...(unknownSched.length
      ? [`warning: ${names.scheduler}: unknown field(s) ${unknownSched.join(', ')} ignored`]
      : []),
    ...(files.scheduler
      ? []
      : [
          `warning: ${names.dir}: no scheduler_config.json; using the paper's process (T = 1000, linear betas, ` +
            `fixed_large)`,
        ]),
  ];
  const { tensors } = parseSafetensors(
    typeof files.weights === 'function' ? files.weights() : files.weights,
    names.weights,
  );
  const weights = new Map<string, SafeTensor>();
  for (const [k, v] of tensors) weights.set(normalizeName(k), v);
  return { unetConfig, diffusion, weights, warnings };
}

/** Copies weights into a model, checking every name and shape against the config. */
export function loadWeights(model: UNet, weights: Map<string, SafeTensor>, file: string): void {
  for (const [name, p] of model.params) {
    const w = weights.get(name);
    if (!w) throw new Error(`${file}: tensor "${name}" is missing (config.json expects shape ${fmtShape(p.shape)})`);
    if (w.shape.length !== p.shape.length || w.shape.some((d, i) => d !== p.shape[i]))
      throw new Error(
        `${file}: tensor "${name}" has shape ${fmtShape(w.shape)}, but config.json implies ${fmtShape(p.shape)}`,
      );
    for (let i = 0; i < w.data.length; i++)
      if (!Number.isFinite(w.data[i]))
        throw new Error(
          `${file}: tensor "${name}" holds ${w.data[i]} at index ${i}; the weights are corrupt (a diverged run?)`,
        );
    p.write(w.data);
  }
  for (const name of weights.keys())
    if (!model.params.has(name))
      throw new Error(`${file}: unexpected tensor "${name}" (not part of the model described by config.json)`);
}

/** The model's weights by name (or `values`, tensors in parameter order, such as the EMA copy), read back to the ' +
  'host. */
export async function weightsOf(model: UNet, values?: Tensor[]): Promise<Map<string, SafeTensor>> {
  const entries = [...model.params.entries()];
  const data = await Promise.all(entries.map(([, p], i) => (values ? values[i] : p).data()));
  return new Map(entries.map(([name, p], i) => [name, { shape: p.shape, data: data[i] }]));
}
