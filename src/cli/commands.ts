// The CLI's commands, each a thin layer over the library.
import { accessSync, appendFileSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { createRequire } from 'node:module';
import { freemem, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { type Tensor, getBackend, noGrad } from '../engine/tensor.js';
import { type Precision, fromArray } from '../engine/ops.js';
import type { Backend } from '../engine/backend.js';
import { GaussianDiffusion, PAPER_DIFFUSION, type DiffusionConfig, validateDiffusionConfig } from '../diffusion/gaussian.js';
import { scaledBetaRange, type BetaSchedule } from '../diffusion/schedule.js';
import { defaultClip, sample, samplerPlan, type SampleOptions, type SamplerName, type SamplerStep } from '../diffusion/samplers.js';
import type { TimestepSpacing } from '../diffusion/schedule.js';
import { PRESETS, UNet, trainingMemoryBytes } from '../model/unet.js';
import { type ImageDataset, firstImagesWarning, makeBatch, pixelStats, subsetIndices } from '../data/dataset.js';
import { DATASET_NAMES, loadDataset, type Split } from '../data/load.js';
import { loadModel, readModelFolder, weightsOf, writeModelFolder } from '../io/checkpoint.js';
import { readJson as readJsonFile, writeFileAtomic } from '../io/files.js';
import { imageGrid, linePlot, writeImages, writePng } from '../io/png.js';
import { parseNpy, serializeNpy } from '../io/npy.js';
import { DEFAULT_TRAIN, train, type TrainOptions } from '../training/train.js';
import { EXACT_HEAD, bitsPerDim } from '../eval/bpd.js';
import { DIGITNET_FEATURES, DigitNet } from '../eval/digitnet.js';
import { INCEPTION_FEATURES, InceptionV3 } from '../eval/inception.js';
import { type FeatureStats, featureStats, frechetDistance, inceptionScore, kernelInceptionDistance, precisionRecall } from '../eval/metrics.js';
import { parseNpz, serializeNpz } from '../io/npz.js';
import { runReport } from '../eval/report.js';
import { parseSafetensors } from '../io/safetensors.js';
import { fileURLToPath } from 'node:url';
import { interpolate } from '../diffusion/interpolate.js';
import { downloadDataset } from '../data/download.js';
import { Progress } from './progress.js';
import { type ConvAlgorithm, NativeBackend } from '../backends/native/index.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Opts = Record<string, any>;

export const VERSION: string = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

const warn = (msg: string) => console.error(`warning: ${msg}`);
const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(1);

/** Creates the folder if needed and checks that it can be written, before any work starts. */
function ensureWritableDir(dir: string, what: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' || code === 'EROFS' || code === 'EPERM' ? 'is read-only (no permission to write there)' : code === 'ENOTDIR' || code === 'EEXIST' ? 'is not a folder (a file is in the way)' : `cannot be created (${code ?? (e as Error).message})`;
    throw new Error(`${what} ${dir}: the folder ${why}`);
  }
}

/** For an output file: its folder must be writable. */
function ensureWritableFile(path: string, what: string): void {
  ensureWritableDir(dirname(resolve(path)), what);
  if (existsSync(path) && statSync(path).isDirectory()) throw new Error(`${what} ${path}: is a folder, expected a file name`);
}

/** Memory this process may use: the machine's, or its cgroup's limit when lower. */
function availableMemory(): number {
  let limit = totalmem();
  for (const f of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const v = Number(readFileSync(f, 'utf8').trim());
      if (Number.isFinite(v) && v > 0) limit = Math.min(limit, v);
    } catch {
      // not in a cgroup with a limit
    }
  }
  return limit;
}

function assertFinite(x: Float32Array, what: string): void {
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i])) throw new Error(`${what}: the model produced ${x[i]} at index ${i}; nothing was written (check the weights, or try --backend reference)`);
}

function preset(name: string) {
  const p = PRESETS[name];
  if (!p) throw new Error(`--preset: unknown preset "${name}" (expected one of ${Object.keys(PRESETS).join(', ')})`);
  return p();
}

function split(s: string): Split {
  if (s !== 'train' && s !== 'test') throw new Error(`--split: expected train or test, got "${s}"`);
  return s;
}

export function trainOptionsFrom(o: Opts): TrainOptions {
  const unet = preset(o.preset);
  if (o.dropout !== undefined) unet.dropout = o.dropout;
  if (o.variance === 'learnedrange') unet.out_channels = 2 * unet.in_channels;
  const T = o.timesteps ?? 1000;
  const range = T === 1000 ? { betaStart: 1e-4, betaEnd: 0.02 } : scaledBetaRange(T);
  const diffusion: DiffusionConfig = {
    ...PAPER_DIFFUSION, schedule: (o.schedule ?? 'linear') as BetaSchedule, timesteps: T, ...range,
    prediction: o.prediction ?? 'eps', variance: o.variance ?? 'fixedlarge', loss: o.loss ?? 'simple',
  };
  validateDiffusionConfig(diffusion);
  return {
    ...DEFAULT_TRAIN, outDir: o.out, unet, diffusion, steps: o.steps, batchSize: o.batch, lr: o.lr, warmup: o.warmup,
    gradClip: o.gradClip, emaDecay: o.ema, emaWarmup: o.emaWarmup !== false, flip: !!o.flip, accumulate: o.accumulate,
    checkpointEvery: o.checkpointEvery, keepCheckpoints: o.keep, sampleEvery: o.sampleEvery, sampleSteps: o.sampleSteps,
    seed: o.seed, maxSeconds: o.maxMinutes !== undefined ? o.maxMinutes * 60 : undefined,
    override: o.override ? String(o.override).split(',').map((f: string) => f.trim().replace(/^--/, '')).filter(Boolean) : undefined,
    evalEvery: o.evalEvery ?? 0,
  };
}

