// Model folders in the diffusers format on disk (Node): model_index.json, config.json, scheduler_config.json and
// diffusion_pytorch_model.safetensors, flat or with unet/ and scheduler/ subfolders. The parsing itself is pure
// (diffusers.ts), shared with the browser.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DiffusionConfig } from '../diffusion/gaussian.js';
import { UNet, type UNetConfig } from '../model/unet.js';
import { type SafeTensor, serializeSafetensors } from './safetensors.js';
import { readJson, writeFileAtomic } from './files.js';
import { type ModelFolder, WEIGHTS_FILE, loadWeights, parseModelFolder, schedulerConfig } from './diffusers.js';

export * from './diffusers.js';

/** Reads a diffusers model folder (flat or with unet/ + scheduler/). */
export function readModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir)) throw new Error(`${dir}: model folder not found`);
  const unetDir = existsSync(join(dir, 'unet', 'config.json')) ? join(dir, 'unet') : dir;
  const schedDir = existsSync(join(dir, 'scheduler', 'scheduler_config.json')) ? join(dir, 'scheduler') : dir;
  const cfgPath = join(unetDir, 'config.json'),
    schedPath = join(schedDir, 'scheduler_config.json'),
    wPath = join(unetDir, WEIGHTS_FILE);
  const config = readJson(cfgPath);
  const scheduler = existsSync(schedPath) ? readJson(schedPath) : undefined;
  const weights = () => {
    if (!existsSync(wPath)) throw new Error(`${unetDir}: ${WEIGHTS_FILE} not found`);
    return new Uint8Array(readFileSync(wPath));
  };
  return parseModelFolder(
    { config, scheduler, weights },
    { dir, config: cfgPath, scheduler: schedPath, weights: wPath },
  );
}

export function loadModel(dir: string): { model: UNet; folder: ModelFolder } {
  const folder = readModelFolder(dir);
  const model = new UNet(folder.unetConfig);
  loadWeights(model, folder.weights, join(dir, WEIGHTS_FILE));
  return { model, folder };
}

/**
 * Writes a flat diffusers folder (each file atomically); dtype F16 halves the weights file (loaders read it as
 * float32).
 */
export function writeModelFolder(
  dir: string,
  unetConfig: UNetConfig,
  diffusion: DiffusionConfig,
  weights: Map<string, SafeTensor>,
  dtype: 'F32' | 'F16' = 'F32',
): void {
  writeFileAtomic(
    join(dir, 'model_index.json'),
    JSON.stringify(
      {
        _class_name: 'DDPMPipeline',
        _diffusers_version: '0.21.0',
        scheduler: ['diffusers', 'DDPMScheduler'],
        unet: ['diffusers', 'UNet2DModel'],
      },
      null,
      2,
    ),
  );
  writeFileAtomic(
    join(dir, 'config.json'),
    JSON.stringify(
      {
        _class_name: 'UNet2DModel',
        _diffusers_version: '0.21.0',
        ...unetConfig,
        act_fn: 'silu',
        center_input_sample: unetConfig.center_input_sample ?? false,
        mid_block_scale_factor: 1,
        time_embedding_type: 'positional',
      },
      null,
      2,
    ),
  );
  writeFileAtomic(join(dir, 'scheduler_config.json'), JSON.stringify(schedulerConfig(diffusion), null, 2));
  writeFileAtomic(join(dir, WEIGHTS_FILE), serializeSafetensors(weights, { format: 'pt' }, dtype));
}
