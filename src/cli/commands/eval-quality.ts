// `ddpm eval quality` (and `eval fid | is | kid` on Inception-v3): Frechet distance, KID, Inception Score and
// precision/recall of a set of images (a model is sampled here) against a reference set or its statistics.
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import type { SamplerName } from '../../diffusion/samplers.js';
import type { Spacing } from '../../diffusion/samplers.js';
import type { Split } from '../../data/load.js';
import { type Extractor, type ImageSetContext, extractor, imageSet } from '../../eval/image-sets.js';
import {
  type FeatureStats,
  featureStats,
  frechetDistance,
  inceptionScore,
  kernelInceptionDistance,
  precisionRecall,
} from '../../eval/metrics.js';
import { writeFileAtomic } from '../../io/files.js';
import { FEATURE_NETS } from '../../io/models.js';
import { parseNpz, serializeNpz } from '../../io/npz.js';
import { checkKeptPlan } from '../kept-plan.js';
import {
  SAMPLERS,
  checkForwardBatch,
  classSpec,
  currentPrecision,
  ensureWritableFile,
  int,
  num,
  progress,
  spacingOption,
  split,
  stepsSpec,
  warn,
} from '../shared.js';

export interface EvalQualityOptions {
  images: string;
  ref?: string;
  net: string;
  inception?: string;
  num?: number;
  refNum?: number;
  spread: boolean;
  split: Split;
  refSplit: Split;
  sampler: SamplerName;
  steps?: string;
  timestepSpacing?: Spacing;
  eta?: number;
  clip?: boolean;
  batch: number;
  seed: number;
  kidSubsets: number;
  kidSize: number;
  prNum: number;
  saveStats?: string;
  samples?: string;
  out?: string;
  class?: string;
  guidance: number;
  classAccuracy?: boolean;
}

function qualityOptions(c: Command, inception: boolean): Command {
  return c
    .requiredOption(
      '--images <spec>',
      'images to judge: a model folder or shipped model name (sampled here), a dataset, a PNG folder, or a .npy ' +
        '[N,C,H,W] on [-1, 1]',
    )
    .option(
      '--ref <spec>',
      `reference: a dataset, PNG folder, .npy, or .npz with mu and sigma (pytorch-fid / TTUR ` +
        `statistics)${inception ? '' : " (default: the network's dataset)"}`,
    )
    .addOption(
      inception
        ? new Option('--net <name>').hideHelp().default('mnist')
        : new Option(
            '--net <name>',
            'feature network: mnist, fashion (1x28x28), cifar10 (3x32x32), or a safetensors file',
          ).default('mnist'),
    )
    .option(
      '--inception <file>',
      inception
        ? "Inception-v3 weights (pytorch-fid's, as safetensors)"
        : "Inception-v3 weights (pytorch-fid's, as safetensors): FID / IS / KID on Inception features instead of " +
            'the small feature network',
    )
    .option(
      '-n, --num <n>',
      'images to judge (samples to draw from a model; default 1000 for a model, all for a dataset)',
      int('-n', 2),
    )
    .option('--ref-num <n>', 'reference images to use (default: all)', int('--ref-num', 2))
    .option(
      '--spread',
      "with -n / --ref-num below a dataset's size: take its images evenly spread over the set, not the first n (a " +
        'set stored in class order)',
      false,
    )
    .option('--split <s>', 'split of a dataset given to --images', split, 'test')
    .option('--ref-split <s>', 'split of the reference dataset', split, 'train')
    .addOption(new Option('--sampler <name>', 'sampler (model folders)').choices(SAMPLERS).default('ancestral'))
    .option('--steps <spec>', 'reverse steps (as for sample)', stepsSpec)
    .addOption(spacingOption())
    .option('--eta <x>', 'DDIM eta', num('--eta', 0))
    .option('--clip', "clip the x0 estimate (default: the model folder's clip_sample)")
    .option('--no-clip', 'do not clip the x0 estimate')
    .option('--batch <n>', 'sampling batch size', int('--batch', 1), 64)
    .option('--seed <n>', 'random seed (samples, KID subsets)', int('--seed', 0), 0)
    .option('--kid-subsets <n>', 'KID subsets', int('--kid-subsets', 1), 100)
    .option('--kid-size <n>', 'KID subset size', int('--kid-size', 2), 1000)
    .option('--pr-num <n>', 'images per set for precision/recall (quadratic cost; 0: skip)', int('--pr-num', 0), 1000)
    .option('--save-stats <file>', "write the judged images' feature statistics as .npz (mu, sigma)")
    .option(
      '--samples <file>',
      'model folders: keep the drawn samples in this .npy, batch by batch; a killed run resumes after its last ' +
        'finished batch',
    )
    .option('--out <file>', 'write the results as JSON')
    .option(
      '--class <list>',
      'class-conditional models: the class of each sample, a list in turn (default: every ' + 'class)',
      classSpec(),
    )
    .option('--guidance <w>', 'class-conditional models: classifier-free guidance scale', num('--guidance', 0, 100), 1)
    .option(
      '--class-accuracy',
      'samples of a class-conditional model: how often the feature network gives the ' + 'class asked for',
      false,
    );
}

