#!/usr/bin/env node
// The `ddpm` command line.
import { Command, InvalidArgumentError, Option } from 'commander';
import { useBackendAsync } from '../backends/select.js';
import * as cmd from './commands.js';
import { PRESETS } from '../model/unet.js';

// Numbers are parsed strictly: "", " ", "5," and "0x10" are refused (Number() would accept some of them).
const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
function int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string) => {
    const n = Number(v);
    if (!INT_RE.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer >= ${min}${max < Number.MAX_SAFE_INTEGER ? ` and <= ${max}` : ''}, got "${v}"`);
    return n;
  };
}
function num(name: string, min = -Infinity, max = Infinity) {
  return (v: string) => {
    const n = Number(v);
    if (!NUM_RE.test(v.trim()) || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}], got "${v}"`);
    return n;
  };
}
/** A respacing: a count, counts per section ("10,15,20"), or ddimN. */
function stepsSpec(v: string): string {
  if (!/^(\d+(,\d+)*|ddim\d+)$/.test(v.trim())) throw new InvalidArgumentError(`--steps must be a step count, counts per section ("10,15,20") or ddimN, got "${v}"`);
  return v.trim();
}

const program = new Command();
program
  .name('ddpm')
  .version(cmd.VERSION, '-V, --version', 'print the version of ddpm')
  .description('Denoising diffusion probabilistic models (Ho, Jain & Abbeel 2020): train, sample, evaluate')
  .option('--backend <name>', 'tensor backend: native, reference, wasm or webgpu (default: native when built; env DDPM_BACKEND)')
  .option('--threads <n>', 'CPU threads of the native backend (default: the CPUs this process may use; env DDPM_THREADS)', int('--threads', 1))
  .addOption(new Option('--precision <p>', 'convolutions of the diffusion model in sampling and evaluation: f32, or bf16 (native backend on CPUs with AVX512-BF16 / AMX; float32 accumulation; training stays f32)').choices(['f32', 'bf16']).default('f32'))
  .addOption(new Option('--conv-algorithm <a>', 'float32 3x3 convolutions of the native backend: winograd (Winograd F(4x4, 3x3) where measured faster; rounding error ~10x direct\'s) or direct (oneDNN\'s direct kernels, as PyTorch; env DDPM_CONV_ALGORITHM; default winograd)').choices(['winograd', 'direct']))
  .hook('preAction', async (cmdObj, action) => {
    const backend = await useBackendAsync(cmdObj.opts().backend, cmdObj.opts().threads);
    cmd.setPrecision(cmdObj.opts().precision, action.name(), backend);
    cmd.setConvAlgorithm(cmdObj.opts().convAlgorithm, backend);
  });