export async function trainCommand(o: Opts): Promise<void> {
  const opts = trainOptionsFrom(o);
  ensureWritableDir(opts.outDir, '--out');
  const need = trainingMemoryBytes(opts.unet, opts.batchSize), have = availableMemory();
  if (need > 0.85 * have)
    throw new Error(`--batch ${opts.batchSize}: a training step of preset ${o.preset} needs about ${gib(need)} GiB, and this machine allows ${gib(have)} GiB (${gib(freemem())} GiB free now); use a smaller --batch, with --accumulate to keep the effective batch`);
  if (opts.lr === 0) warn('--lr 0: the weights will never change');
  const data = loadDataset(o.data, 'train', { size: opts.unet.sample_size, channels: opts.unet.in_channels as 1 | 3 });
  if (opts.batchSize > data.count) warn(`--batch ${opts.batchSize} is larger than the ${data.count} images of ${data.name}: every batch repeats images`);
  console.error(`ddpm train: ${data.count} images ${data.channels}x${data.height}x${data.width} from ${data.name}; preset ${o.preset} (${new UNet(opts.unet).parameterCount.toLocaleString()} parameters); backend ${getBackend().name}`);
  let evaluate: ((sampleImages: (n: number) => Promise<Float32Array>, step: number) => Promise<Record<string, number>>) | undefined;
  if (opts.evalEvery) {
    const netName: string = o.evalNet ?? (opts.unet.in_channels === 3 ? 'cifar10' : 'mnist');
    const net = loadDigitNet(netName);
    if (opts.unet.in_channels !== net.channels || opts.unet.sample_size !== net.size)
      throw new Error(`--eval-every: the feature network "${netName}" takes ${net.channels}x${net.size}x${net.size} images; preset ${o.preset} makes ${opts.unet.in_channels}x${opts.unet.sample_size}x${opts.unet.sample_size}`);
    const nRef = Math.min(2000, data.count);
    const ref = (await net.embed(await makeBatch(data, Int32Array.from({ length: nRef }, (_, i) => i)).data(), nRef)).features;
    const refStats = featureStats(ref, nRef, DIGITNET_FEATURES);
    const n: number = o.evalSamples ?? 256;
    evaluate = async (sampleImages) => {
      const f = (await net.embed(await sampleImages(n), n)).features;
      const kid = kernelInceptionDistance(ref, nRef, f, n, DIGITNET_FEATURES, 10, n);
      return { fd: frechetDistance(featureStats(f, n, DIGITNET_FEATURES), refStats), kid: kid.mean, kid_stderr: kid.stderr, samples: n };
    };
  }
  const bar = new Progress('train', opts.steps, undefined, false, opts.maxSeconds);
  let ema = 0;
  const st = await train(opts, data, {
    evaluate,
    onStep: (m) => {
      ema = ema ? 0.98 * ema + 0.02 * m.loss : m.loss;
      if (m.quality) console.error(`\nstep ${m.step}: FD ${m.quality.fd.toFixed(3)}, KID ${m.quality.kid.toExponential(2)} (${m.quality.samples} DDIM-50 samples of the EMA weights against ${Math.min(2000, data.count)} training images)`);
      bar.update(m.step, `loss ${ema.toFixed(4)} ${m.images_per_s.toFixed(0)} img/s`);
    },
    onCheckpoint: (dir) => {
      if (!process.stderr.isTTY) console.error(`checkpoint ${dir}`);
    },
    log: (m) => console.error(m),
  });
  if (st.interrupted) {
    console.error(`\nstopped by ${st.interrupted} at step ${st.step}: checkpoint written to ${join(opts.outDir, 'checkpoints')}; run the same command to resume`);
    process.exitCode = st.interrupted === 'SIGINT' ? 130 : 143;
    return;
  }
  console.error(`\ndone: step ${st.step}; model (EMA weights) in ${opts.outDir}, log ${join(opts.outDir, 'metrics.jsonl')}, curve ${join(opts.outDir, 'loss.png')}`);
}

const MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'models');

/** The names of the shipped models (folders of models/ with a config.json). */
export function shippedModels(): string[] {
  return existsSync(MODELS_DIR) ? readdirSync(MODELS_DIR).filter((f) => existsSync(join(MODELS_DIR, f, 'config.json'))).sort() : [];
}

/** A model folder, or the name of a model shipped with ddpm (models/NAME). */
export function modelPath(spec: string): string {
  if (existsSync(spec) || /[/\\.]/.test(spec)) return spec;
  const shipped = join(MODELS_DIR, spec);
  if (existsSync(join(shipped, 'config.json'))) return shipped;
  const names = shippedModels();
  throw new Error(`${spec}: model folder not found${names.length ? ` (shipped models: ${names.join(', ')})` : ''}`);
}

let precision: Precision = 'f32';

