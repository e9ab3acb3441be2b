// `ddpm inpaint`: fills the masked part of images with RePaint (src/diffusion/repaint.ts); the known pixels come back
// exactly. `ddpm edit` (edit.ts) is its image-to-image sibling.
import { join } from 'node:path';
import type { Command } from 'commander';
import * as ops from '../../engine/ops.js';
import { noGrad } from '../../engine/tensor.js';
import { inpaint, repaintTimesteps } from '../../diffusion/repaint.js';
import { loadImages } from '../../data/images.js';
import { writeFileAtomic } from '../../io/files.js';
import { serializeNpy } from '../../io/npy.js';
import { imageGrid, writeImages, writePng } from '../../io/png.js';
import { assertFinite } from '../../eval/sample-run.js';
import { Progress } from '../progress.js';
import {
  checkForwardBatch,
  checkGuidance,
  classOptions,
  int,
  loadForSampling,
  num,
  prepareOut,
  warn,
} from '../shared.js';
import { classDenoiser } from '../../diffusion/guidance.js';

export interface InpaintOptions {
  class?: string;
  guidance: number;
  model: string;
  image: string;
  mask: string;
  out: string;
  overwrite: boolean;
  steps: number;
  jumpLength: number;
  jumpNSample: number;
  eta: number;
  clip: boolean;
  batch: number;
  seed: number;
  npy: boolean;
}

export function register(program: Command): void {
  program
    .command('inpaint')
    .description(
      "fill the masked part of images (RePaint, as diffusers' RePaintScheduler); known pixels are kept exactly",
    )
    .requiredOption('--model <dir>', 'diffusers model folder, or the name of a shipped model')
    .requiredOption(
      '--image <spec>',
      'a PNG, a folder of PNGs, or a .npy [N, C, H, W] on [-1, 1] (resized to the model)',
    )
    .requiredOption(
      '--mask <spec>',
      'one PNG for every image, or one per image (folder / .npy): white = keep, black = fill',
    )
    .requiredOption('--out <dir>', 'output folder: inpainted-NNNNN.png, grid.png (input with the hole, result)')
    .option('--overwrite', 'replace the images of an earlier run in --out (only files this command writes)', false)
    .option('--steps <n>', 'reverse steps over the T timesteps (the paper: 250)', int('--steps', 1), 250)
    .option('--jump-length <n>', 'steps back up the chain per jump (the paper: 10)', int('--jump-length', 1), 10)
    .option(
      '--jump-n-sample <n>',
      'passes through each jump point; 1: no resampling (the paper: 10)',
      int('--jump-n-sample', 1),
      10,
    )
    .option(
      '--eta <x>',
      "stochasticity of the generated part's step (0: DDIM-like, diffusers' default)",
      num('--eta', 0, 1),
      0,
    )
    .option('--no-clip', 'do not clip the x0 estimate to [-1, 1]')
    .option('--batch <n>', 'images per batch', int('--batch', 1), 16)
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option('--npy', 'also write the results as samples.npy ([N, C, H, W] on [-1, 1])', false)
    .addOption(classOptions('image')[0])
    .addOption(classOptions('image')[1])
    .action(inpaintCommand);
}

const OWN_FILES = /^(inpainted-\d+\.png|grid\.png|samples\.npy)$/;

export async function inpaintCommand(o: InpaintOptions): Promise<void> {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const C = cfg.in_channels,
    S = cfg.sample_size,
    per = C * S * S;
  const img = loadImages(o.image, S, C as 1 | 3, '--image');
  const mask = loadImages(o.mask, S, 1, '--mask');
  for (const w of [...img.warnings, ...mask.warnings]) warn(w);
  if (mask.n !== 1 && mask.n !== img.n)
    throw new Error(`--mask ${o.mask}: ${mask.n} masks for ${img.n} images (give one mask for all, or one per image)`);
  // white (>= mid-grey) = keep
  const m = Float32Array.from(mask.x, (v) => (v >= 0 ? 1 : 0));
  if (!m.some((v) => v === 0))
    warn(`--mask ${o.mask}: no black pixel, nothing to fill; the images come back as they are`);
  checkForwardBatch(cfg, Math.min(o.batch, img.n), 'inpainting');
  checkGuidance(cfg, o.guidance);
  const denoiser = classDenoiser(model, cfg, o.class, o.guidance, img.n);
  if (o.steps > diffusion.numTimesteps)
    warn(`--steps ${o.steps}: the model has ${diffusion.numTimesteps} timesteps; using ${diffusion.numTimesteps}`);
  if (o.jumpNSample > 1 && o.jumpLength >= Math.min(o.steps, diffusion.numTimesteps))
    warn(`--jump-length ${o.jumpLength} is not below --steps: no jumps are made (RePaint without resampling)`);
  const ts = repaintTimesteps(diffusion.numTimesteps, o.steps, o.jumpLength, o.jumpNSample);
  const clearOut = prepareOut(o.out, OWN_FILES, o.overwrite, [o.image, o.mask]);
  const all = new Float32Array(img.n * per);
  const bar = new Progress(`inpaint (${ts.length} steps)`, Math.ceil(img.n / o.batch) * ts.length, 0);
  let done = 0;
  for (let start = 0; start < img.n; start += o.batch) {
    const B = Math.min(o.batch, img.n - start);
    const known = ops.fromArray(img.x.subarray(start * per, (start + B) * per), [B, C, S, S]);
    const mk =
      mask.n === 1
        ? ops.fromArray(m, [1, 1, S, S])
        : ops.fromArray(m.subarray(start * S * S, (start + B) * S * S), [B, 1, S, S]);
    const opts = {
      steps: o.steps,
      jumpLength: o.jumpLength,
      jumpNSample: o.jumpNSample,
      eta: o.eta,
      clip: o.clip,
      seed: o.seed,
      sampleStart: start,
    };
    const it = inpaint(diffusion, denoiser?.(start, B) ?? ((x, t) => model.forward(x, t)), known, mk, opts);
    let r = noGrad(() => it.next());
    while (!r.done) {
      bar.update(++done);
      r = noGrad(() => it.next());
    }
    const x = await r.value.data();
    assertFinite(x, `inpaint (images ${start}..${start + B - 1})`);
    all.set(x, start * per);
  }
  // the grid: each input with its hole in grey above its result
  const holes = Float32Array.from(img.x, (v, i) =>
    m[mask.n === 1 ? i % (S * S) : Math.floor(i / per) * S * S + (i % (S * S))] ? v : 0,
  );
  const pairs = new Float32Array(2 * img.n * per);
  for (let i = 0; i < img.n; i++) {
    pairs.set(holes.subarray(i * per, (i + 1) * per), i * per);
    pairs.set(all.subarray(i * per, (i + 1) * per), (img.n + i) * per);
  }
  clearOut();
  writePng(join(o.out, 'grid.png'), imageGrid(pairs, [2 * img.n, C, S, S], img.n));
  writeImages(all, [img.n, C, S, S], (i) => join(o.out, `inpainted-${String(i).padStart(5, '0')}.png`));
  if (o.npy) writeFileAtomic(join(o.out, 'samples.npy'), serializeNpy(all, [img.n, C, S, S]));
  console.error(
    `wrote ${img.n} inpainted ${S}x${S} PNGs and ${join(o.out, 'grid.png')} (RePaint: ${ts.length} steps, jumps of ` +
      `${o.jumpLength} x ${o.jumpNSample})`,
  );
}
