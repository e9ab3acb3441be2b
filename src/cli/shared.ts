// What the commands share: strict option parsers, output-folder checks, the memory check, dataset and model loading
// with their warnings shown, and the global --precision / --conv-algorithm.
import { accessSync, constants, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import type { Backend } from '../engine/backend.js';
import type { Precision } from '../engine/ops.js';
import { GaussianDiffusion } from '../diffusion/gaussian.js';
import { SAMPLERS as ALL_SAMPLERS, SPACINGS, type SamplerName } from '../diffusion/samplers.js';
import { type UNetConfig, isClassConditional, samplingMemoryBytes } from '../model/unet.js';
import type { ImageDataset } from '../data/dataset.js';
import { loadDataset as loadDatasetQuiet, type Split } from '../data/load.js';
import { loadModel } from '../io/checkpoint.js';
import { LEFTOVER, makeDirs } from '../io/files.js';
import { modelPath } from '../io/models.js';
import { availableMemory, gib } from '../io/system.js';
import type { ProgressFactory } from '../eval/image-sets.js';
import { type ConvAlgorithm, NativeBackend } from '../backends/native/index.js';
import { Progress } from './progress.js';

export const warn = (msg: string): void => console.error(msg.startsWith('warning: ') ? msg : `warning: ${msg}`);

/** Every sampler of the library (src/diffusion/samplers.ts), for --sampler's choices. */
export const SAMPLERS: SamplerName[] = [...ALL_SAMPLERS];

// Numbers are parsed strictly: "", " ", "5," and "0x10" are refused (Number() would accept some of them).
const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
export function int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!INT_RE.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(
        `${name} must be an integer >= ${min}${max < Number.MAX_SAFE_INTEGER ? ` and <= ${max}` : ''}, got "${v}"`,
      );
    return n;
  };
}
export function num(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!NUM_RE.test(v.trim()) || !Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}], got "${v}"`);
    return n;
  };
}
/** --class: one class number, or (list) a comma-separated list of them; "1,,2", "a", "-1", "1.0" are refused. */
export function classSpec(list = true) {
  return (v: string): string => {
    const what = list ? 'a class number or a comma-separated list of them ("7", "0,1,2")' : 'one class number';
    if (!(list ? /^\s*\d+\s*(,\s*\d+\s*)*$/ : /^\s*\d+\s*$/).test(v))
      throw new InvalidArgumentError(`--class must be ${what}, got "${v}"`);
    return v.replace(/\s/g, '');
  };
}

/**
 * Refuses --guidance other than 1 for a class-conditional model without a null class, before any work (guidance
 * needs the unconditional prediction of the null class: a model trained with --cond-drop).
 */
export function checkGuidance(cfg: UNetConfig, w: number): void {
  if (w !== 1 && isClassConditional(cfg) && cfg.ddpm_null_class == null)
    throw new Error(
      `--guidance ${w}: this model has no null class (its config.json has no ddpm_null_class; train it with ` +
        '--cond-drop for guidance), so only --guidance 1 (the conditional model) works',
    );
}

/** --class and --guidance, for the commands that sample (class-conditional models; src/diffusion/guidance.ts). */
export function classOptions(what: string): Option[] {
  return [
    new Option(
      '--class <list>',
      `class-conditional models: the class of each ${what}, "7" or a list "0,1,2" in turn ` +
        '(default: every class in turn)',
    ).argParser(classSpec()),
    new Option('--guidance <w>', 'classifier-free guidance scale (1: the conditional model; 0: the unconditional one)')
      .argParser(num('--guidance', 0, 100))
      .default(1),
  ];
}

/** --timestep-spacing, for every sampler (src/diffusion/samplers/plan.ts). */
export function spacingOption(): Option {
  return new Option(
    '--timestep-spacing <s>',
    "the layout of --steps: respaced (improved-diffusion; the default of ancestral, ddim, langevin, pc), diffusers' " +
      'leading / trailing / linspace (as its scheduler for the sampler lays them out; the default of plms: leading, ' +
      'of dpm2m, dpm3m, heun, euler, euler-a: linspace), karras or logsnr (the ODE solvers)',
  ).choices(SPACINGS);
}

/** A respacing: a count, counts per section ("10,15,20"), or ddimN. */
export function stepsSpec(v: string): string {
  if (!/^(\d+(,\d+)*|ddim\d+)$/.test(v.trim()))
    throw new InvalidArgumentError(
      `--steps must be a step count, counts per section ("10,15,20") or ddimN, got "${v}"`,
    );
  return v.trim();
}
export function split(s: string): Split {
  if (s !== 'train' && s !== 'test') throw new InvalidArgumentError(`expected train or test, got "${s}"`);
  return s;
}

/** Creates the folder if needed and checks that it can be written, before any work starts. */
export function ensureWritableDir(dir: string, what: string): void {
  try {
    makeDirs(dir);
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'EACCES' || code === 'EROFS' || code === 'EPERM'
        ? 'is read-only (no permission to write there)'
        : code === 'ENOTDIR' || code === 'EEXIST'
          ? 'is not a folder (a file is in the way)'
          : code === 'ENOENT'
            ? 'cannot be created (the file system refuses new entries there)'
            : `cannot be created (${code ?? (e as Error).message})`;
    throw new Error(`${what} ${dir}: the folder ${why}`);
  }
}

/** For an output file: its folder must be writable. */
export function ensureWritableFile(path: string, what: string): void {
  ensureWritableDir(dirname(resolve(path)), what);
  if (existsSync(path) && statSync(path).isDirectory())
    throw new Error(`${what} ${path}: is a folder, expected a file name`);
}

/** Refuses a --batch whose forward passes (sampling, evaluation) would not fit in memory, before any work starts. */
export function checkForwardBatch(cfg: UNetConfig, batch: number, what: string): void {
  const need = samplingMemoryBytes(cfg, batch),
    have = availableMemory();
  if (need > 0.85 * have)
    throw new Error(
      `--batch ${batch}: ${what} at this batch needs about ${gib(need)} GiB for a ` +
        `${cfg.in_channels}x${cfg.sample_size}x${cfg.sample_size} model of ` +
        `${JSON.stringify(cfg.block_out_channels)} channels, and this machine allows ${gib(have)} GiB ` +
        `(${gib(freemem())} GiB free now); use a smaller --batch`,
    );
}

/** loadDataset, with what reading the set changed or dropped shown as warnings. */
export function loadDataset(...args: Parameters<typeof loadDatasetQuiet>): ImageDataset {
  const ds = loadDatasetQuiet(...args);
  for (const w of ds.warnings ?? []) warn(w);
  return ds;
}

/** A progress bar on stderr for the library's long steps. */
export const progress: ProgressFactory = (label, total) => {
  const bar = new Progress(label, total, 0);
  return (done) => bar.update(done);
};

let precision: Precision = 'f32';
export const currentPrecision = (): Precision => precision;

/** The global --precision: bf16 only for commands that run the model forward, on a backend that has it. */
export function setPrecision(p: Precision, command: string, backend: Backend): void {
  if (p === 'bf16') {
    if (command === 'train')
      throw new Error('--precision bf16: training runs in float32 (bf16 is for sampling and evaluation)');
    if (backend instanceof NativeBackend && !backend.info.bf16)
      throw new Error(
        '--precision bf16: this CPU has neither AVX512-BF16 nor AMX, so oneDNN has no bf16 kernels for it; use f32',
      );
    if (backend.name === 'webgpu') throw new Error('--precision bf16: not implemented on the webgpu backend; use f32');
  }
  precision = p;
}

/** --conv-algorithm: the native backend's choice; other backends compute every convolution directly. */
export function setConvAlgorithm(a: ConvAlgorithm | undefined, backend: Backend): void {
  if (a === undefined) return;
  if (backend instanceof NativeBackend) {
    const notice = backend.setConvAlgorithm(a);
    if (notice) warn(`--conv-algorithm ${a}: ${notice}`);
  } else
    warn(
      `--conv-algorithm ${a}: only the native backend has a choice; the ${backend.name} backend computes its ` +
        `convolutions directly`,
    );
}

/** A model folder (or a shipped model's name) loaded for the forward pass in the chosen precision, warnings shown. */
export function loadForSampling(spec: string) {
  const { model, folder } = loadModel(modelPath(spec));
  model.precision = precision;
  for (const w of folder.warnings) console.error(w);
  const diffusion = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
  return { model, folder, diffusion, cfg: folder.unetConfig };
}

/**
 * Checks out for the files of an earlier run (refusing without --overwrite, and refusing to replace an input);
 * returns the function that removes them, called once the new results are ready to be written.
 */
export function prepareOut(out: string, own: RegExp, overwrite: boolean, inputs: string[], what = 'files'): () => void {
  ensureWritableDir(out, '--out');
  const names = readdirSync(out);
  const old = names.filter((f) => own.test(f)),
    left = names.filter((f) => LEFTOVER.test(f));
  const ins = new Set(inputs.map((f) => resolve(f)));
  const clash = old.find((f) => ins.has(resolve(join(out, f))));
  if (clash) throw new Error(`--out ${out}: would replace ${clash}, an input of this run; choose another --out`);
  if (old.length && !overwrite)
    throw new Error(
      `--out ${out}: holds ${old.length} ${what} of an earlier run; pass --overwrite to replace them, or choose ` +
        `another --out`,
    );
  return () => {
    for (const f of [...old, ...left]) rmSync(join(out, f), { recursive: true, force: true });
  };
}