program
  .command('train')
  .description('train a model (Algorithm 1); resumes from the latest checkpoint in --out')
  .requiredOption('--data <spec>', 'dataset: embedded, fashion-mnist, or a folder/file of MNIST IDX, CIFAR-10 .bin, or PNG images')
  .requiredOption('--out <dir>', 'output folder (diffusers model + checkpoints/ + metrics.jsonl + samples/)')
  .option('--preset <name>', `model preset: ${Object.keys(PRESETS).join(', ')}`, 'mnist')
  .option('--steps <n>', 'training steps', int('--steps', 1), 10000)
  .option('--batch <n>', 'batch size', int('--batch', 1), 64)
  .option('--lr <x>', 'learning rate', num('--lr', 0, 1), 2e-4)
  .option('--warmup <n>', 'linear warmup steps', int('--warmup', 0), 5000)
  .option('--grad-clip <x>', 'global gradient norm clip', num('--grad-clip', 0), 1)
  .option('--ema <x>', 'EMA decay', num('--ema', 0, 1), 0.9999)
  .option('--no-ema-warmup', 'use the fixed EMA decay from step 0')
  .option('--flip', 'random horizontal flips (off by default: they change the meaning of digits)', false)
  .option('--dropout <x>', 'dropout probability (default: the preset\'s)', num('--dropout', 0, 0.99))
  .option('--accumulate <n>', 'gradient accumulation micro-batches per step', int('--accumulate', 1), 1)
  .option('--checkpoint-every <n>', 'steps between checkpoints', int('--checkpoint-every', 1), 500)
  .option('--keep <n>', 'checkpoints to keep', int('--keep', 1), 3)
  .option('--sample-every <n>', 'steps between sample grids (0: never)', int('--sample-every', 0), 0)
  .option('--sample-steps <n>', 'reverse steps for the sample grids', int('--sample-steps', 1), 100)
  .option('--timesteps <n>', 'diffusion steps T (the linear schedule is scaled by 1000/T)', int('--timesteps', 2), 1000)
  .addOption(new Option('--schedule <name>', 'beta schedule').choices(['linear', 'quad', 'const', 'jsd', 'cosine', 'sigmoid']).default('linear'))
  .addOption(new Option('--prediction <p>', 'network output').choices(['eps', 'x0', 'v']).default('eps'))
  .addOption(new Option('--variance <v>', 'reverse variance').choices(['fixedlarge', 'fixedsmall', 'learnedrange']).default('fixedlarge'))
  .addOption(new Option('--loss <l>', 'training loss').choices(['simple', 'vlb', 'hybrid']).default('simple'))
  .option('--max-minutes <x>', 'stop (with a checkpoint) after this many minutes', num('--max-minutes', 0))
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .option('--eval-every <n>', 'steps between sample-quality checks (FD, KID of DDIM-50 samples of the EMA weights on a small feature network: 1x28x28 and 3x32x32 models)', int('--eval-every', 1))
  .option('--eval-samples <n>', 'samples per quality check', int('--eval-samples', 10), 256)
  .option('--eval-net <name>', 'feature network for the quality checks: mnist, fashion or cifar10 (default: cifar10 for RGB presets, else mnist)')
  .option('--override <fields>', 'on resume, allow these options to differ from the saved run (comma-separated: lr, warmup, grad-clip, ema, ema-warmup, flip, dropout, batch, accumulate, seed)')
  .action(cmd.trainCommand);

program
  .command('sample')
  .description('draw samples from a model folder; writes a PNG grid and single PNGs')
  .requiredOption('--model <dir>', `diffusers model folder, or the name of a shipped model (${cmd.shippedModels().join(', ')})`)
  .option('--out <dir>', 'output folder (default: samples/<model>-<sampler>-<steps>-seed<seed>)')
  .option('--overwrite', 'replace the images of an earlier run in --out (only files this command writes are removed)', false)
  .option('-n, --num <n>', 'number of samples', int('-n', 1), 16)
  .option('--batch <n>', 'batch size', int('--batch', 1), 16)
  .addOption(new Option('--sampler <name>', 'sampler').choices(['ancestral', 'ddim', 'langevin', 'pc', 'dpm2m', 'dpm3m', 'plms', 'heun']).default('ancestral'))
  .option('--steps <spec>', 'reverse steps: a count, counts per section ("10,15,20") or ddimN, as improved-diffusion\'s space_timesteps (default: all T)', stepsSpec)
  .addOption(new Option('--timestep-spacing <s>', 'ddim only: lay out --steps as diffusers\' DDIMScheduler does').choices(['leading', 'trailing', 'linspace']))
  .option('--eta <x>', 'DDIM eta (default 0)', num('--eta', 0))
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .option('--clip', 'clip the x0 estimate to [-1, 1] (default: the folder\'s clip_sample for ancestral/ddim/langevin/pc; off for the ODE solvers, as diffusers)')
  .option('--no-clip', 'do not clip the x0 estimate')
  .option('--strip', 'also write a denoising strip (x0 estimates along the chain)', false)
  .option('--npy', 'also write all samples as samples.npy ([N, C, H, W] on [-1, 1], for eval quality)', false)
  .action(cmd.sampleCommand);

