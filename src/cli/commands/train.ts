// `ddpm train`: Algorithm 1 on a dataset into a run folder (resumes from its checkpoints).
import { existsSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { getBackend } from '../../engine/tensor.js';
import { PRESETS, UNet, trainingMemoryBytes } from '../../model/unet.js';
import { makeBatch } from '../../data/dataset.js';
import { checkInit, train } from '../../training/train.js';
import { type TrainFlags, trainOptionsFrom } from '../../training/options.js';
import { DIGITNET_FEATURES } from '../../eval/digitnet.js';
import { loadFeatureNet } from '../../eval/image-sets.js';
import { featureStats, frechetDistance, kernelInceptionDistance } from '../../eval/metrics.js';
import { availableMemory, gib } from '../../io/system.js';
import { modelPath } from '../../io/models.js';
import { Progress } from '../progress.js';
import { ensureWritableDir, int, loadDataset, num, warn } from '../shared.js';

export interface TrainCommandOptions extends TrainFlags {
  data: string;
  preset: string;
  evalSamples: number;
  evalNet?: string;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model (Algorithm 1); resumes from the latest checkpoint in --out')
    .requiredOption(
      '--data <spec>',
      'dataset: embedded, fashion-mnist, or a folder/file of MNIST IDX, CIFAR-10 .bin, or PNG images',
    )
    .requiredOption(
      '--out <dir>',
      'output folder (diffusers model + checkpoints/ + metrics.jsonl + samples/): new, empty, or a run folder of ' +
        'ddpm train',
    )
    .option('--preset <name>', `model preset: ${Object.keys(PRESETS).join(', ')}`, 'mnist')
    .option('--steps <n>', 'training steps', int('--steps', 1), 10000)
    .option('--batch <n>', 'batch size', int('--batch', 1), 64)
    .option('--lr <x>', 'learning rate', num('--lr', 0, 1), 2e-4)
    .option('--warmup <n>', 'linear warmup steps', int('--warmup', 0), 5000)
    .option('--grad-clip <x>', 'global gradient norm clip (0: no clipping)', num('--grad-clip', 0), 1)
    .option('--ema <x>', 'EMA decay', num('--ema', 0, 1), 0.9999)
    .option('--no-ema-warmup', 'use the fixed EMA decay from step 0')
    .option('--flip', 'random horizontal flips (off by default: they change the meaning of digits)', false)
    .option('--dropout <x>', "dropout probability (default: the preset's)", num('--dropout', 0, 0.99))
    .option('--accumulate <n>', 'gradient accumulation micro-batches per step', int('--accumulate', 1), 1)
    .option('--checkpoint-every <n>', 'steps between checkpoints', int('--checkpoint-every', 1), 500)
    .option('--keep <n>', 'checkpoints to keep', int('--keep', 1), 3)
    .option('--sample-every <n>', 'steps between sample grids (0: never)', int('--sample-every', 0), 0)
    .option('--sample-steps <n>', 'reverse steps for the sample grids', int('--sample-steps', 1), 100)
    .option(
      '--timesteps <n>',
      'diffusion steps T (the linear schedule is scaled by 1000/T)',
      int('--timesteps', 2),
      1000,
    )
    .addOption(
      new Option('--schedule <name>', 'beta schedule')
        .choices(['linear', 'quad', 'const', 'jsd', 'cosine', 'sigmoid'])
        .default('linear'),
    )
    .addOption(new Option('--prediction <p>', 'network output').choices(['eps', 'x0', 'v']).default('eps'))
    .addOption(
      new Option('--variance <v>', 'reverse variance')
        .choices(['fixedlarge', 'fixedsmall', 'learnedrange'])
        .default('fixedlarge'),
    )
    .addOption(new Option('--loss <l>', 'training loss').choices(['simple', 'vlb', 'hybrid']).default('simple'))
    .option('--max-minutes <x>', 'stop (with a checkpoint) after this many minutes', num('--max-minutes', 0))
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option(
      '--eval-every <n>',
      'steps between sample-quality checks (FD, KID of DDIM-50 samples of the EMA weights on a small feature ' +
        'network: 1x28x28 and 3x32x32 models)',
      int('--eval-every', 1),
    )
    .option('--eval-samples <n>', 'samples per quality check', int('--eval-samples', 10), 256)
    .option(
      '--eval-net <name>',
      'feature network for the quality checks: mnist, fashion or cifar10 (default: cifar10 for RGB presets, else ' +
        'mnist)',
    )
    .option(
      '--init <model>',
      "start a new run from a model folder's weights (fine-tuning; a shipped model's name works)",
    )
    .option('--classes <n>', "train a class-conditional model on the data's labels (MNIST: 10)", int('--classes', 1))
    .option(
      '--cond-drop <p>',
      'with --classes: drop labels to a null class with this probability, for ' + 'classifier-free guidance (0.1)',
      num('--cond-drop', 0, 1),
    )
    .option(
      '--embed-lr <lr>',
      "with --classes: the class embedding's peak learning rate (default: --lr; larger when fine-tuning with --init)",
      num('--embed-lr', 0),
    )
    .option(
      '--override <fields>',
      'on resume, allow these options to differ from the saved run (comma-separated: lr, warmup, grad-clip, ema, ' +
        'ema-warmup, flip, dropout, batch, accumulate, seed)',
    )
    .action(trainCommand);
}

export async function trainCommand(o: TrainCommandOptions): Promise<void> {
  const opts = trainOptionsFrom({ ...o, init: o.init === undefined ? undefined : modelPath(o.init) });
  if (opts.init) checkInit(opts);
  ensureWritableDir(opts.outDir, '--out');
  const need = trainingMemoryBytes(opts.unet, opts.batchSize),
    have = availableMemory();
  if (need > 0.85 * have)
    throw new Error(
      `--batch ${opts.batchSize}: a training step of preset ${o.preset} needs about ${gib(need)} GiB, and this ` +
        `machine allows ${gib(have)} GiB (${gib(freemem())} GiB free now); use a smaller --batch, with --accumulate ` +
        `to keep the effective batch`,
    );
  if (opts.lr === 0) warn('--lr 0: the weights will never change');
  if (o.condDrop === 1) warn('--cond-drop 1: every label is dropped to the null class; the model never sees a class');
  if (o.embedLr === 0)
    warn(
      '--embed-lr 0: the class embedding keeps its starting values (zero in a new run, where the model then ignores ' +
        'the classes)',
    );
  if (opts.gradClip === 0) console.error('--grad-clip 0: gradients are not clipped');
  const data = loadDataset(o.data, 'train', { size: opts.unet.sample_size, channels: opts.unet.in_channels as 1 | 3 });
  if (o.classes) {
    if (!data.labels)
      throw new Error(
        `--classes: ${data.name} has no labels (MNIST label files, the CIFAR-10 label byte, or a folder with one ` +
          'subfolder of PNGs per class)',
      );
    const top = data.labels.reduce((a, b) => Math.max(a, b), 0);
    if (top >= o.classes)
      throw new Error(`--classes ${o.classes}: ${data.name} has label ${top}; pass --classes ` + `${top + 1} or more`);
  }
  if (opts.batchSize > data.count)
    warn(
      `--batch ${opts.batchSize} is larger than the ${data.count} images of ${data.name}: every batch repeats images`,
    );
  console.error(
    `ddpm train: ${data.count} images ${data.channels}x${data.height}x${data.width} from ${data.name}; preset ` +
      `${o.preset} (${new UNet(opts.unet).parameterCount.toLocaleString()} parameters); backend ${getBackend().name}`,
  );
  let evaluate:
    | ((sampleImages: (n: number) => Promise<Float32Array>, step: number) => Promise<Record<string, number>>)
    | undefined;
  if (opts.evalEvery) {
    const netName = o.evalNet ?? (opts.unet.in_channels === 3 ? 'cifar10' : 'mnist');
    const net = loadFeatureNet(netName);
    if (opts.unet.in_channels !== net.channels || opts.unet.sample_size !== net.size)
      throw new Error(
        `--eval-every: the feature network "${netName}" takes ${net.channels}x${net.size}x${net.size} images; ` +
          `preset ${o.preset} makes ${opts.unet.in_channels}x${opts.unet.sample_size}x${opts.unet.sample_size}`,
      );
    const nRef = Math.min(2000, data.count);
    const ref = (
      await net.embed(
        await makeBatch(
          data,
          Int32Array.from({ length: nRef }, (_, i) => i),
        ).data(),
        nRef,
      )
    ).features;
    const refStats = featureStats(ref, nRef, DIGITNET_FEATURES);
    const n = o.evalSamples;
    evaluate = async (sampleImages) => {
      const f = (await net.embed(await sampleImages(n), n)).features;
      const kid = kernelInceptionDistance(ref, nRef, f, n, DIGITNET_FEATURES, 10, n);
      return {
        fd: frechetDistance(featureStats(f, n, DIGITNET_FEATURES), refStats),
        kid: kid.mean,
        kid_stderr: kid.stderr,
        samples: n,
      };
    };
  }
  const bar = new Progress('train', opts.steps, undefined, false, opts.maxSeconds);
  let ema = 0;
  const st = await train(opts, data, {
    evaluate,
    onStep: (m) => {
      ema = ema ? 0.98 * ema + 0.02 * m.loss : m.loss;
      if (m.quality)
        console.error(
          `\nstep ${m.step}: FD ${m.quality.fd.toFixed(3)}, KID ${m.quality.kid.toExponential(2)} ` +
            `(${m.quality.samples} DDIM-50 samples of the EMA weights against ${Math.min(2000, data.count)} ` +
            `training images)`,
        );
      bar.update(m.step, `loss ${ema.toFixed(4)} ${m.images_per_s.toFixed(0)} img/s`);
    },
    onCheckpoint: (dir) => {
      if (!process.stderr.isTTY) console.error(`checkpoint ${dir}`);
    },
    log: (m) => console.error(m),
  });
  if (st.interrupted) {
    console.error(
      `\nstopped by ${st.interrupted} at step ${st.step}: checkpoint written to ` +
        `${join(opts.outDir, 'checkpoints')}; run the same command to resume`,
    );
    process.exitCode = st.interrupted === 'SIGINT' ? 130 : 143;
    return;
  }
  const curve = existsSync(join(opts.outDir, 'loss.png'))
    ? `, curve ${join(opts.outDir, 'loss.png')}`
    : ' (no loss curve: it needs two steps)';
  console.error(
    `\ndone: step ${st.step}; model (EMA weights) in ${opts.outDir}, log ${join(opts.outDir, 'metrics.jsonl')}${curve}`,
  );
}
