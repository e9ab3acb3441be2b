// `ddpm sample`: draws samples from a model folder into PNGs (a grid, single images, a denoising strip, an .npy).
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { classDenoiser } from '../../diffusion/guidance.js';
import { defaultClip, type SamplerName, samplerPlan } from '../../diffusion/samplers.js';
import type { Spacing } from '../../diffusion/samplers.js';
import { writeFileAtomic } from '../../io/files.js';
import { modelLabel, shippedModels } from '../../io/models.js';
import { serializeNpy } from '../../io/npy.js';
import { imageGrid, writeImages, writePng } from '../../io/png.js';
import { availableMemory, gib } from '../../io/system.js';
import { drawSamples } from '../../eval/sample-run.js';
import { Progress } from '../progress.js';
import {
  SAMPLERS,
  checkForwardBatch,
  checkGuidance,
  prepareOut,
  int,
  loadForSampling,
  num,
  classOptions,
  spacingOption,
  stepsSpec,
  warn,
} from '../shared.js';

export interface SampleCommandOptions {
  model: string;
  out?: string;
  overwrite: boolean;
  num: number;
  batch: number;
  sampler: SamplerName;
  steps?: string;
  timestepSpacing?: Spacing;
  eta?: number;
  seed: number;
  clip?: boolean;
  strip: boolean;
  npy?: boolean;
  class?: string;
  guidance: number;
}

export function register(program: Command): void {
  program
    .command('sample')
    .description('draw samples from a model folder; writes a PNG grid and single PNGs')
    .requiredOption(
      '--model <dir>',
      `diffusers model folder, or the name of a shipped model (${shippedModels().join(', ')})`,
    )
    .option('--out <dir>', 'output folder (default: samples/<model>-<sampler>-<steps>-seed<seed>)')
    .option(
      '--overwrite',
      'replace the images of an earlier run in --out (only files this command writes are removed)',
      false,
    )
    .option('-n, --num <n>', 'number of samples', int('-n', 1), 16)
    .option('--batch <n>', 'batch size', int('--batch', 1), 16)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLERS).default('ancestral'))
    .option(
      '--steps <spec>',
      'reverse steps: a count, counts per section ("10,15,20") or ddimN, as improved-diffusion\'s space_timesteps ' +
        '(default: all T)',
      stepsSpec,
    )
    .addOption(spacingOption())
    .option('--eta <x>', 'DDIM eta (default 0)', num('--eta', 0))
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option(
      '--clip',
      "clip the x0 estimate to [-1, 1] (default: the folder's clip_sample for ancestral/ddim/langevin/pc; off for " +
        'the ODE solvers, as diffusers)',
    )
    .option('--no-clip', 'do not clip the x0 estimate')
    .option('--strip', 'also write a denoising strip (x0 estimates along the chain)', false)
    .option('--npy', 'also write all samples as samples.npy ([N, C, H, W] on [-1, 1], for eval quality)', false)
    .addOption(classOptions('sample')[0])
    .addOption(classOptions('sample')[1])
    .action(sampleCommand);
}

const OWN_SAMPLE_FILES = /^(sample-\d+\.png|grid\.png|strip\.png|samples\.npy)$/;

export async function sampleCommand(o: SampleCommandOptions): Promise<void> {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const n = o.num,
    S = cfg.sample_size,
    C = cfg.in_channels;
  const bytes = n * C * S * S * 4 * 2;
  if (bytes > 0.5 * availableMemory())
    throw new Error(
      `-n ${n}: ${n} samples of ${C}x${S}x${S} need ${gib(bytes)} GiB to hold, more than half of this machine's ` +
        `${gib(availableMemory())} GiB; draw them in several runs with --seed and disjoint --out`,
    );
  checkForwardBatch(cfg, Math.min(o.batch, n), 'sampling');
  const sampler = o.sampler,
    spacing = o.timestepSpacing;
  if (o.eta !== undefined && sampler !== 'ddim')
    warn(`--eta applies to the ddim sampler only; the ${sampler} sampler ignores it`);
  // validates --steps and --timestep-spacing before any work
  const { plan } = samplerPlan(diffusion, { sampler, steps: o.steps, timestepSpacing: spacing });
  const clip = o.clip ?? defaultClip(sampler, diffusion);
  const stepsLabel = `${o.steps ?? diffusion.numTimesteps}${spacing ? `-${spacing}` : ''}`.replace(/,/g, '_');
  checkGuidance(cfg, o.guidance);
  const denoiser = classDenoiser(model, cfg, o.class, o.guidance, n);
  const cond =
    o.class !== undefined || o.guidance !== 1 ? `-class${(o.class ?? 'all').replace(/,/g, '_')}-w${o.guidance}` : '';
  const out = o.out ?? join('samples', `${modelLabel(o.model)}-${sampler}-${stepsLabel}${cond}-seed${o.seed}`);
  // the earlier run's images go once the new ones are drawn
  const clearOut = prepareOut(out, OWN_SAMPLE_FILES, o.overwrite, [], 'images');
  const stripTensors: Promise<Float32Array>[] = [];
  let bar: Progress | undefined;
  const all = await drawSamples(
    model,
    diffusion,
    [n, C, S, S],
    o.batch,
    { sampler, steps: o.steps, timestepSpacing: spacing, seed: o.seed, eta: o.eta, clip },
    {
      what: 'sample',
      onStep: (st, start) => {
        if (o.strip && start === 0 && (st.step % Math.max(1, Math.floor(st.total / 10)) === 0 || st.step === st.total))
          stripTensors.push(st.predX0.data()); // read now: a step's tensors live until the next step
      },
      denoiser,
      onProgress: (done, total) => {
        bar ??= new Progress(`sample ${sampler}`, total, 0);
        bar.update(done);
      },
    },
  );
  const stripRows = (await Promise.all(stripTensors)).map((x) => x.slice(0, Math.min(n, 8) * C * S * S));
  clearOut();
  writePng(join(out, 'grid.png'), imageGrid(all, [n, C, S, S], Math.ceil(Math.sqrt(n))));
  writeImages(all, [n, C, S, S], (i) => join(out, `sample-${String(i).padStart(5, '0')}.png`));
  if (o.npy) writeFileAtomic(join(out, 'samples.npy'), serializeNpy(all, [n, C, S, S]));
  if (stripRows.length) {
    const k = stripRows[0].length / (C * S * S);
    // rows: samples; columns: the x0 estimate along the chain
    const strip = new Float32Array(k * stripRows.length * C * S * S);
    for (let s = 0; s < k; s++)
      stripRows.forEach((row, j) =>
        strip.set(row.subarray(s * C * S * S, (s + 1) * C * S * S), (s * stripRows.length + j) * C * S * S),
      );
    writePng(join(out, 'strip.png'), imageGrid(strip, [k * stripRows.length, C, S, S], stripRows.length));
  }
  console.error(
    `wrote ${join(out, 'grid.png')} and ${n} single ${S}x${S} ` +
      `PNGs${stripRows.length ? ` and ${join(out, 'strip.png')}` : ''} (${sampler}, ${plan.length} steps, clip ` +
      `${clip ? 'on' : 'off'})`,
  );
}
