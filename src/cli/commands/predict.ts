// `ddpm predict`: the model's output on x_t given as .npy (to compare with PyTorch).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { fromArray } from '../../engine/ops.js';
import { classCount, labelsFor } from '../../diffusion/guidance.js';
import { isClassConditional } from '../../model/unet.js';
import { noGrad } from '../../engine/tensor.js';
import { writeFileAtomic } from '../../io/files.js';
import { parseNpy, serializeNpy } from '../../io/npy.js';
import { assertFinite } from '../../eval/sample-run.js';
import { classSpec, ensureWritableFile, loadForSampling } from '../shared.js';

export interface PredictOptions {
  model: string;
  input: string;
  t: string;
  output: string;
  class?: string;
}

export function register(program: Command): void {
  program
    .command('predict')
    .description('run a model on x_t given as .npy (and t) and write its output as .npy')
    .requiredOption('--model <dir>', 'diffusers model folder')
    .requiredOption('--input <file>', '.npy float32 array [B, C, H, W]')
    .requiredOption('--t <list>', 'timesteps in [0, T): one integer, or comma-separated per sample')
    .requiredOption('--output <file>', '.npy to write')
    .option('--class <list>', 'class-conditional models: one class, or comma-separated per sample', classSpec())
    .action(predictCommand);
}

export async function predictCommand(o: PredictOptions): Promise<void> {
  ensureWritableFile(o.output, '--output');
  const { model, folder } = loadForSampling(o.model);
  const Tn = folder.diffusion.config.timesteps;
  const { shape, data } = parseNpy(new Uint8Array(readFileSync(o.input)), o.input);
  if (shape.length !== 4) throw new Error(`${o.input}: expected a [B, C, H, W] array, got shape (${shape.join(', ')})`);
  const spec = String(o.t).trim();
  if (!/^\d+(\s*,\s*\d+)*$/.test(spec))
    throw new Error(`--t: expected an integer or comma-separated integers, got "${o.t}"`);
  const ts = spec.split(',').map((v) => Number(v.trim()));
  const bad = ts.find((t) => t >= Tn);
  if (bad !== undefined) throw new Error(`--t: ${bad} is outside the model's timesteps [0, ${Tn - 1}]`);
  const t = Int32Array.from(ts.length === 1 ? new Array(shape[0]).fill(ts[0]) : ts);
  if (t.length !== shape[0]) throw new Error(`--t: ${t.length} timesteps for a batch of ${shape[0]}`);
  let classLabels: Int32Array | undefined;
  if (o.class !== undefined || isClassConditional(folder.unetConfig)) {
    if (!isClassConditional(folder.unetConfig)) throw new Error('--class: this model is not class-conditional');
    if (o.class === undefined)
      throw new Error('--class: this model is class-conditional; give the class of each ' + 'sample');
    const list = o.class.split(',');
    classLabels = labelsFor(o.class, shape[0], 0, classCount(folder.unetConfig));
    if (list.length !== 1 && list.length !== shape[0])
      throw new Error(`--class: ${list.length} classes for a batch ` + `of ${shape[0]}`);
  }
  const y = noGrad(() => model.forward(fromArray(data, shape), t, { classLabels }));
  const ys = await y.data();
  assertFinite(ys, 'predict');
  writeFileAtomic(o.output, serializeNpy(ys, y.shape));
  console.error(`wrote ${o.output} (${y.shape.join('x')})`);
}
