// Model folders in the diffusers format (Node-only): model_index.json, config.json, scheduler_config.json and
// diffusion_pytorch_model.safetensors, flat or with unet/ and scheduler/ subfolders.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DiffusionConfig, PAPER_DIFFUSION } from '../diffusion/gaussian.js';
import { type BetaSchedule, betaSchedule } from '../diffusion/schedule.js';
import { UNet, type UNetConfig, validateConfig, withDefaults } from '../model/unet.js';
import { fmtShape } from '../engine/tensor.js';
import { type SafeTensor, parseSafetensors, serializeSafetensors } from './safetensors.js';
import { readJson, writeFileAtomic } from './files.js';

export const WEIGHTS_FILE = 'diffusion_pytorch_model.safetensors';

const OLD_ATTENTION_NAMES: [RegExp, string][] = [
  [/\.query\./, '.to_q.'],
  [/\.key\./, '.to_k.'],
  [/\.value\./, '.to_v.'],
  [/\.proj_attn\./, '.to_out.0.'],
];

/** Renames the attention tensors of checkpoints saved before 2023 (query, key, value, proj_attn). */
export function normalizeName(name: string): string {
  for (const [re, rep] of OLD_ATTENTION_NAMES) if (re.test(name) && name.includes('attentions')) return name.replace(re, rep);
  return name;
}

const SCHEDULE_TO_DIFFUSERS: Partial<Record<BetaSchedule, string>> = { linear: 'linear', cosine: 'squaredcos_cap_v2', sigmoid: 'sigmoid' };
const VARIANCE_TO_DIFFUSERS = { fixedlarge: 'fixed_large', fixedsmall: 'fixed_small', learnedrange: 'learned_range' } as const;
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
  };
}

export function diffusionFromScheduler(raw: Record<string, unknown>, file: string): { config: DiffusionConfig; betas?: Float64Array } {
  const bad = (field: string, msg: string) => new Error(`${file}: field "${field}" ${msg}`);
  const schedName = (raw.ddpm_schedule as string) ?? ({ linear: 'linear', squaredcos_cap_v2: 'cosine', sigmoid: 'sigmoid' } as Record<string, string>)[(raw.beta_schedule as string) ?? 'linear'];
  if (!schedName && !raw.trained_betas) throw bad('beta_schedule', `${JSON.stringify(raw.beta_schedule)} is not supported (linear, squaredcos_cap_v2, sigmoid, or trained_betas)`);
  const variance = Object.entries(VARIANCE_TO_DIFFUSERS).find(([, v]) => v === (raw.variance_type ?? 'fixed_small'))?.[0];
  if (!variance) throw bad('variance_type', `${JSON.stringify(raw.variance_type)} is not supported (fixed_large, fixed_small, learned_range)`);
  const prediction = Object.entries(PREDICTION_TO_DIFFUSERS).find(([, v]) => v === (raw.prediction_type ?? 'epsilon'))?.[0];
  if (!prediction) throw bad('prediction_type', `${JSON.stringify(raw.prediction_type)} is not supported (epsilon, sample, v_prediction)`);
  const T = (raw.num_train_timesteps as number) ?? 1000;
  if (!Number.isInteger(T) || T < 1) throw bad('num_train_timesteps', `must be a positive integer, got ${JSON.stringify(raw.num_train_timesteps)}`);
  const config: DiffusionConfig = {
    ...PAPER_DIFFUSION,
    schedule: (schedName ?? 'linear') as BetaSchedule,
    timesteps: T,
    betaStart: (raw.beta_start as number) ?? 1e-4,
    betaEnd: (raw.beta_end as number) ?? 0.02,
    variance: variance as DiffusionConfig['variance'],
    prediction: prediction as DiffusionConfig['prediction'],
    clipSample: (raw.clip_sample as boolean) ?? true,
    loss: ((raw.ddpm_loss as string) ?? 'simple') as DiffusionConfig['loss'],
  };
  let betas: Float64Array | undefined;
  if (Array.isArray(raw.trained_betas)) {
    if (raw.trained_betas.length !== T) throw bad('trained_betas', `has ${raw.trained_betas.length} values for ${T} timesteps`);
    betas = Float64Array.from(raw.trained_betas as number[]);
  }
  return { config, betas };
}

