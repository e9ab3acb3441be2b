// The CLI's commands, each a thin layer over the library.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, getBackend, noGrad } from '../engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION, type DiffusionConfig } from '../diffusion/gaussian.js';
import { scaledBetaRange, type BetaSchedule } from '../diffusion/schedule.js';
import { sample, type SamplerName, type SamplerStep } from '../diffusion/samplers.js';
import { PRESETS, UNet } from '../model/unet.js';
import { makeBatch, pixelStats } from '../data/dataset.js';
import { loadDataset, type Split } from '../data/load.js';
import { loadModel, weightsOf, writeModelFolder } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/files.js';
import { imageGrid, linePlot, writeImages, writePng } from '../io/png.js';
import { parseNpy, serializeNpy } from '../io/npy.js';
import { DEFAULT_TRAIN, train, type TrainOptions } from '../training/train.js';
import { EXACT_HEAD, bitsPerDim } from '../eval/bpd.js';
import { interpolate } from '../diffusion/interpolate.js';
import { downloadDataset } from '../data/download.js';
import { Progress } from './progress.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Opts = Record<string, any>;

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
  return {
    ...DEFAULT_TRAIN, outDir: o.out, unet, diffusion, steps: o.steps, batchSize: o.batch, lr: o.lr, warmup: o.warmup,
    gradClip: o.gradClip, emaDecay: o.ema, emaWarmup: o.emaWarmup !== false, flip: !!o.flip, accumulate: o.accumulate,
    checkpointEvery: o.checkpointEvery, keepCheckpoints: o.keep, sampleEvery: o.sampleEvery, sampleSteps: o.sampleSteps,
    seed: o.seed, maxSeconds: o.maxMinutes !== undefined ? o.maxMinutes * 60 : undefined,
  };
}

export function trainCommand(o: Opts): void {
  const opts = trainOptionsFrom(o);
  const data = loadDataset(o.data, 'train', { size: opts.unet.sample_size, channels: opts.unet.in_channels as 1 | 3 });
  console.error(`ddpm train: ${data.count} images ${data.channels}x${data.height}x${data.width} from ${data.name}; preset ${o.preset} (${new UNet(opts.unet).parameterCount.toLocaleString()} parameters); backend ${getBackend().name}`);
  const bar = new Progress('train', opts.steps, undefined, false, opts.maxSeconds);
  let ema = 0;
  const st = train(opts, data, {
    onStep: (m) => {
      ema = ema ? 0.98 * ema + 0.02 * m.loss : m.loss;
      bar.update(m.step, `loss ${ema.toFixed(4)} ${m.images_per_s.toFixed(0)} img/s`);
    },
    onCheckpoint: (dir) => {
      if (!process.stderr.isTTY) console.error(`checkpoint ${dir}`);
    },
  });
  console.error(`\ndone: step ${st.step}; model (EMA weights) in ${opts.outDir}, log ${join(opts.outDir, 'metrics.jsonl')}, curve ${join(opts.outDir, 'loss.png')}`);
}

function loadForSampling(dir: string) {
  const { model, folder } = loadModel(dir);
  const diffusion = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
  return { model, diffusion, cfg: folder.unetConfig };
}