const evalCmd = program.command('eval').description('evaluate a model');
evalCmd
  .command('bpd')
  .description('bits/dim (the variational bound, eq. 5) on a dataset, with per-t, prior and decoder terms')
  .requiredOption('--model <dir>', 'diffusers model folder')
  .requiredOption('--data <spec>', 'dataset (as for train)')
  .option('--split <s>', 'train or test', 'test')
  .option('-n, --num <n>', 'number of images (default: all)', int('-n', 1))
  .option('--spread', 'with -n below the set\'s size: take the images evenly spread over the set, not the first n (a set stored in class order)', false)
  .option('--batch <n>', 'batch size', int('--batch', 1), 64)
  .option('--t-stride <n>', 'above t = 100, evaluate every k-th timestep and weight it k times (an estimate; 1 = every t)', int('--t-stride', 1), 1)
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .option('--no-clip', 'do not clip the x0 estimate to [-1, 1] in the KL and decoder terms (the official calc_bpd_loop clips)')
  .option('--out <file>', 'write the per-t terms and the rate-distortion curve as JSON')
  .option('--rd-plot <file>', 'write the rate-distortion curve (paper Fig. 5) as PNG')
  .action(cmd.evalBpdCommand);

function qualityOptions(c: Command, inception: boolean): Command {
  return c
    .requiredOption('--images <spec>', 'images to judge: a model folder or shipped model name (sampled here), a dataset, a PNG folder, or a .npy [N,C,H,W] on [-1, 1]')
    .option('--ref <spec>', `reference: a dataset, PNG folder, .npy, or .npz with mu and sigma (pytorch-fid / TTUR statistics)${inception ? '' : ' (default: the network\'s dataset)'}`)
    .option('--net <name>', 'feature network: mnist, fashion (1x28x28), cifar10 (3x32x32), or a safetensors file', 'mnist')
    .option('--inception <file>', 'Inception-v3 weights (pytorch-fid\'s, as safetensors): FID / IS / KID on Inception features instead of the small feature network')
    .option('-n, --num <n>', 'images to judge (samples to draw from a model; default 1000 for a model, all for a dataset)', int('-n', 2))
    .option('--ref-num <n>', 'reference images to use (default: all)', int('--ref-num', 2))
    .option('--spread', 'with -n / --ref-num below a dataset\'s size: take its images evenly spread over the set, not the first n (a set stored in class order)', false)
    .option('--split <s>', 'split of a dataset given to --images', 'test')
    .option('--ref-split <s>', 'split of the reference dataset', 'train')
    .addOption(new Option('--sampler <name>', 'sampler (model folders)').choices(['ancestral', 'ddim', 'langevin', 'pc', 'dpm2m', 'dpm3m', 'plms', 'heun']).default('ancestral'))
    .option('--steps <spec>', 'reverse steps (as for sample)', stepsSpec)
    .addOption(new Option('--timestep-spacing <s>', 'ddim only: diffusers\' layout').choices(['leading', 'trailing', 'linspace']))
    .option('--eta <x>', 'DDIM eta', num('--eta', 0))
    .option('--clip', 'clip the x0 estimate (default: the model folder\'s clip_sample)')
    .option('--no-clip', 'do not clip the x0 estimate')
    .option('--batch <n>', 'sampling batch size', int('--batch', 1), 64)
    .option('--seed <n>', 'random seed (samples, KID subsets)', int('--seed', 0), 0)
    .option('--kid-subsets <n>', 'KID subsets', int('--kid-subsets', 1), 100)
    .option('--kid-size <n>', 'KID subset size', int('--kid-size', 2), 1000)
    .option('--pr-num <n>', 'images per set for precision/recall (quadratic cost; 0: skip)', int('--pr-num', 0), 1000)
    .option('--save-stats <file>', 'write the judged images\' feature statistics as .npz (mu, sigma)')
    .option('--samples <file>', 'model folders: keep the drawn samples in this .npy, batch by batch; a killed run resumes after its last finished batch')
    .option('--out <file>', 'write the results as JSON');
}

