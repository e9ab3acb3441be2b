// `ddpm convert`: rewrites a model folder as a flat diffusers folder (new attention names; float32 or float16).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadModel, weightsOf, writeModelFolder } from '../../io/checkpoint.js';
import { modelPath } from '../../io/models.js';
import { ensureWritableDir } from '../shared.js';

export interface ConvertOptions {
  model: string;
  out: string;
  float16: boolean;
  overwrite?: boolean;
}

export function register(program: Command): void {
  program
    .command('convert')
    .description('rewrite a model folder as a flat diffusers folder with new attention names (float32 safetensors)')
    .requiredOption('--model <dir>', 'source model folder')
    .requiredOption('--out <dir>', 'destination folder (new or empty, or --overwrite to replace a model folder there)')
    .option('--float16', 'store the weights as float16 (half the size; read back as float32)', false)
    .option('--overwrite', 'replace the model files of a folder that already holds a model', false)
    .action(convertCommand);
}

export async function convertCommand(o: ConvertOptions): Promise<void> {
  const src = modelPath(o.model);
  if (resolve(src) === resolve(o.out)) throw new Error(`--out ${o.out}: is the source folder; choose another`);
  if (existsSync(o.out) && statSync(o.out).isDirectory() && readdirSync(o.out).length && !o.overwrite)
    throw new Error(
      `--out ${o.out}: is not empty; choose a new folder, or pass --overwrite to replace the model files there`,
    );
  ensureWritableDir(o.out, '--out');
  const { model, folder } = loadModel(src);
  for (const w of folder.warnings) console.error(w);
  writeModelFolder(
    o.out,
    folder.unetConfig,
    folder.diffusion.config,
    await weightsOf(model),
    o.float16 ? 'F16' : 'F32',
  );
  console.error(`wrote ${o.out}${o.float16 ? ' (float16 weights)' : ''}`);
}
