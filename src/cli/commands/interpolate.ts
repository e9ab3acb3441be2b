// `ddpm interpolate`: two dataset images mixed in latent space (paper Fig. 8): encode to x_t, mix, decode.
import type { Command } from 'commander';
import { interpolate } from '../../diffusion/interpolate.js';
import type { DenoiseFn } from '../../diffusion/gaussian.js';
import { classDenoiser } from '../../diffusion/guidance.js';
import { isClassConditional } from '../../model/unet.js';
import { makeBatch } from '../../data/dataset.js';
import type { Split } from '../../data/load.js';
import { imageGrid, writePng } from '../../io/png.js';
import { assertFinite } from '../../eval/sample-run.js';
import { Progress } from '../progress.js';
import {
  checkGuidance,
  classSpec,
  ensureWritableFile,
  int,
  loadDataset,
  loadForSampling,
  num,
  split,
  warn,
} from '../shared.js';

export interface InterpolateOptions {
  model: string;
  data: string;
  split: Split;
  a: number;
  b: number;
  t?: number;
  count: number;
  seed: number;
  out: string;
  class?: string;
  guidance: number;
}

export function register(program: Command): void {
  program
    .command('interpolate')
    .description('interpolate between two dataset images in latent space (paper Fig. 8): encode to x_t, mix, decode')
    .requiredOption('--model <dir>', 'diffusers model folder')
    .requiredOption('--data <spec>', 'dataset (as for train)')
    .option('--split <s>', 'train or test', split, 'test')
    .option('--a <i>', 'index of the first image', int('--a', 0), 0)
    .option('--b <j>', 'index of the second image', int('--b', 0), 1)
    .option('--t <n>', 'timestep to encode to (default T/2)', int('--t', 0))
    .option('--count <n>', 'number of mixtures from 0 to 1', int('--count', 2), 9)
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option('--out <file>', 'PNG to write', 'interpolation.png')
    .option(
      '--class <k>',
      "class-conditional models: decode every mixture as class k (default: the two images' class when they share " +
        'one, else unconditionally through the null class)',
      classSpec(false),
    )
    .option('--guidance <w>', 'classifier-free guidance scale with --class', num('--guidance', 0, 100), 1)
    .action(interpolateCommand);
}

export async function interpolateCommand(o: InterpolateOptions): Promise<void> {
  ensureWritableFile(o.out, '--out');
  const { model, diffusion, cfg } = loadForSampling(o.model);
  checkGuidance(cfg, o.guidance);
  const data = loadDataset(o.data, o.split, { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  for (const [k, i] of [
    ['a', o.a],
    ['b', o.b],
  ] as const)
    if (i >= data.count) throw new Error(`--${k}: image ${i} does not exist (${data.count} images)`);
  const t = o.t ?? Math.floor(diffusion.numTimesteps / 2);
  if (t >= diffusion.numTimesteps)
    throw new Error(`--t: ${t} is outside the model's timesteps [0, ${diffusion.numTimesteps - 1}]`);
  const lambdas = Array.from({ length: o.count }, (_, i) => i / (o.count - 1));
  let denoiser: DenoiseFn = (xx, tt) => model.forward(xx, tt);
  if (isClassConditional(cfg)) {
    let spec = o.class,
      w = o.guidance;
    const la = data.labels?.[o.a],
      lb = data.labels?.[o.b];
    if (spec === undefined && la !== undefined && la === lb) spec = String(la);
    else if (spec === undefined) {
      if (cfg.ddpm_null_class === undefined || cfg.ddpm_null_class === null)
        throw new Error('--class: the two images do not share a label; give the class to decode the mixtures as');
      if (w !== 1)
        throw new Error(
          `--guidance ${w}: the two images do not share a label, so there is no class to guide towards; give --class`,
        );
      // guidance 0 is the null class alone: the unconditional model
      [spec, w] = ['0', 0];
      warn('the images do not share a label: the mixtures are decoded unconditionally (give --class to choose one)');
    }
    denoiser = classDenoiser(model, cfg, spec, w, o.count)!(0, o.count);
  } else classDenoiser(model, cfg, o.class, o.guidance, o.count); // refuses --class / --guidance by name
  const bar = new Progress('interpolate', t + 1, 0);
  const x = interpolate(diffusion, denoiser, makeBatch(data, [o.a]), makeBatch(data, [o.b]), lambdas, t, o.seed, (d) =>
    bar.update(d),
  );
  const xs = await x.data();
  assertFinite(xs, 'interpolate');
  // row: source a, the decoded mixtures, source b
  const src = await makeBatch(data, [o.a, o.b]).data(),
    per = src.length / 2;
  const row = new Float32Array(x.size + 2 * per);
  row.set(src.subarray(0, per), 0);
  row.set(xs, per);
  row.set(src.subarray(per), per + x.size);
  writePng(o.out, imageGrid(row, [o.count + 2, cfg.in_channels, cfg.sample_size, cfg.sample_size], o.count + 2));
  console.error(`wrote ${o.out} (image ${o.a}, ${o.count} mixtures decoded from t=${t}, image ${o.b})`);
}