/** The global --precision: bf16 only for commands that run the model forward, on a backend that has it. */
export function setPrecision(p: Precision, command: string, backend: Backend): void {
  if (p === 'bf16') {
    if (command === 'train') throw new Error('--precision bf16: training runs in float32 (bf16 is for sampling and evaluation)');
    if (backend.name === 'native' && !(backend as Backend & { info: { bf16: boolean } }).info.bf16)
      throw new Error('--precision bf16: this CPU has neither AVX512-BF16 nor AMX, so oneDNN has no bf16 kernels for it; use f32');
    if (backend.name === 'webgpu') throw new Error('--precision bf16: not implemented on the webgpu backend; use f32');
  }
  precision = p;
}

/** --conv-algorithm: the native backend's choice; other backends compute every convolution directly. */
export function setConvAlgorithm(a: ConvAlgorithm | undefined, backend: Backend): void {
  if (a === undefined) return;
  if (backend instanceof NativeBackend) backend.setConvAlgorithm(a);
  else warn(`--conv-algorithm ${a}: only the native backend has a choice; the ${backend.name} backend computes its convolutions directly`);
}

/** A model folder loaded for the forward pass, in the chosen precision. */
function loadModelForward(spec: string) {
  const { model, folder } = loadModel(modelPath(spec));
  model.precision = precision;
  return { model, folder };
}

function loadForSampling(spec: string) {
  const { model, folder } = loadModelForward(spec);
  for (const w of folder.warnings) console.error(w);
  const diffusion = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
  return { model, diffusion, cfg: folder.unetConfig };
}

/**
 * Draws shape[0] samples in batches (sample i gets the same noise in any batch), with a progress bar; onStep sees
 * every step of every batch. Fails, naming the images, when the model produces non-finite values.
 */
async function drawSamples(model: UNet, diffusion: GaussianDiffusion, shape: number[], batch: number, opts: Omit<SampleOptions, 'sampleStart'>, label: string, what: string, onStep?: (st: SamplerStep, start: number, B: number) => void, keep?: SampleKeep): Promise<Float32Array> {
  const [n, ...per] = shape;
  const size = per.reduce((a, b) => a * b, 1);
  const all = new Float32Array(n * size);
  const steps = samplerPlan(diffusion, opts).plan.length;
  const first = keep ? resumeSamples(keep, all, size, batch) : 0;
  const bar = new Progress(label, Math.ceil(n / batch) * steps, 0);
  let done = Math.ceil(first / batch) * steps;
  for (let start = first; start < n; start += batch) {
    const B = Math.min(batch, n - start);
    const it = sample(diffusion, (x, t) => model.forward(x, t), [B, ...per], { ...opts, sampleStart: start });
    let r = it.next();
    while (!r.done) {
      onStep?.(r.value, start, B);
      bar.update(++done);
      r = it.next();
    }
    const x = await r.value.data();
    assertFinite(x, `${what} (images ${start}..${start + B - 1})`);
    all.set(x, start * size);
    if (keep) keepBatch(keep, x, start + B);
  }
  if (keep) finishSamples(keep, all, shape);
  return all;
}

/** Where drawn samples are kept (an .npy) and what request drew them (a run resumes only the same request). */
interface SampleKeep {
  file: string;
  key: string;
}
// While a run draws, FILE.partial holds the finished batches' float32 values and FILE.partial.json the request and
// how many images are done (written after the values, so a kill between the two loses at most one batch).
function resumeSamples(k: SampleKeep, all: Float32Array, size: number, batch: number): number {
  const meta = `${k.file}.partial.json`, raw = `${k.file}.partial`;
  if (!existsSync(meta) || !existsSync(raw)) return 0;
  const m = readJsonFile(meta);
  if (m.key !== k.key) {
    console.error(`${k.file}: the kept samples were drawn for another request (${m.key}); starting over`);
    return 0;
  }
  const done = Math.min(Number(m.done) || 0, Math.floor(statSync(raw).size / 4 / size), all.length / size);
  const start = Math.floor(done / batch) * batch; // batch boundaries: sample i's noise does not depend on them, but keep them aligned
  const bytes = readFileSync(raw);
  all.set(new Float32Array(bytes.buffer, bytes.byteOffset, start * size));
  truncateSync(raw, start * size * 4);
  if (start) console.error(`${k.file}: resuming after ${start} kept samples`);
  return start;
}