export function sampleCommand(o: Opts): void {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const n: number = o.num, S = cfg.sample_size, C = cfg.in_channels;
  mkdirSync(o.out, { recursive: true });
  const steps = o.steps ?? diffusion.numTimesteps;
  if (steps > diffusion.numTimesteps) throw new Error(`--steps: ${steps} is more than the model's ${diffusion.numTimesteps} timesteps`);
  const all = new Float32Array(n * C * S * S);
  const bar = new Progress(`sample ${o.sampler}`, Math.ceil(n / o.batch) * steps, 0);
  const stripRows: Float32Array[] = [];
  let done = 0;
  for (let start = 0; start < n; start += o.batch) {
    const B = Math.min(o.batch, n - start);
    const it = sample(diffusion, (x, t) => model.forward(x, t), [B, C, S, S], { sampler: o.sampler as SamplerName, steps, seed: o.seed, sampleStart: start, eta: o.eta, clip: o.clip });
    let r = it.next();
    let last: SamplerStep | undefined;
    while (!r.done) {
      last = r.value;
      if (o.strip && start === 0 && (last.step % Math.max(1, Math.floor(last.total / 10)) === 0 || last.step === last.total))
        stripRows.push(last.predX0.storage.slice(0, Math.min(B, 8) * C * S * S));
      bar.update(++done);
      r = it.next();
    }
    all.set(r.value.storage, start * C * S * S);
  }
  writePng(join(o.out, 'grid.png'), imageGrid(all, [n, C, S, S], Math.ceil(Math.sqrt(n))));
  writeImages(all, [n, C, S, S], (i) => join(o.out, `sample-${String(i).padStart(5, '0')}.png`));
  if (stripRows.length) {
    const k = stripRows[0].length / (C * S * S);
    // rows: samples; columns: the x0 estimate along the chain
    const strip = new Float32Array(k * stripRows.length * C * S * S);
    for (let s = 0; s < k; s++)
      stripRows.forEach((row, j) => strip.set(row.subarray(s * C * S * S, (s + 1) * C * S * S), (s * stripRows.length + j) * C * S * S));
    writePng(join(o.out, 'strip.png'), imageGrid(strip, [k * stripRows.length, C, S, S], stripRows.length));
  }
  console.error(`wrote ${join(o.out, 'grid.png')} and ${n} single PNGs${stripRows.length ? ` and ${join(o.out, 'strip.png')}` : ''}`);
}