qualityOptions(evalCmd.command('quality').description('sample quality: Frechet distance, KID, Inception Score, precision/recall, on a small feature network (--net: 28x28 digits, 32x32 CIFAR-10) or on Inception-v3 with --inception'), false)
  .action(cmd.evalQualityCommand);

for (const name of ['fid', 'is', 'kid'])
  qualityOptions(evalCmd.command(name).description(`${name.toUpperCase()} on Inception-v3 (needs --inception FILE); prints FID, KID, IS and precision/recall together`), true)
    .action((o) => {
      if (!o.inception) throw new Error(`eval ${name}: pass --inception FILE (pytorch-fid's Inception-v3 weights as safetensors; docs/metrics.md says how to make it), or use \`ddpm eval quality\` for 28x28 data`);
      cmd.evalQualityCommand(o);
    });

program
  .command('report')
  .description('write one self-contained HTML page for a training run: loss curves, sample grids, bits/dim, quality')
  .argument('<run>', 'run folder (the --out of ddpm train)')
  .option('--out <file>', 'HTML file to write (default: RUN/report.html)')
  .action(cmd.reportCommand);

program
  .command('interpolate')
  .description('interpolate between two dataset images in latent space (paper Fig. 8): encode to x_t, mix, decode')
  .requiredOption('--model <dir>', 'diffusers model folder')
  .requiredOption('--data <spec>', 'dataset (as for train)')
  .option('--split <s>', 'train or test', 'test')
  .option('--a <i>', 'index of the first image', int('--a', 0), 0)
  .option('--b <j>', 'index of the second image', int('--b', 0), 1)
  .option('--t <n>', 'timestep to encode to (default T/2)', int('--t', 0))
  .option('--count <n>', 'number of mixtures from 0 to 1', int('--count', 2), 9)
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .option('--out <file>', 'PNG to write', 'interpolation.png')
  .action(cmd.interpolateCommand);

program
  .command('predict')
  .description('run a model on x_t given as .npy (and t) and write its output as .npy')
  .requiredOption('--model <dir>', 'diffusers model folder')
  .requiredOption('--input <file>', '.npy float32 array [B, C, H, W]')
  .requiredOption('--t <list>', 'timesteps in [0, T): one integer, or comma-separated per sample')
  .requiredOption('--output <file>', '.npy to write')
  .action(cmd.predictCommand);

program
  .command('convert')
  .description('rewrite a model folder as a flat diffusers folder with new attention names (float32 safetensors)')
  .requiredOption('--model <dir>', 'source model folder')
  .requiredOption('--out <dir>', 'destination folder')
  .option('--float16', 'store the weights as float16 (half the size; read back as float32)', false)
  .action(cmd.convertCommand);

program
  .command('info')
  .description('describe a model folder, or the engine when no model is given')
  .option('--model <dir>', 'diffusers model folder')
  .action(cmd.infoCommand);

program
  .command('data')
  .description('inspect a dataset (count, size, pixel statistics) and write a preview grid; or download one')
  .option('--data <spec>', 'dataset (as for train)')
  .option('--download <name>', 'download a public dataset (mnist) into the cache, checking sha256')
  .option('--cache <dir>', 'download cache folder (default ~/.cache/ddpm)')
  .option('--base-url <url>', 'download from this mirror instead')
  .option('--split <s>', 'train or test', 'train')
  .option('--preview <file>', 'write a PNG grid of the first 64 images')
  .action(cmd.dataCommand);

program
  .command('demo')
  .description('the main job on the embedded default: train the mnist preset for a few minutes, write a sample grid and a denoising strip')
  .option('--out <dir>', 'output folder', 'runs/demo')
  .option('--minutes <x>', 'training time budget', num('--minutes', 0.1), 4)
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .action(cmd.demoCommand);

program.parseAsync(process.argv).catch((e: Error) => {
  if (process.env.DDPM_DEBUG) console.error(e.stack);
  console.error(`ddpm: ${e.message}`);
  process.exitCode = 1;
});