export function register(evalCmd: Command): void {
  qualityOptions(
    evalCmd
      .command('quality')
      .description(
        'sample quality: Frechet distance, KID, Inception Score, precision/recall, on a small feature network ' +
          '(--net: 28x28 digits, 32x32 CIFAR-10) or on Inception-v3 with --inception',
      ),
    false,
  ).action(evalQualityCommand);
  for (const name of ['fid', 'is', 'kid'])
    qualityOptions(
      evalCmd
        .command(name)
        .description(
          `${name.toUpperCase()} on Inception-v3 (needs --inception FILE); prints FID, KID, IS and precision/recall ` +
            `together`,
        ),
      true,
    ).action((o: EvalQualityOptions, c: Command) => {
      if (!o.inception)
        throw new Error(
          `eval ${name}: pass --inception FILE (pytorch-fid's Inception-v3 weights as safetensors; docs/metrics.md ` +
            `says how to make it), or use \`ddpm eval quality\` for 28x28 data`,
        );
      if (c.getOptionValueSource('net') === 'cli')
        throw new Error(
          `eval ${name}: --net is for \`ddpm eval quality\`; ${name.toUpperCase()} uses the Inception-v3 weights of ` +
            `--inception`,
        );
      return evalQualityCommand(o);
    });
}

const context = (): ImageSetContext => ({
  warn,
  progress,
  precision: currentPrecision(),
  checkBatch: checkForwardBatch,
});

/** The reference: statistics from an .npz, or a set of images (features kept for KID and precision/recall). */
async function reference(o: EvalQualityOptions, ex: Extractor) {
  const refSpec = o.ref ?? (o.inception ? undefined : FEATURE_NETS[o.net]?.data);
  if (!refSpec)
    throw new Error('--ref: give the reference set (a dataset, a PNG folder, a .npy or an .npz of statistics)');
  const d = ex.dim;
  if (refSpec.endsWith('.npz')) {
    const z = parseNpz(new Uint8Array(readFileSync(refSpec)), refSpec);
    const mu = z.get('mu'),
      sigma = z.get('sigma');
    if (!mu || !sigma)
      throw new Error(
        `${refSpec}: expected arrays "mu" and "sigma" (pytorch-fid / TTUR statistics), found ` +
          `${[...z.keys()].join(', ')}`,
      );
    if (mu.data.length !== d || sigma.data.length !== d * d)
      throw new Error(`${refSpec}: statistics of dimension ${mu.data.length}; the feature network gives ${d}`);
    const stats: FeatureStats = { dim: d, n: 0, mu: mu.data, sigma: sigma.data };
    return { stats, features: null, n: 0, name: `${refSpec} (statistics only: no KID, precision or recall)` };
  }
  const ref = await imageSet({ ...o, spec: refSpec, num: o.refNum, split: o.refSplit }, '--ref', ex, context());
  const features = (await ex.embed(ref.images, ref.n, ref.hw)).features;
  return { stats: featureStats(features, ref.n, d), features, n: ref.n, name: ref.name };
}

