// `ddpm eval bpd`: bits/dim (the variational bound, eq. 5) on a dataset, with its terms and the rate-distortion curve.
import type { Command } from 'commander';
import { EXACT_HEAD, bitsPerDim } from '../../eval/bpd.js';
import { makeBatch } from '../../data/dataset.js';
import type { Tensor } from '../../engine/tensor.js';
import type { Timesteps } from '../../diffusion/gaussian.js';
import { isClassConditional } from '../../model/unet.js';
import type { Split } from '../../data/load.js';
import { evalSubset } from '../../eval/image-sets.js';
import { writeFileAtomic } from '../../io/files.js';
import { linePlot, writePng } from '../../io/png.js';
import { Progress } from '../progress.js';
import { checkForwardBatch, ensureWritableFile, int, loadDataset, loadForSampling, split, warn } from '../shared.js';

const CLIPPED = 'clipped to [-1, 1] (the official calc_bpd_loop default; --no-clip for the unclipped bound)';

export interface EvalBpdOptions {
  model: string;
  data: string;
  split: Split;
  num?: number;
  spread: boolean;
  batch: number;
  tStride: number;
  seed: number;
  clip: boolean;
  out?: string;
  rdPlot?: string;
}

export function register(evalCmd: Command): void {
  evalCmd
    .command('bpd')
    .description('bits/dim (the variational bound, eq. 5) on a dataset, with per-t, prior and decoder terms')
    .requiredOption('--model <dir>', 'diffusers model folder')
    .requiredOption('--data <spec>', 'dataset (as for train)')
    .option('--split <s>', 'train or test', split, 'test')
    .option('-n, --num <n>', 'number of images (default: all)', int('-n', 1))
    .option(
      '--spread',
      "with -n below the set's size: take the images evenly spread over the set, not the first n (a set stored in " +
        'class order)',
      false,
    )
    .option('--batch <n>', 'batch size', int('--batch', 1), 64)
    .option(
      '--t-stride <n>',
      'above t = 100, evaluate every k-th timestep and weight it k times (an estimate; 1 = every t)',
      int('--t-stride', 1),
      1,
    )
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option(
      '--no-clip',
      'do not clip the x0 estimate to [-1, 1] in the KL and decoder terms (the official calc_bpd_loop clips)',
    )
    .option('--out <file>', 'write the per-t terms and the rate-distortion curve as JSON')
    .option('--rd-plot <file>', 'write the rate-distortion curve (paper Fig. 5) as PNG')
    .action(evalBpdCommand);
}

export async function evalBpdCommand(o: EvalBpdOptions): Promise<void> {
  if (o.out) ensureWritableFile(o.out, '--out');
  if (o.rdPlot) ensureWritableFile(o.rdPlot, '--rd-plot');
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const data = loadDataset(o.data, o.split, { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  if (data.channels !== cfg.in_channels || data.height !== cfg.sample_size)
    throw new Error(
      `${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ` +
        `${cfg.in_channels}x${cfg.sample_size}x${cfg.sample_size}`,
    );
  if (o.num !== undefined && o.num > data.count)
    warn(`-n ${o.num}: ${data.name} has only ${data.count} images; evaluating all of them`);
  const n = Math.min(o.num ?? data.count, data.count);
  checkForwardBatch(cfg, Math.min(o.batch, n), 'eval bpd');
  const { indices: pick, which } = evalSubset(data, n, o.spread, '', warn);
  const clip = o.clip !== false;
  const nBatches = Math.ceil(n / o.batch);
  let bar: Progress | null = null;
  // a class-conditional model is evaluated on each image's own label: the bound on -log p(x | y)
  const conditional = isClassConditional(cfg);
  const labels = data.labels;
  if (conditional && !labels)
    throw new Error(`${data.name}: the model is class-conditional, and this set has no labels`);
  function* batches() {
    for (let s = 0; s < n; s += o.batch) {
      const idx = pick.subarray(s, Math.min(n, s + o.batch));
      const y = conditional && labels ? Int32Array.from(idx, (i) => labels[i]) : undefined;
      const own = y ? (x: Tensor, t: Timesteps) => model.forward(x, t, { classLabels: y }) : undefined;
      yield { x0: makeBatch(data, idx), start: s, model: own };
    }
  }
  const r = await bitsPerDim(diffusion, (x, t) => model.forward(x, t), batches(), {
    seed: o.seed,
    tStride: o.tStride,
    clip,
    onProgress: (start, tDone, tTotal) => {
      bar ??= new Progress('eval bpd (batches x timesteps)', nBatches * tTotal, 0);
      bar.update((start / o.batch) * tTotal + tDone);
    },
  });
  const q = (a: number, b: number) =>
    r.terms.filter((x) => x.t >= a && x.t < b).reduce((s, x) => s + x.bpd * x.weight, 0);
  const Tn = diffusion.numTimesteps;
  console.log(`images          ${r.images} (${data.name}, ${o.split}${which ? `, ${which}` : ''})`);
  const terms =
    o.tStride > 1
      ? `t < ${EXACT_HEAD} exact, above that every ${o.tStride}th t stands for its neighbours`
      : 'all T terms';
  console.log(`bits/dim        ${r.total.toFixed(4)}   (upper bound on NLL, eq. 5; ${terms})`);
  console.log(`x0 estimate     ${clip ? CLIPPED : 'not clipped (--no-clip)'}`);
  console.log(`  prior L_T     ${r.prior.toExponential(3)}`);
  console.log(`  decoder L_0   ${r.decoder.toFixed(4)}`);
  console.log(`  KL sum        ${r.kl.toFixed(4)}`);
  for (let k = 0; k < 4; k++)
    console.log(
      `    t in [${Math.floor((k * Tn) / 4)}, ${Math.floor(((k + 1) * Tn) / 4)})  ` +
        `${q(Math.max(1, Math.floor((k * Tn) / 4)), Math.floor(((k + 1) * Tn) / 4)).toFixed(4)}`,
    );
  // rate-distortion of the reverse chain as a code (paper Table 4): at reverse steps T/10, 2T/10, ..., T
  console.log('rate-distortion (reverse step: rate bits/dim, RMSE on 0-255)');
  for (let k = 1; k <= 10; k++) {
    const step = Math.round((k * Tn) / 10),
      want = Tn - step;
    const row = r.rateDistortion.reduce((best, x) => (Math.abs(x.t - want) < Math.abs(best.t - want) ? x : best));
    console.log(`  ${String(step).padStart(5)} (t=${row.t}): ${row.rate.toFixed(5)}  ${row.rmse.toFixed(3)}`);
  }
  if (o.out) writeFileAtomic(o.out, JSON.stringify(r, null, 2));
  if (o.rdPlot) {
    const pts = r.rateDistortion.map((x) => [x.rate, x.rmse] as [number, number]);
    writePng(o.rdPlot, linePlot([{ points: pts, color: [200, 40, 40] }]));
    console.error(`wrote ${o.rdPlot} (x: rate in bits/dim, y: RMSE on 0-255)`);
  }
}