function keepBatch(k: SampleKeep, x: Float32Array, done: number): void {
  appendFileSync(`${k.file}.partial`, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  writeFileAtomic(`${k.file}.partial.json`, JSON.stringify({ key: k.key, done }));
}

function finishSamples(k: SampleKeep, all: Float32Array, shape: number[]): void {
  writeFileAtomic(k.file, serializeNpy(all, shape));
  rmSync(`${k.file}.partial`, { force: true });
  rmSync(`${k.file}.partial.json`, { force: true });
}

const OWN_SAMPLE_FILES = /^(sample-\d+\.png|grid\.png|strip\.png|samples\.npy)$/;

export async function sampleCommand(o: Opts): Promise<void> {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const n: number = o.num, S = cfg.sample_size, C = cfg.in_channels;
  const bytes = n * C * S * S * 4 * 2;
  if (bytes > 0.5 * availableMemory()) throw new Error(`-n ${n}: ${n} samples of ${C}x${S}x${S} need ${gib(bytes)} GiB to hold, more than half of this machine's ${gib(availableMemory())} GiB; draw them in several runs with --seed and disjoint --out`);
  const sampler = o.sampler as SamplerName;
  const spacing = o.timestepSpacing as TimestepSpacing | undefined;
  if (o.eta !== undefined && sampler !== 'ddim') warn(`--eta applies to the ddim sampler only; the ${sampler} sampler ignores it`);
  // validates --steps and --timestep-spacing before any work
  const { plan } = samplerPlan(diffusion, { sampler, steps: o.steps, timestepSpacing: spacing });
  const clip: boolean = o.clip ?? defaultClip(sampler, diffusion);
  const stepsLabel = `${o.steps ?? diffusion.numTimesteps}${spacing ? `-${spacing}` : ''}`.replace(/,/g, '_');
  const out: string = o.out ?? join('samples', `${basename(resolve(modelPath(o.model)))}-${sampler}-${stepsLabel}-seed${o.seed}`);
  ensureWritableDir(out, '--out');
  const old = readdirSync(out).filter((f) => OWN_SAMPLE_FILES.test(f));
  if (old.length && !o.overwrite) throw new Error(`--out ${out}: holds ${old.length} images of an earlier run; pass --overwrite to replace them, or choose another --out`);
  for (const f of old) rmSync(join(out, f));
  const stripTensors: Tensor[] = [];
  const all = await drawSamples(model, diffusion, [n, C, S, S], o.batch, { sampler, steps: o.steps, timestepSpacing: spacing, seed: o.seed, eta: o.eta, clip }, `sample ${sampler}`, 'sample', (st, start, B) => {
    if (o.strip && start === 0 && (st.step % Math.max(1, Math.floor(st.total / 10)) === 0 || st.step === st.total))
      stripTensors.push(st.predX0);
  });
  const stripRows = await Promise.all(stripTensors.map(async (x) => (await x.data()).slice(0, Math.min(x.shape[0], 8) * C * S * S)));
  writePng(join(out, 'grid.png'), imageGrid(all, [n, C, S, S], Math.ceil(Math.sqrt(n))));
  writeImages(all, [n, C, S, S], (i) => join(out, `sample-${String(i).padStart(5, '0')}.png`));
  if (o.npy) writeFileAtomic(join(out, 'samples.npy'), serializeNpy(all, [n, C, S, S]));
  if (stripRows.length) {
    const k = stripRows[0].length / (C * S * S);
    // rows: samples; columns: the x0 estimate along the chain
    const strip = new Float32Array(k * stripRows.length * C * S * S);
    for (let s = 0; s < k; s++)
      stripRows.forEach((row, j) => strip.set(row.subarray(s * C * S * S, (s + 1) * C * S * S), (s * stripRows.length + j) * C * S * S));
    writePng(join(out, 'strip.png'), imageGrid(strip, [k * stripRows.length, C, S, S], stripRows.length));
  }
  console.error(`wrote ${join(out, 'grid.png')} and ${n} single ${S}x${S} PNGs${stripRows.length ? ` and ${join(out, 'strip.png')}` : ''} (${sampler}, ${plan.length} steps, clip ${clip ? 'on' : 'off'})`);
}

/**
 * The n images of a dataset an evaluation uses: evenly spread over it with --spread, else the first n (with a warning
 * when those miss classes); `which` names the choice ('' when n is the whole set).
 */
function evalSubset(ds: ImageDataset, n: number, spread: boolean, what: string): { indices: Int32Array; which: string } {
  if (!spread) {
    const w = firstImagesWarning(ds, n, '--spread');
    if (w) warn(what ? `${what}: ${w}` : w);
  }
  const which = n < ds.count ? (spread ? `${n} spread over ${ds.count}` : `the first ${n} of ${ds.count}`) : '';
  return { indices: subsetIndices(ds.count, n, spread), which };
}

export async function evalBpdCommand(o: Opts): Promise<void> {
  if (o.out) ensureWritableFile(o.out, '--out');
  if (o.rdPlot) ensureWritableFile(o.rdPlot, '--rd-plot');
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const data = loadDataset(o.data, split(o.split), { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  if (data.channels !== cfg.in_channels || data.height !== cfg.sample_size) throw new Error(`${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ${cfg.in_channels}x${cfg.sample_size}x${cfg.sample_size}`);
  if (o.num !== undefined && o.num > data.count) warn(`-n ${o.num}: ${data.name} has only ${data.count} images; evaluating all of them`);
  const n = Math.min(o.num ?? data.count, data.count);
  const { indices: pick, which } = evalSubset(data, n, !!o.spread, '');
  const clip = o.clip !== false;
  const nBatches = Math.ceil(n / o.batch);
  let bar: Progress | null = null;
  function* batches() {
    for (let s = 0; s < n; s += o.batch) yield { x0: makeBatch(data, pick.subarray(s, Math.min(n, s + o.batch))), start: s };
  }
  const r = await bitsPerDim(diffusion, (x, t) => model.forward(x, t), batches(), {
    seed: o.seed, tStride: o.tStride, clip,
    onProgress: (start, tDone, tTotal) => {
      bar ??= new Progress('eval bpd (batches x timesteps)', nBatches * tTotal, 0);
      bar.update((start / o.batch) * tTotal + tDone);
    },
  });
  const q = (a: number, b: number) => r.terms.filter((x) => x.t >= a && x.t < b).reduce((s, x) => s + x.bpd * x.weight, 0);
  const Tn = diffusion.numTimesteps;
  console.log(`images          ${r.images} (${data.name}, ${o.split}${which ? `, ${which}` : ''})`);
  console.log(`bits/dim        ${r.total.toFixed(4)}   (upper bound on NLL, eq. 5${o.tStride > 1 ? `; t < ${EXACT_HEAD} exact, above that every ${o.tStride}th t stands for its neighbours` : '; all T terms'})`);
  console.log(`x0 estimate     ${clip ? 'clipped to [-1, 1] (the official calc_bpd_loop default; --no-clip for the unclipped bound)' : 'not clipped (--no-clip)'}`);
  console.log(`  prior L_T     ${r.prior.toExponential(3)}`);
  console.log(`  decoder L_0   ${r.decoder.toFixed(4)}`);
  console.log(`  KL sum        ${r.kl.toFixed(4)}`);
  for (let k = 0; k < 4; k++) console.log(`    t in [${Math.floor((k * Tn) / 4)}, ${Math.floor(((k + 1) * Tn) / 4)})  ${q(Math.max(1, Math.floor((k * Tn) / 4)), Math.floor(((k + 1) * Tn) / 4)).toFixed(4)}`);
  // rate-distortion of the reverse chain as a code (paper Table 4): at reverse steps T/10, 2T/10, ..., T
  console.log(`rate-distortion (reverse step: rate bits/dim, RMSE on 0-255)`);
  for (let k = 1; k <= 10; k++) {
    const step = Math.round((k * Tn) / 10), want = Tn - step;
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

// ---------------------------------------------------------------- sample quality on the small feature networks

const DIGITNETS: Record<string, { file: string; data: string }> = {
  mnist: { file: 'digitnet-mnist.safetensors', data: '../shared/data/mnist' },
  fashion: { file: 'digitnet-fashion.safetensors', data: 'fashion-mnist' },
  cifar10: { file: 'digitnet-cifar10.safetensors', data: '../shared/data/cifar-10-batches-bin' },
};

function loadDigitNet(spec: string): DigitNet {
  const named = DIGITNETS[spec];
  const file = named ? join(MODELS_DIR, named.file) : spec;
  if (!existsSync(file)) throw new Error(`--net ${spec}: ${file} not found (expected ${Object.keys(DIGITNETS).join(', ')}, or a safetensors file)`);
  const { tensors, metadata } = parseSafetensors(new Uint8Array(readFileSync(file)), file);
  return new DigitNet(tensors, file, metadata);
}

/** A feature network for the quality metrics: the digit network (1x28x28) or Inception-v3 (any size, 3 channels). */
interface Extractor {
  label: string;
  dim: number;
  /** the image shape it takes ([C, H, W]; null: any H x W) */
  channels: number;
  size: number | null;
  embed(images: Float32Array, n: number, hw: [number, number]): Promise<{ features: Float32Array; probs: Float32Array | null }>;
}

function extractor(o: Opts): Extractor {
  if (o.inception) {
    if (!existsSync(o.inception)) throw new Error(`--inception ${o.inception}: file not found (pytorch-fid's weights as safetensors, see docs/metrics.md)`);
    const net = new InceptionV3(parseSafetensors(new Uint8Array(readFileSync(o.inception)), o.inception).tensors, o.inception);
    return {
      label: `Inception-v3 (pytorch-fid's FID network, ${o.inception}; images resized to 299 bilinearly)`, dim: INCEPTION_FEATURES, channels: 3, size: null,
      embed: (images, n, hw) => {
        const bar = new Progress('inception features', n, 0);
        return net.embed(images, n, hw, 16, 299, (d) => bar.update(d));
      },
    };
  }
  const net = loadDigitNet(o.net);
  return {
    label: `feature network "${o.net}" (${net.channels}x${net.size}x${net.size} images, ${DIGITNET_FEATURES}-d features; FD is FID's formula on these features, not on Inception-v3's)`,
    dim: DIGITNET_FEATURES, channels: net.channels, size: net.size, embed: (images, n) => net.embed(images, n),
  };
}

/** Gray images become RGB for Inception (as pytorch-fid's loader converts them). */
function toChannels(x: Float32Array, n: number, c: number, hw: number, want: number): Float32Array {
  if (c === want) return x;
  if (c !== 1 || want !== 3) throw new Error(`images have ${c} channels; the feature network needs ${want}`);
  const out = new Float32Array(n * 3 * hw);
  for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) out.set(x.subarray(i * hw, (i + 1) * hw), (i * 3 + k) * hw);
  return out;
}

/** Images on [-1, 1] from a dataset spec, a PNG folder, a .npy, or a model folder (sampled), in the extractor's channels. */
async function imageSet(spec: string, o: Opts, what: string, ex: Extractor): Promise<{ images: Float32Array; n: number; hw: [number, number]; name: string }> {
  const fits = (c: number, h: number, w: number) => {
    if (ex.size !== null && (h !== ex.size || w !== ex.size || c !== ex.channels)) throw new Error(`${what} ${spec}: images are ${c}x${h}x${w}; the ${ex.channels === 1 ? 'digit network' : 'feature network'} needs ${ex.channels}x${ex.size}x${ex.size} (--net ${Object.keys(DIGITNETS).join(' / ')}, or --inception for other images)`);
  };
  if (spec.endsWith('.npy')) {
    const { shape, data } = parseNpy(new Uint8Array(readFileSync(spec)), spec);
    if (shape.length !== 4) throw new Error(`${spec}: expected [N, C, H, W] images on [-1, 1], got shape (${shape.join(', ')})`);
    fits(shape[1], shape[2], shape[3]);
    const n = Math.min(shape[0], o.num ?? shape[0]), hw = shape[2] * shape[3];
    return { images: toChannels(data.subarray(0, n * shape[1] * hw), n, shape[1], hw, ex.channels), n, hw: [shape[2], shape[3]], name: spec };
  }
  if (existsSync(join(spec, 'config.json')) || (!existsSync(spec) && !DATASET_NAMES.includes(spec) && existsSync(join(MODELS_DIR, spec, 'config.json')))) {
    const { model, diffusion, cfg } = loadForSampling(spec);
    const C = cfg.in_channels, S = cfg.sample_size;
    fits(C, S, S);
    const n: number = o.num ?? 1000;
    const sampler = o.sampler as SamplerName;
    const { plan } = samplerPlan(diffusion, { sampler, steps: o.steps, timestepSpacing: o.timestepSpacing });
    const sopts = { sampler, steps: o.steps, timestepSpacing: o.timestepSpacing, seed: o.seed, eta: o.eta, clip: o.clip ?? defaultClip(sampler, diffusion) };
    let keep: SampleKeep | undefined;
    if (o.samples) {
      ensureWritableFile(o.samples, '--samples');
      keep = { file: o.samples, key: JSON.stringify({ model: resolve(modelPath(spec)), n, ...sopts }) };
    }
    const images = await drawSamples(model, diffusion, [n, C, S, S], o.batch, sopts, `sample ${sampler} ${plan.length} steps`, `${what} samples`, undefined, keep);
    return { images: toChannels(images, n, C, S * S, ex.channels), n, hw: [S, S], name: `${n} samples of ${spec} (${sampler}, ${plan.length} steps, seed ${o.seed})` };
  }
  const ds = loadDataset(spec, split(o.split ?? 'test'), { size: ex.size ?? 299, channels: ex.channels as 1 | 3 });
  fits(ds.channels, ds.height, ds.width);
  const n = Math.min(ds.count, o.num ?? ds.count);
  const { indices, which } = evalSubset(ds, n, !!o.spread, what);
  const x = await makeBatch(ds, indices).data();
  return { images: toChannels(x, n, ds.channels, ds.height * ds.width, ex.channels), n, hw: [ds.height, ds.width], name: `${ds.name} (${which || n} images)` };
}

export async function evalQualityCommand(o: Opts): Promise<void> {
  if (o.out) ensureWritableFile(o.out, '--out');
  if (o.saveStats) ensureWritableFile(o.saveStats, '--save-stats');
  const ex = extractor(o);
  const cand = await imageSet(o.images, o, '--images', ex);
  const f = await ex.embed(cand.images, cand.n, cand.hw);
  const d = ex.dim;
  const stats = featureStats(f.features, cand.n, d);
  if (o.saveStats) writeFileAtomic(o.saveStats, serializeNpz({ mu: { shape: [d], data: stats.mu }, sigma: { shape: [d, d], data: stats.sigma } }));
  let refStats: FeatureStats, refFeatures: Float32Array | null = null, refN = 0, refName: string;
  const refSpec: string | undefined = o.ref ?? (o.inception ? undefined : DIGITNETS[o.net]?.data);
  if (!refSpec) throw new Error('--ref: give the reference set (a dataset, a PNG folder, a .npy or an .npz of statistics)');
  if (refSpec.endsWith('.npz')) {
    const z = parseNpz(new Uint8Array(readFileSync(refSpec)), refSpec);
    const mu = z.get('mu'), sigma = z.get('sigma');
    if (!mu || !sigma) throw new Error(`${refSpec}: expected arrays "mu" and "sigma" (pytorch-fid / TTUR statistics), found ${[...z.keys()].join(', ')}`);
    if (mu.data.length !== d || sigma.data.length !== d * d) throw new Error(`${refSpec}: statistics of dimension ${mu.data.length}; the feature network gives ${d}`);
    refStats = { dim: d, n: 0, mu: mu.data, sigma: sigma.data };
    refName = `${refSpec} (statistics only: no KID, precision or recall)`;
  } else {
    const ref = await imageSet(refSpec, { ...o, num: o.refNum, split: o.refSplit }, '--ref', ex);
    refFeatures = (await ex.embed(ref.images, ref.n, ref.hw)).features;
    refN = ref.n;
    refStats = featureStats(refFeatures, refN, d);
    refName = ref.name;
  }
  const fdName = o.inception ? 'FID' : 'FD';
  const result: Record<string, unknown> = { images: cand.name, reference: refName, net: o.inception ? 'inception-v3' : o.net, fd: frechetDistance(stats, refStats) };
  if (f.probs) result.is = inceptionScore(f.probs, cand.n, f.probs.length / cand.n, Math.min(10, cand.n));
  if (refFeatures) {
    result.kid = kernelInceptionDistance(refFeatures, refN, f.features, cand.n, d, o.kidSubsets, o.kidSize, o.seed);
    if (o.prNum > 0) {
      const m = Math.min(o.prNum, cand.n, refN);
      result.precisionRecall = { ...precisionRecall(refFeatures.subarray(0, m * d), m, f.features.subarray(0, m * d), m, d, 3), images: m };
    }
  }
  console.log(`images     ${cand.name}`);
  console.log(`reference  ${refName}`);
  console.log(`network    ${ex.label}`);
  console.log(`${fdName.padEnd(10)} ${(result.fd as number).toFixed(4)}`);
  const k = result.kid as { mean: number; std: number; stderr: number; subsets: number; subsetSize: number } | undefined;
  if (k) console.log(`KID        ${k.mean.toExponential(3)} +- ${k.stderr.toExponential(2)} (std ${k.std.toExponential(2)} over ${k.subsets} subsets of ${k.subsetSize})`);
  const is = result.is as { mean: number; std: number } | undefined;
  if (is) console.log(`IS         ${is.mean.toFixed(3)} +- ${is.std.toFixed(3)} (10 splits)`);
  else console.log('IS         - (the Inception weights have no fc layer)');
  const pr = result.precisionRecall as { precision: number; recall: number; images: number } | undefined;
  if (pr) console.log(`precision  ${pr.precision.toFixed(3)}   recall ${pr.recall.toFixed(3)} (k = 3, first ${pr.images} of each set)`);
  if (o.out) writeFileAtomic(o.out, JSON.stringify(result, null, 2));
}

export function reportCommand(run: string, o: Opts): void {
  const out: string = o.out ?? join(run, 'report.html');
  ensureWritableFile(out, '--out');
  writeFileAtomic(out, runReport(run));
  console.error(`wrote ${out}`);
}

export async function interpolateCommand(o: Opts): Promise<void> {
  ensureWritableFile(o.out, '--out');
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const data = loadDataset(o.data, split(o.split), { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  for (const k of ['a', 'b']) if (o[k] >= data.count) throw new Error(`--${k}: image ${o[k]} does not exist (${data.count} images)`);
  const t = o.t ?? Math.floor(diffusion.numTimesteps / 2);
  if (t >= diffusion.numTimesteps) throw new Error(`--t: ${t} is outside the model's timesteps [0, ${diffusion.numTimesteps - 1}]`);
  const lambdas = Array.from({ length: o.count }, (_, i) => i / (o.count - 1));
  const bar = new Progress('interpolate', t + 1, 0);
  const x = interpolate(diffusion, (xx, tt) => model.forward(xx, tt), makeBatch(data, [o.a]), makeBatch(data, [o.b]), lambdas, t, o.seed, (d) => bar.update(d));
  const xs = await x.data();
  assertFinite(xs, 'interpolate');
  // row: source a, the decoded mixtures, source b
  const src = await makeBatch(data, [o.a, o.b]).data(), per = src.length / 2;
  const row = new Float32Array(x.size + 2 * per);
  row.set(src.subarray(0, per), 0);
  row.set(xs, per);
  row.set(src.subarray(per), per + x.size);
  writePng(o.out, imageGrid(row, [o.count + 2, cfg.in_channels, cfg.sample_size, cfg.sample_size], o.count + 2));
  console.error(`wrote ${o.out} (image ${o.a}, ${o.count} mixtures decoded from t=${t}, image ${o.b})`);
}

export async function predictCommand(o: Opts): Promise<void> {
  ensureWritableFile(o.output, '--output');
  const { model, folder } = loadModelForward(o.model);
  for (const w of folder.warnings) console.error(w);
  const Tn = folder.diffusion.config.timesteps;
  const { shape, data } = parseNpy(new Uint8Array(readFileSync(o.input)), o.input);
  if (shape.length !== 4) throw new Error(`${o.input}: expected a [B, C, H, W] array, got shape (${shape.join(', ')})`);
  const spec = String(o.t).trim();
  if (!/^\d+(\s*,\s*\d+)*$/.test(spec)) throw new Error(`--t: expected an integer or comma-separated integers, got "${o.t}"`);
  const ts = spec.split(',').map((v) => Number(v.trim()));
  const bad = ts.find((t) => t >= Tn);
  if (bad !== undefined) throw new Error(`--t: ${bad} is outside the model's timesteps [0, ${Tn - 1}]`);
  const t = Int32Array.from(ts.length === 1 ? new Array(shape[0]).fill(ts[0]) : ts);
  if (t.length !== shape[0]) throw new Error(`--t: ${t.length} timesteps for a batch of ${shape[0]}`);
  const y = noGrad(() => model.forward(fromArray(data, shape), t));
  const ys = await y.data();
  assertFinite(ys, 'predict');
  writeFileAtomic(o.output, serializeNpy(ys, y.shape));
  console.error(`wrote ${o.output} (${y.shape.join('x')})`);
}

export async function convertCommand(o: Opts): Promise<void> {
  ensureWritableDir(o.out, '--out');
  const { model, folder } = loadModel(modelPath(o.model));
  for (const w of folder.warnings) console.error(w);
  writeModelFolder(o.out, folder.unetConfig, folder.diffusion.config, await weightsOf(model), o.float16 ? 'F16' : 'F32');
  console.error(`wrote ${o.out}${o.float16 ? ' (float16 weights)' : ''}`);
}

/** The newest checkpoint of a run folder (dir/checkpoints/step-N), if any. */
function latestCheckpoint(dir: string): { step: number; path: string } | null {
  const root = join(dir, 'checkpoints');
  if (!existsSync(root)) return null;
  const steps = readdirSync(root).map((d) => /^step-(\d+)$/.exec(d)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => a - b);
  return steps.length ? { step: steps[steps.length - 1], path: join(root, `step-${String(steps[steps.length - 1]).padStart(7, '0')}`) } : null;
}

export function infoCommand(o: Opts): void {
  const b = getBackend() as { name: string; info?: object };
  console.log(`ddpm     ${VERSION}`);
  console.log(`backend  ${b.name}${b.info ? ' ' + JSON.stringify(b.info) : ''}`);
  if (!o.model) {
    console.log(`presets  ${Object.keys(PRESETS).map((k) => `${k} (${new UNet(PRESETS[k]()).parameterCount.toLocaleString()} params)`).join(', ')}`);
    return;
  }
  const dir = modelPath(o.model);
  const { model, folder } = loadModel(dir);
  for (const w of folder.warnings) console.error(w);
  const c = folder.unetConfig, d = folder.diffusion.config;
  console.log(`model    ${o.model}`);
  console.log(`unet     ${c.in_channels}x${c.sample_size}x${c.sample_size}, channels ${JSON.stringify(c.block_out_channels)}, ${c.layers_per_block} blocks/level, ${model.parameterCount.toLocaleString()} parameters in ${model.params.size} tensors`);
  console.log(`process  T=${d.timesteps} ${d.schedule} beta ${d.betaStart}..${d.betaEnd}, predicts ${d.prediction}, variance ${d.variance}, loss ${d.loss}, clip ${d.clipSample}`);
  const betas = folder.diffusion.betas;
  if (betas) console.log(`betas    trained_betas: ${betas.length} values, ${betas[0].toExponential(4)} .. ${betas[betas.length - 1].toExponential(4)} (used instead of the named schedule)`);
  const ck = latestCheckpoint(dir);
  const stateFile = ck ? join(ck.path, 'trainer_state.json') : join(dir, 'trainer_state.json');
  if (existsSync(stateFile)) {
    const st = JSON.parse(readFileSync(stateFile, 'utf8')) as { step: number; options?: Record<string, unknown> };
    console.log(`training step ${st.step}${ck ? ` (latest checkpoint ${ck.path})` : ''}`);
    if (st.options) console.log(`options  ${JSON.stringify(st.options)}`);
  }
}

export async function dataCommand(o: Opts): Promise<void> {
  if (o.preview) ensureWritableFile(o.preview, '--preview');
  if (o.download) {
    const dir = await downloadDataset(o.download, { cacheDir: o.cache, baseUrl: o.baseUrl, log: (m) => console.error(m) });
    console.log(dir);
    if (!o.data) return;
  }
  if (!o.data) throw new Error('data: pass --data <spec> or --download <name>');
  const ds = loadDataset(o.data, split(o.split), { size: 32, channels: 3 });
  const s = pixelStats(ds);
  console.log(`${ds.name}: ${ds.count} images, ${ds.channels}x${ds.height}x${ds.width}, pixel mean ${s.mean.toFixed(5)}, std ${s.std.toFixed(5)} (on [0, 1])`);
  if (ds.files?.length) {
    const sizes = ds.files.map((f) => statSync(f).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const shown = ds.files.length <= 6 ? ds.files.map((f, i) => `${f} (${sizes[i].toLocaleString()} bytes)`).join(', ') : `${ds.files.length} files`;
    console.log(`files: ${shown}; ${total.toLocaleString()} bytes on disk in all`);
  }
  if (o.preview) {
    const k = Math.min(64, ds.count);
    const x = makeBatch(ds, Int32Array.from({ length: k }, (_, i) => i));
    writePng(o.preview, imageGrid(await x.data(), x.shape, 8));
    console.log(`wrote ${o.preview}`);
  }
}

export async function demoCommand(o: Opts): Promise<void> {
  const out: string = o.out;
  const minutes: number = o.minutes;
  // first, clean digits in seconds from the model shipped with ddpm
  if (existsSync(join(MODELS_DIR, 'mnist', 'config.json'))) {
    const t0 = Date.now();
    console.error('ddpm demo: sampling 16 digits from the shipped mnist model (ancestral, 100 steps: the best of docs/samplers.md)');
    sampleCommand({ model: 'mnist', out: join(out, 'shipped'), overwrite: true, num: 16, batch: 16, sampler: 'ancestral', steps: '100', seed: o.seed, strip: false });
    console.error(`ddpm demo: ${join(out, 'shipped', 'grid.png')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } else console.error(`ddpm demo: no shipped model in ${join(MODELS_DIR, 'mnist')}; skipping the first samples`);
  const earlier = latestCheckpoint(out);
  if (earlier) console.error(`ddpm demo: continuing the earlier demo in ${out} from step ${earlier.step} (delete the folder to start over)`);
  console.error(`ddpm demo: training the mnist preset on the embedded digits for ${minutes} minutes (backend ${getBackend().name}), then sampling`);
  await trainCommand({
    data: 'embedded', out, preset: 'mnist', steps: 100000, batch: 16, lr: 1e-3, warmup: 100, gradClip: 1, ema: 0.999, emaWarmup: true,
    flip: false, accumulate: 1, checkpointEvery: 200, keep: 2, sampleEvery: 0, sampleSteps: 100, timesteps: 1000, seed: o.seed,
    maxMinutes: minutes,
  });
  if (process.exitCode) return;
  sampleCommand({ model: out, out: join(out, 'samples'), overwrite: true, num: 16, batch: 16, sampler: 'ddim', steps: '50', seed: o.seed, strip: true });
  console.error(`demo done: ${join(out, 'samples', 'grid.png')} (samples), ${join(out, 'samples', 'strip.png')} (denoising strip), ${join(out, 'loss.png')}`);
}