export async function evalQualityCommand(o: EvalQualityOptions): Promise<void> {
  if (o.out) ensureWritableFile(o.out, '--out');
  if (o.saveStats) ensureWritableFile(o.saveStats, '--save-stats');
  if (o.samples) ensureWritableFile(o.samples, '--samples');
  checkKeptPlan(o, warn);
  const ex = extractor(o, context());
  const cand = await imageSet({ ...o, spec: o.images }, '--images', ex, context());
  const f = await ex.embed(cand.images, cand.n, cand.hw);
  const d = ex.dim;
  const stats = featureStats(f.features, cand.n, d);
  if (o.saveStats)
    writeFileAtomic(
      o.saveStats,
      serializeNpz({ mu: { shape: [d], data: stats.mu }, sigma: { shape: [d, d], data: stats.sigma } }),
    );
  const ref = await reference(o, ex);
  const fdName = o.inception ? 'FID' : 'FD';
  const result: Record<string, unknown> = {
    images: cand.name,
    reference: ref.name,
    net: o.inception ? 'inception-v3' : o.net,
    fd: frechetDistance(stats, ref.stats),
  };
  if (f.probs) result.is = inceptionScore(f.probs, cand.n, f.probs.length / cand.n, Math.min(10, cand.n));
  if (ref.features) {
    result.kid = kernelInceptionDistance(ref.features, ref.n, f.features, cand.n, d, o.kidSubsets, o.kidSize, o.seed);
    if (o.prNum > 0) {
      const m = Math.min(o.prNum, cand.n, ref.n);
      result.precisionRecall = {
        ...precisionRecall(ref.features.subarray(0, m * d), m, f.features.subarray(0, m * d), m, d, 3),
        images: m,
      };
    }
  }
  console.log(`images     ${cand.name}`);
  console.log(`reference  ${ref.name}`);
  console.log(`network    ${ex.label}`);
  console.log(`${fdName.padEnd(10)} ${(result.fd as number).toFixed(4)}`);
  const k = result.kid as
    | { mean: number; std: number; stderr: number; subsets: number; subsetSize: number }
    | undefined;
  if (k)
    console.log(
      `KID        ${k.mean.toExponential(3)} +- ${k.stderr.toExponential(2)} (std ${k.std.toExponential(2)} over ` +
        `${k.subsets} subsets of ${k.subsetSize})`,
    );
  const is = result.is as { mean: number; std: number } | undefined;
  if (is) console.log(`IS         ${is.mean.toFixed(3)} +- ${is.std.toFixed(3)} (10 splits)`);
  else console.log('IS         - (the Inception weights have no fc layer)');
  if (o.classAccuracy) {
    if (!cand.labels)
      throw new Error('--class-accuracy: --images must be a class-conditional model (its samples ' + 'have classes)');
    if (!f.probs || f.probs.length !== cand.n * 10)
      throw new Error('--class-accuracy: needs a 10-class feature ' + 'network (--net)');
    const per = new Map<number, { right: number; n: number }>();
    let right = 0;
    for (let i = 0; i < cand.n; i++) {
      const p = f.probs.subarray(i * 10, i * 10 + 10),
        y = cand.labels[i];
      const ok = p.indexOf(Math.max(...p)) === y;
      const c = per.get(y) ?? { right: 0, n: 0 };
      per.set(y, { right: c.right + (ok ? 1 : 0), n: c.n + 1 });
      if (ok) right++;
    }
    const byClass = Object.fromEntries([...per].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k, v.right / v.n]));
    result.classAccuracy = { overall: right / cand.n, byClass };
  }
  const pr = result.precisionRecall as { precision: number; recall: number; images: number } | undefined;
  if (pr)
    console.log(
      `precision  ${pr.precision.toFixed(3)}   recall ${pr.recall.toFixed(3)} (k = 3, first ${pr.images} of each set)`,
    );
  const ca = result.classAccuracy as { overall: number; byClass: Record<string, number> } | undefined;
  if (ca) {
    const each = Object.entries(ca.byClass)
      .map(([k, v]) => `${k}: ${(100 * v).toFixed(0)}%`)
      .join(', ');
    console.log(
      `class acc  ${(100 * ca.overall).toFixed(1)}% of the samples classified as the class asked for ` + `(${each})`,
    );
  }
  if (o.out) writeFileAtomic(o.out, JSON.stringify(result, null, 2));
}
