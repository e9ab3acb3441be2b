// `ddpm demo`, the main job on the embedded default: 16 digits from the shipped MNIST model in seconds, then the
// mnist preset trained on the embedded digits for a few minutes, a sample grid and a denoising strip.
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { getBackend } from '../../engine/tensor.js';
import { MODELS_DIR } from '../../io/models.js';
import { checkpointDirs } from '../../training/train.js';
import { ensureWritableDir, int, num } from '../shared.js';
import { sampleCommand } from './sample.js';
import { trainCommand } from './train.js';

/** The file that marks a folder as the demo's own. */
const MARKER = '.ddpm-demo';

export interface DemoOptions {
  out: string;
  minutes: number;
  steps?: number;
  seed: number;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'the main job on the embedded default: train the mnist preset for a few minutes, write a sample grid and a ' +
        'denoising strip',
    )
    .option('--out <dir>', 'output folder', 'runs/demo')
    .option('--minutes <x>', 'training time budget', num('--minutes', 0.1), 4)
    .option('--steps <n>', 'stop training after this many steps (default: when the time is up)', int('--steps', 1))
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .action(demoCommand);
}

export async function demoCommand(o: DemoOptions): Promise<void> {
  const out = o.out,
    run = join(out, 'train');
  // the demo replaces its own images: its --out must be new, empty, or an earlier demo's (marked by MARKER)
  if (existsSync(out) && statSync(out).isDirectory() && readdirSync(out).length && !existsSync(join(out, MARKER)))
    throw new Error(`--out ${out}: holds files that the demo did not make; choose a new or empty folder`);
  ensureWritableDir(out, '--out');
  writeFileSync(join(out, MARKER), 'a folder of `ddpm demo`: it may replace the images here\n');
  // first, clean digits in seconds from the model shipped with ddpm
  if (existsSync(join(MODELS_DIR, 'mnist', 'config.json'))) {
    const t0 = Date.now();
    console.error(
      'ddpm demo: sampling 16 digits from the shipped mnist model (ancestral, 100 steps: the best of docs/samplers.md)',
    );
    await sampleCommand({
      model: 'mnist',
      out: join(out, 'shipped'),
      overwrite: true,
      num: 16,
      batch: 16,
      sampler: 'ancestral',
      steps: '100',
      seed: o.seed,
      strip: false,
      guidance: 1,
    });
    console.error(`ddpm demo: ${join(out, 'shipped', 'grid.png')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } else console.error(`ddpm demo: no shipped model in ${join(MODELS_DIR, 'mnist')}; skipping the first samples`);
  const earlier = checkpointDirs(run).pop();
  if (earlier)
    console.error(
      `ddpm demo: continuing the earlier demo in ${run} from step ${earlier.step} (delete the folder to start over)`,
    );
  console.error(
    `ddpm demo: training the mnist preset on the embedded digits in ${run} for ${o.minutes} ` +
      `minutes${o.steps ? ` or ${o.steps} steps` : ''} (backend ${getBackend().name}), then sampling`,
  );
  await trainCommand({
    data: 'embedded',
    out: run,
    preset: 'mnist',
    steps: (earlier?.step ?? 0) + (o.steps ?? 100000),
    batch: 16,
    lr: 1e-3,
    warmup: 100,
    gradClip: 1,
    ema: 0.999,
    emaWarmup: true,
    flip: false,
    accumulate: 1,
    checkpointEvery: 200,
    keep: 2,
    sampleEvery: 0,
    sampleSteps: 100,
    timesteps: 1000,
    seed: o.seed,
    maxMinutes: o.minutes,
    evalSamples: 256,
  });
  if (process.exitCode) return;
  await sampleCommand({
    model: run,
    out: join(out, 'samples'),
    overwrite: true,
    num: 16,
    batch: 16,
    sampler: 'ddim',
    steps: '50',
    seed: o.seed,
    strip: true,
    guidance: 1,
  });
  const curve = existsSync(join(run, 'loss.png')) ? `, ${join(run, 'loss.png')} (loss curve)` : '';
  console.error(
    `demo done: ${join(out, 'samples', 'grid.png')} (samples), ${join(out, 'samples', 'strip.png')} (denoising ` +
      `strip)${curve}`,
  );
}