export function evalBpdCommand(o: Opts): void {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const data = loadDataset(o.data, split(o.split), { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  if (data.channels !== cfg.in_channels || data.height !== cfg.sample_size) throw new Error(`${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ${cfg.in_channels}x${cfg.sample_size}x${cfg.sample_size}`);
  const n = Math.min(o.num ?? data.count, data.count);
  const bar = new Progress('eval bpd', n, 0);
  function* batches() {
    for (let s = 0; s < n; s += o.batch) {
      const idx = Int32Array.from({ length: Math.min(o.batch, n - s) }, (_, i) => s + i);
      yield { x0: makeBatch(data, idx), start: s };
    }
  }
  const r = bitsPerDim(diffusion, (x, t) => model.forward(x, t), batches(), o.seed, o.tStride, (d) => bar.update(d));
  const q = (a: number, b: number) => r.terms.filter((x) => x.t >= a && x.t < b).reduce((s, x) => s + x.bpd * x.weight, 0);
  const Tn = diffusion.numTimesteps;
  console.log(`images          ${r.images} (${data.name}, ${o.split})`);
  console.log(`bits/dim        ${r.total.toFixed(4)}   (upper bound on NLL, eq. 5${o.tStride > 1 ? `; t < ${EXACT_HEAD} exact, above that every ${o.tStride}th t stands for its neighbours` : ''})`);
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

export function interpolateCommand(o: Opts): void {
  const { model, diffusion, cfg } = loadForSampling(o.model);
  const data = loadDataset(o.data, split(o.split), { size: cfg.sample_size, channels: cfg.in_channels as 1 | 3 });
  for (const k of ['a', 'b']) if (o[k] >= data.count) throw new Error(`--${k}: image ${o[k]} does not exist (${data.count} images)`);
  const t = o.t ?? Math.floor(diffusion.numTimesteps / 2);
  const lambdas = Array.from({ length: o.count }, (_, i) => i / (o.count - 1));
  const x = interpolate(diffusion, (xx, tt) => model.forward(xx, tt), makeBatch(data, [o.a]), makeBatch(data, [o.b]), lambdas, t, o.seed);
  // row: source a, the decoded mixtures, source b
  const src = makeBatch(data, [o.a, o.b]).storage, per = src.length / 2;
  const row = new Float32Array(x.size + 2 * per);
  row.set(src.subarray(0, per), 0);
  row.set(x.storage, per);
  row.set(src.subarray(per), per + x.size);
  writePng(o.out, imageGrid(row, [o.count + 2, cfg.in_channels, cfg.sample_size, cfg.sample_size], o.count + 2));
  console.error(`wrote ${o.out} (image ${o.a}, ${o.count} mixtures decoded from t=${t}, image ${o.b})`);
}

export function predictCommand(o: Opts): void {
  const { model } = loadModel(o.model);
  const { shape, data } = parseNpy(new Uint8Array(readFileSync(o.input)), o.input);
  if (shape.length !== 4) throw new Error(`${o.input}: expected a [B, C, H, W] array, got shape (${shape.join(', ')})`);
  const ts = String(o.t).split(',').map((s) => Number(s.trim()));
  if (ts.some((t) => !Number.isInteger(t) || t < 0)) throw new Error(`--t: expected non-negative integers, got "${o.t}"`);
  const t = Int32Array.from(ts.length === 1 ? new Array(shape[0]).fill(ts[0]) : ts);
  if (t.length !== shape[0]) throw new Error(`--t: ${t.length} timesteps for a batch of ${shape[0]}`);
  const y = noGrad(() => model.forward(new Tensor(data, shape), t));
  writeFileAtomic(o.output, serializeNpy(y.storage, y.shape));
  console.error(`wrote ${o.output} (${y.shape.join('x')})`);
}

export function convertCommand(o: Opts): void {
  const { model, folder } = loadModel(o.model);
  writeModelFolder(o.out, folder.unetConfig, folder.diffusion.config, weightsOf(model));
  console.error(`wrote ${o.out}`);
}

export function infoCommand(o: Opts): void {
  const b = getBackend() as { name: string; info?: object };
  console.log(`backend  ${b.name}${b.info ? ' ' + JSON.stringify(b.info) : ''}`);
  if (!o.model) {
    console.log(`presets  ${Object.keys(PRESETS).map((k) => `${k} (${new UNet(PRESETS[k]()).parameterCount.toLocaleString()} params)`).join(', ')}`);
    return;
  }
  const { model, folder } = loadModel(o.model);
  const c = folder.unetConfig, d = folder.diffusion.config;
  console.log(`model    ${o.model}`);
  console.log(`unet     ${c.in_channels}x${c.sample_size}x${c.sample_size}, channels ${JSON.stringify(c.block_out_channels)}, ${c.layers_per_block} blocks/level, ${model.parameterCount.toLocaleString()} parameters in ${model.params.size} tensors`);
  console.log(`process  T=${d.timesteps} ${d.schedule} beta ${d.betaStart}..${d.betaEnd}, predicts ${d.prediction}, variance ${d.variance}, clip ${d.clipSample}`);
  const stateFile = join(o.model, 'trainer_state.json');
  if (existsSync(stateFile)) console.log(`training ${readFileSync(stateFile, 'utf8').slice(0, 200)}`);
}

export async function dataCommand(o: Opts): Promise<void> {
  if (o.download) {
    const dir = await downloadDataset(o.download, { cacheDir: o.cache, baseUrl: o.baseUrl, log: (m) => console.error(m) });
    console.log(dir);
    if (!o.data) return;
  }
  if (!o.data) throw new Error('data: pass --data <spec> or --download <name>');
  const ds = loadDataset(o.data, split(o.split), { size: 32, channels: 3 });
  const s = pixelStats(ds);
  console.log(`${ds.name}: ${ds.count} images, ${ds.channels}x${ds.height}x${ds.width}, pixel mean ${s.mean.toFixed(5)}, std ${s.std.toFixed(5)} (on [0, 1])`);
  if (o.preview) {
    const k = Math.min(64, ds.count);
    const x = makeBatch(ds, Int32Array.from({ length: k }, (_, i) => i));
    writePng(o.preview, imageGrid(x.storage, x.shape, 8));
    console.log(`wrote ${o.preview}`);
  }
}

export function demoCommand(o: Opts): void {
  const out: string = o.out;
  const minutes: number = o.minutes;
  console.error(`ddpm demo: training the mnist preset on the embedded digits for ${minutes} minutes (backend ${getBackend().name}), then sampling`);
  trainCommand({
    data: 'embedded', out, preset: 'mnist', steps: 100000, batch: 16, lr: 1e-3, warmup: 100, gradClip: 1, ema: 0.999, emaWarmup: true,
    flip: false, accumulate: 1, checkpointEvery: 200, keep: 2, sampleEvery: 0, sampleSteps: 100, timesteps: 1000, seed: o.seed,
    maxMinutes: minutes,
  });
  sampleCommand({ model: out, out: join(out, 'samples'), num: 16, batch: 16, sampler: 'ddim', steps: 50, eta: 0, seed: o.seed, clip: true, strip: true });
  console.error(`demo done: ${join(out, 'samples', 'grid.png')} (samples), ${join(out, 'samples', 'strip.png')} (denoising strip), ${join(out, 'loss.png')}`);
}