export interface ModelFolder {
  unetConfig: UNetConfig;
  diffusion: { config: DiffusionConfig; betas?: Float64Array };
  weights: Map<string, SafeTensor>;
}

/** Reads a diffusers model folder (flat or with unet/ + scheduler/). */
export function readModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir)) throw new Error(`${dir}: model folder not found`);
  const unetDir = existsSync(join(dir, 'unet', 'config.json')) ? join(dir, 'unet') : dir;
  const schedDir = existsSync(join(dir, 'scheduler', 'scheduler_config.json')) ? join(dir, 'scheduler') : dir;
  const cfgPath = join(unetDir, 'config.json');
  const rawCfg = readJson(cfgPath);
  if (rawCfg._class_name && rawCfg._class_name !== 'UNet2DModel') throw new Error(`${cfgPath}: field "_class_name" is ${JSON.stringify(rawCfg._class_name)}, expected "UNet2DModel"`);
  const unetConfig = withDefaults(rawCfg as Record<string, unknown>);
  validateConfig(unetConfig, cfgPath);
  const schedPath = join(schedDir, 'scheduler_config.json');
  const diffusion = existsSync(schedPath) ? diffusionFromScheduler(readJson(schedPath), schedPath) : { config: { ...PAPER_DIFFUSION } };
  const wPath = join(unetDir, WEIGHTS_FILE);
  if (!existsSync(wPath)) throw new Error(`${unetDir}: ${WEIGHTS_FILE} not found`);
  const { tensors } = parseSafetensors(new Uint8Array(readFileSync(wPath)), wPath);
  const weights = new Map<string, SafeTensor>();
  for (const [k, v] of tensors) weights.set(normalizeName(k), v);
  return { unetConfig, diffusion, weights };
}

/** Copies weights into a model, checking every name and shape against the config. */
export function loadWeights(model: UNet, weights: Map<string, SafeTensor>, file: string): void {
  for (const [name, p] of model.params) {
    const w = weights.get(name);
    if (!w) throw new Error(`${file}: tensor "${name}" is missing (config.json expects shape ${fmtShape(p.shape)})`);
    if (w.shape.length !== p.shape.length || w.shape.some((d, i) => d !== p.shape[i]))
      throw new Error(`${file}: tensor "${name}" has shape ${fmtShape(w.shape)}, but config.json implies ${fmtShape(p.shape)}`);
    p.storage.set(w.data);
  }
  for (const name of weights.keys()) if (!model.params.has(name)) throw new Error(`${file}: unexpected tensor "${name}" (not part of the model described by config.json)`);
}

export function loadModel(dir: string): { model: UNet; folder: ModelFolder } {
  const folder = readModelFolder(dir);
  const model = new UNet(folder.unetConfig);
  loadWeights(model, folder.weights, join(dir, WEIGHTS_FILE));
  return { model, folder };
}

export function weightsOf(model: UNet, values?: Float32Array[]): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  [...model.params.entries()].forEach(([name, p], i) => out.set(name, { shape: p.shape, data: values ? values[i] : p.storage }));
  return out;
}

/** Writes a flat diffusers folder (each file atomically). */
export function writeModelFolder(dir: string, unetConfig: UNetConfig, diffusion: DiffusionConfig, weights: Map<string, SafeTensor>): void {
  writeFileAtomic(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'DDPMPipeline', _diffusers_version: '0.21.0', scheduler: ['diffusers', 'DDPMScheduler'], unet: ['diffusers', 'UNet2DModel'] }, null, 2));
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ _class_name: 'UNet2DModel', _diffusers_version: '0.21.0', ...unetConfig, act_fn: 'silu', center_input_sample: false, mid_block_scale_factor: 1, time_embedding_type: 'positional' }, null, 2));
  writeFileAtomic(join(dir, 'scheduler_config.json'), JSON.stringify(schedulerConfig(diffusion), null, 2));
  writeFileAtomic(join(dir, WEIGHTS_FILE), serializeSafetensors(weights, { format: 'pt' }));
}
