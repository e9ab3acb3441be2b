#!/usr/bin/env node
// The `ddpm` command line: global options, then one module per command (src/cli/commands/), each a thin shell over
// the library that declares, parses and validates its own typed options.
import { Command, Option } from 'commander';
import { useBackendAsync } from '../backends/select.js';
import * as convert from './commands/convert.js';
import * as data from './commands/data.js';
import * as demo from './commands/demo.js';
import * as edit from './commands/edit.js';
import * as evalBpd from './commands/eval-bpd.js';
import * as evalQuality from './commands/eval-quality.js';
import * as info from './commands/info.js';
import * as inpaint from './commands/inpaint.js';
import * as interpolate from './commands/interpolate.js';
import * as predict from './commands/predict.js';
import * as report from './commands/report.js';
import * as sample from './commands/sample.js';
import * as train from './commands/train.js';
import { int, setConvAlgorithm, setPrecision } from './shared.js';
import { VERSION } from './version.js';

const program = new Command();
program
  .name('ddpm')
  .version(VERSION, '-V, --version', 'print the version of ddpm')
  .description('Denoising diffusion probabilistic models (Ho, Jain & Abbeel 2020): train, sample, evaluate')
  .option(
    '--backend <name>',
    'tensor backend: native, reference, wasm or webgpu (default: native when built; env DDPM_BACKEND)',
  )
  .option(
    '--threads <n>',
    'CPU threads of the native backend, fixed (default: the CPUs this process may use, fewer while other processes ' +
      'keep them busy, except in train and demo, whose resumed runs must equal uninterrupted ones; env DDPM_THREADS)',
    int('--threads', 1),
  )
  .addOption(
    new Option(
      '--precision <p>',
      'convolutions of the diffusion model in sampling and evaluation: f32, or bf16 (native backend on CPUs with ' +
        'AVX512-BF16 / AMX; float32 accumulation; training stays f32)',
    )
      .choices(['f32', 'bf16'])
      .default('f32'),
  )
  .addOption(
    new Option(
      '--conv-algorithm <a>',
      'float32 3x3 convolutions of the native backend: winograd (Winograd F(4x4, 3x3) where measured faster, on ' +
        "AVX-512 CPUs; rounding error ~10x direct's) or direct (oneDNN's direct kernels, as PyTorch; env " +
        'DDPM_CONV_ALGORITHM; default winograd)',
    ).choices(['winograd', 'direct']),
  )
  .hook('preAction', async (cmdObj, action) => {
    // training keeps one team size: a resumed run equals an uninterrupted one only with the same threads
    const adaptive = !['train', 'demo'].includes(action.name());
    const backend = await useBackendAsync(cmdObj.opts().backend, cmdObj.opts().threads, adaptive);
    setPrecision(cmdObj.opts().precision, action.name(), backend);
    setConvAlgorithm(cmdObj.opts().convAlgorithm, backend);
  });

train.register(program);
sample.register(program);
const evalCmd = program.command('eval').description('evaluate a model');
evalBpd.register(evalCmd);
evalQuality.register(evalCmd);
inpaint.register(program);
edit.register(program);
report.register(program);
interpolate.register(program);
predict.register(program);
convert.register(program);
info.register(program);
data.register(program);
demo.register(program);

program.parseAsync(process.argv).catch((e: Error) => {
  if (process.env.DDPM_DEBUG) console.error(e.stack);
  console.error(`ddpm: ${e.message}`);
  process.exitCode = 1;
});
