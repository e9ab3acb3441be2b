// `ddpm edit`: image-to-image with SDEdit (src/diffusion/sdedit.ts): the input noised part of the way up the chain,
// then denoised by any sampler; strength 0 returns it, strength 1 samples from scratch with the same seed.
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import * as ops from '../../engine/ops.js';
import { noGrad } from '../../engine/tensor.js';
import { defaultClip, type SamplerName, type Spacing, samplerPlan } from '../../diffusion/samplers.js';
import { sdedit, sdeditStart } from '../../diffusion/sdedit.js';
import { loadImages } from '../../data/images.js';
import { writeFileAtomic } from '../../io/files.js';
import { serializeNpy } from '../../io/npy.js';
import { imageGrid, writeImages, writePng } from '../../io/png.js';
import { assertFinite } from '../../eval/sample-run.js';
import { Progress } from '../progress.js';
import {
  SAMPLERS,
  checkForwardBatch,
  checkGuidance,
  classOptions,
  int,
  loadForSampling,
  num,
  prepareOut,
  spacingOption,
  stepsSpec,
  warn,
} from '../shared.js';
import { classDenoiser } from '../../diffusion/guidance.js';

export interface EditOptions {
  class?: string;
  guidance: number;
  model: string;
  image: string;
  strength: number;
  out: string;
  overwrite: boolean;
  sampler: SamplerName;
  steps?: string;
  timestepSpacing?: Spacing;
  eta?: number;
  clip?: boolean;
  batch: number;
  seed: number;
  npy: boolean;
}

export function register(program: Command): void {
  program
    .command('edit')
    .description('image-to-image (SDEdit): noise the input part of the way, then denoise it with any sampler')
    .requiredOption('--model <dir>', 'diffusers model folder, or the name of a shipped model')
    .requiredOption('--image <spec>', 'a PNG (a sketch), a folder of PNGs, or a .npy [N, C, H, W] on [-1, 1]')
    .option(
      '--strength <x>',
      'how far up the chain (0: the input back, 1: a new sample from the same seed)',
      num('--strength', 0, 1),
      0.6,
    )
    .requiredOption('--out <dir>', 'output folder: edited-NNNNN.png, grid.png (inputs, results)')
    .option('--overwrite', 'replace the images of an earlier run in --out (only files this command writes)', false)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLERS).default('ddim'))
    .option(
      '--steps <spec>',
      'reverse steps of the whole chain, as for sample (default 50, or T if fewer); strength x steps of them run',
      stepsSpec,
    )
    .addOption(spacingOption())
    .option('--eta <x>', 'DDIM eta (default 0)', num('--eta', 0))
    .option('--clip', 'clip the x0 estimate to [-1, 1] (default: as for sample)')
    .option('--no-clip', 'do not clip the x0 estimate')
    .option('--batch <n>', 'images per batch', int('--batch', 1), 16)
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option('--npy', 'also write the results as samples.npy ([N, C, H, W] on [-1, 1])', false)
    .addOption(classOptions('image')[0])
    .addOption(classOptions('image')[1])
    .action(editCommand);
}

const OWN_FILES = /^(edited-\d+\.png|grid\.png|samples\.npy)$/;

export async function editCommand(o: EditOptions): Promise<void> {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const C = cfg.in_channels,
    S = cfg.sample_size,
    per = C * S * S;
  const img = loadImages(o.image, S, C as 1 | 3, '--image');
  for (const w of img.warnings) warn(w);
  checkForwardBatch(cfg, Math.min(o.batch, img.n), 'editing');
  checkGuidance(cfg, o.guidance);
  const denoiser = classDenoiser(model, cfg, o.class, o.guidance, img.n);
  const opts = {
    sampler: o.sampler,
    steps: o.steps ?? String(Math.min(50, diffusion.numTimesteps)),
    timestepSpacing: o.timestepSpacing,
    seed: o.seed,
    eta: o.eta,
    clip: o.clip ?? defaultClip(o.sampler, diffusion),
  };
  if (o.eta !== undefined && o.sampler !== 'ddim')
    warn(`--eta applies to the ddim sampler only; the ${o.sampler} sampler ignores it`);
  const total = samplerPlan(diffusion, opts).plan.length;
  const { steps } = sdeditStart(total, o.strength);
  const clearOut = prepareOut(o.out, OWN_FILES, o.overwrite, [o.image]);
  const all = new Float32Array(img.n * per);
  const bar = new Progress(
    `edit (${steps} of ${total} ${o.sampler} steps)`,
    Math.max(1, Math.ceil(img.n / o.batch) * steps),
    0,
  );
  let done = 0;
  for (let start = 0; start < img.n; start += o.batch) {
    const B = Math.min(o.batch, img.n - start);
    const x0 = ops.fromArray(img.x.subarray(start * per, (start + B) * per), [B, C, S, S]);
    const it = sdedit(diffusion, denoiser?.(start, B) ?? ((x, t) => model.forward(x, t)), x0, o.strength, {
      ...opts,
      sampleStart: start,
    });
    let r = noGrad(() => it.next());
    while (!r.done) {
      bar.update(++done);
      r = noGrad(() => it.next());
    }
    const x = await r.value.data();
    assertFinite(x, `edit (images ${start}..${start + B - 1})`);
    all.set(x, start * per);
  }
  const pairs = new Float32Array(2 * img.n * per);
  pairs.set(img.x.subarray(0, img.n * per), 0);
  pairs.set(all, img.n * per);
  clearOut();
  writePng(join(o.out, 'grid.png'), imageGrid(pairs, [2 * img.n, C, S, S], img.n));
  writeImages(all, [img.n, C, S, S], (i) => join(o.out, `edited-${String(i).padStart(5, '0')}.png`));
  if (o.npy) writeFileAtomic(join(o.out, 'samples.npy'), serializeNpy(all, [img.n, C, S, S]));
  console.error(
    `wrote ${img.n} edited ${S}x${S} PNGs and ${join(o.out, 'grid.png')} (SDEdit, strength ${o.strength}: ${steps} ` +
      `of ${total} ${o.sampler} steps)`,
  );
}
