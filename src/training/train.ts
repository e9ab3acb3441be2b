// Training (Algorithm 1) with the paper's recipe: Adam, linear warmup, global-norm clipping, EMA of parameters,
// optional random horizontal flips and dropout; gradient accumulation; periodic atomic checkpoints keeping the last K;
// exact resume (data order, timesteps and noise are pure functions of seed and step); sample grids; a JSONL log.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../engine/ops.js';
import { noGrad } from '../engine/tensor.js';
import { Adam, EMA, clipGradNorm, emaDecayAt } from '../engine/optim.js';
import { fillRandom, randomIntegers, randomPermutation } from '../engine/random.js';
import { type DiffusionConfig, GaussianDiffusion } from '../diffusion/gaussian.js';
import { sampleAll } from '../diffusion/samplers.js';
import { UNet, type UNetConfig } from '../model/unet.js';
import { type ImageDataset, makeBatch } from '../data/dataset.js';
import { readModelFolder, weightsOf, writeModelFolder } from '../io/checkpoint.js';
import { parseSafetensors, serializeSafetensors, type SafeTensor } from '../io/safetensors.js';
import { writeDirAtomic, writeFileAtomic } from '../io/files.js';
import { imageGrid, linePlot, writePng } from '../io/png.js';

export interface TrainOptions {
  outDir: string;
  unet: UNetConfig;
  diffusion: DiffusionConfig;
  steps: number;
  batchSize: number;
  lr: number;
  warmup: number;
  gradClip: number;
  emaDecay: number;
  /** Warm the EMA decay up as min(decay, (1 + step) / (10 + step)) (for short runs). */
  emaWarmup: boolean;
  flip: boolean;
  accumulate: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  sampleEvery: number;
  sampleSteps: number;
  seed: number;
  /** Stop after this many seconds (a checkpoint is written first). */
  maxSeconds?: number;
}

export const DEFAULT_TRAIN: Omit<TrainOptions, 'outDir' | 'unet' | 'diffusion' | 'steps'> = {
  batchSize: 128, lr: 2e-4, warmup: 5000, gradClip: 1, emaDecay: 0.9999, emaWarmup: true, flip: false, accumulate: 1,
  checkpointEvery: 1000, keepCheckpoints: 3, sampleEvery: 0, sampleSteps: 100, seed: 0,
};

export interface StepMetrics {
  step: number;
  loss: number;
  /** mean L_simple in each quarter of the t range (null when the batch had none there) */
  loss_q: (number | null)[];
  grad_norm: number;
  lr: number;
  ema_decay: number;
  images_per_s: number;
  time_s: number;
}

// Stream ids of the counter-based generator: distinct per purpose and per micro-batch.
const STREAM = { order: 1, flips: 2, t: 3, noise: 4, dropout: 5 } as const;
const streamOf = (purpose: number, micro: number) => micro * 8 + purpose;

export interface TrainState {
  model: UNet;
  ema: EMA;
  adam: Adam;
  step: number;
}

/** The images for one micro-batch: positions in an endless sequence of per-epoch permutations. */
function batchIndices(n: number, first: number, count: number, seed: number, cache: Map<number, Int32Array>): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const pos = first + i, epoch = Math.floor(pos / n);
    let perm = cache.get(epoch);
    if (!perm) {
      perm = randomPermutation(n, { seed, stream: streamOf(STREAM.order, epoch) });
      cache.clear();
      cache.set(epoch, perm);
    }
    out[i] = perm[pos % n];
  }
  return out;
}

function checkpointDirs(outDir: string): { step: number; dir: string }[] {
  const root = join(outDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((d) => /^step-(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(root, m[0], 'trainer_state.json')))
    .map((m) => ({ step: Number(m[1]), dir: join(root, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

/** Restores the model, EMA and Adam state from the latest checkpoint in outDir, if any. */
export function restoreLatest(outDir: string, st: TrainState): boolean {
  const all = checkpointDirs(outDir);
  if (!all.length) return false;
  const { dir } = all[all.length - 1];
  const stateFile = join(dir, 'trainer_state.json');
  const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { step: number; adam_step: number };
  const raw = parseSafetensors(new Uint8Array(readFileSync(join(dir, 'raw_weights.safetensors'))), join(dir, 'raw_weights.safetensors')).tensors;
  const opt = parseSafetensors(new Uint8Array(readFileSync(join(dir, 'optimizer.safetensors'))), join(dir, 'optimizer.safetensors')).tensors;
  const ema = readModelFolder(dir).weights;
  [...st.model.params.entries()].forEach(([name, p], i) => {
    const get = (m: Map<string, SafeTensor>, k: string, file: string) => {
      const v = m.get(k);
      if (!v || v.data.length !== p.size) throw new Error(`${join(dir, file)}: tensor "${k}" missing or of the wrong size for this model`);
      return v.data;
    };
    p.storage.set(get(raw, name, 'raw_weights.safetensors'));
    st.ema.shadow[i].set(get(ema, name, 'diffusion_pytorch_model.safetensors'));
    st.adam.m[i].set(get(opt, `${name}.exp_avg`, 'optimizer.safetensors'));
    st.adam.v[i].set(get(opt, `${name}.exp_avg_sq`, 'optimizer.safetensors'));
  });
  st.step = saved.step;
  st.adam.step = saved.adam_step;
  return true;
}

/** Writes checkpoints/step-N atomically (EMA weights as the diffusers model, raw weights, Adam moments, state). */
export function saveCheckpoint(o: TrainOptions, st: TrainState): string {
  const dir = join(o.outDir, 'checkpoints', `step-${String(st.step).padStart(7, '0')}`);
  const names = [...st.model.params.keys()];
  writeDirAtomic(dir, (tmp) => {
    writeModelFolder(tmp, o.unet, o.diffusion, weightsOf(st.model, st.ema.shadow));
    writeFileSync(join(tmp, 'raw_weights.safetensors'), serializeSafetensors(weightsOf(st.model)));
    const opt: [string, SafeTensor][] = [];
    names.forEach((n, i) => {
      const shape = st.model.params.get(n)!.shape;
      opt.push([`${n}.exp_avg`, { shape, data: st.adam.m[i] }], [`${n}.exp_avg_sq`, { shape, data: st.adam.v[i] }]);
    });
    writeFileSync(join(tmp, 'optimizer.safetensors'), serializeSafetensors(opt));
    writeFileSync(join(tmp, 'trainer_state.json'), JSON.stringify({ step: st.step, adam_step: st.adam.step, seed: o.seed, options: { ...o, unet: undefined, diffusion: undefined } }, null, 2));
  });
  // the newest EMA model also lives at the top of outDir, ready for `ddpm sample` / `ddpm eval`
  writeModelFolder(o.outDir, o.unet, o.diffusion, weightsOf(st.model, st.ema.shadow));
  const all = checkpointDirs(o.outDir);
  for (const old of all.slice(0, Math.max(0, all.length - o.keepCheckpoints))) rmSync(old.dir, { recursive: true, force: true });
  return dir;
}

/** Runs fn with the model's parameters temporarily replaced by `values` (the EMA weights for sampling). */
export function withWeights<R>(model: UNet, values: Float32Array[], fn: () => R): R {
  const params = [...model.params.values()];
  const saved = params.map((p) => p.storage);
  params.forEach((p, i) => (p.storage = values[i]));
  try {
    return fn();
  } finally {
    params.forEach((p, i) => (p.storage = saved[i]));
  }
}

export interface TrainCallbacks {
  onStep?: (m: StepMetrics) => void;
  onCheckpoint?: (dir: string) => void;
}

function readMetrics(path: string, upTo: number): StepMetrics[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepMetrics).filter((m) => m.step <= upTo);
}

/** Trains (or resumes) and returns the final state. */
export function train(o: TrainOptions, data: ImageDataset, cb: TrainCallbacks = {}): TrainState {
  if (data.channels !== o.unet.in_channels || data.height !== o.unet.sample_size || data.width !== o.unet.sample_size)
    throw new Error(`${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ${o.unet.in_channels}x${o.unet.sample_size}x${o.unet.sample_size}`);
  mkdirSync(o.outDir, { recursive: true });
  const diffusion = new GaussianDiffusion(o.diffusion);
  const model = new UNet(o.unet).init(o.seed);
  const params = [...model.params.values()];
  const st: TrainState = { model, ema: new EMA(params), adam: new Adam(params, { lr: o.lr }), step: 0 };
  const resumed = restoreLatest(o.outDir, st);
  const metricsPath = join(o.outDir, 'metrics.jsonl');
  // keep the log consistent with the restored step (a killed run may have logged steps after its last checkpoint)
  const history = readMetrics(metricsPath, resumed ? st.step : 0);
  writeFileAtomic(metricsPath, history.map((m) => JSON.stringify(m) + '\n').join(''));
  const orderCache = new Map<number, Int32Array>();
  const B = o.batchSize, C = o.unet.in_channels, S = o.unet.sample_size, Tn = diffusion.numTimesteps;
  const started = Date.now();
  let lastCheckpointStep = st.step;

  while (st.step < o.steps) {
    const t0 = Date.now();
    const s = st.step;
    let lossSum = 0;
    const qSum = [0, 0, 0, 0], qN = [0, 0, 0, 0];
    for (let micro = 0; micro < o.accumulate; micro++) {
      const mb = s * o.accumulate + micro; // global micro-batch number
      const idx = batchIndices(data.count, mb * B, B, o.seed, orderCache);
      let flips: boolean[] | undefined;
      if (o.flip) {
        const u = new Float32Array(B);
        fillRandom(u, 1, { seed: o.seed, stream: streamOf(STREAM.flips, mb) }, 0, 'uniform');
        flips = Array.from(u, (v) => v < 0.5);
      }
      const x0 = makeBatch(data, idx, flips);
      const t = randomIntegers(B, 0, Tn - 1, { seed: o.seed, stream: streamOf(STREAM.t, mb) });
      const noise = T.randn([B, C, S, S], { seed: o.seed, stream: streamOf(STREAM.noise, mb) });
      const dropoutKey = { seed: o.seed, stream: streamOf(STREAM.dropout, mb) };
      const { loss, mse } = diffusion.trainingLosses((x, tt) => model.forward(x, tt, { dropoutKey }), x0, t, noise);
      const total = T.mul(T.mean(loss), 1 / o.accumulate);
      total.backward();
      lossSum += total.item();
      const per = mse.storage;
      for (let i = 0; i < B; i++) {
        const q = Math.min(3, Math.floor((4 * t[i]) / Tn));
        qSum[q] += per[i];
        qN[q]++;
      }
    }
    const gradNorm = clipGradNorm(params, o.gradClip);
    if (!Number.isFinite(lossSum) || !Number.isFinite(gradNorm))
      throw new Error(`training stopped at step ${s + 1}: ${!Number.isFinite(lossSum) ? `loss is ${lossSum}` : `gradient norm is ${gradNorm}`}; the last good checkpoint (step ${lastCheckpointStep}) in ${join(o.outDir, 'checkpoints')} is intact. Lower --lr or check the data.`);
    const lr = o.lr * Math.min(1, (s + 1) / Math.max(1, o.warmup));
    st.adam.lr = lr;
    st.adam.update();
    st.adam.zeroGrad();
    const decay = o.emaWarmup ? emaDecayAt(s, o.emaDecay) : o.emaDecay;
    st.ema.update(params, decay);
    st.step = s + 1;
    const dt = (Date.now() - t0) / 1000;
    const m: StepMetrics = {
      step: st.step, loss: lossSum, loss_q: qSum.map((v, i) => (qN[i] ? v / qN[i] : null)), grad_norm: gradNorm, lr, ema_decay: decay,
      images_per_s: (B * o.accumulate) / dt, time_s: (Date.now() - started) / 1000,
    };
    appendFileSync(metricsPath, JSON.stringify(m) + '\n');
    history.push(m);
    cb.onStep?.(m);
    const outOfTime = o.maxSeconds !== undefined && (Date.now() - started) / 1000 >= o.maxSeconds;
    if (st.step % o.checkpointEvery === 0 || st.step === o.steps || outOfTime) {
      const dir = saveCheckpoint(o, st);
      lastCheckpointStep = st.step;
      writeLossCurve(o.outDir, history);
      cb.onCheckpoint?.(dir);
    }
    if (o.sampleEvery > 0 && st.step % o.sampleEvery === 0) writeSampleGrid(o, st, diffusion, join(o.outDir, 'samples', `step-${String(st.step).padStart(7, '0')}.png`));
    if (outOfTime) break;
  }
  return st;
}

/** 16 samples from the EMA weights (respaced ancestral sampling) as a PNG grid. */
export function writeSampleGrid(o: TrainOptions, st: TrainState, diffusion: GaussianDiffusion, path: string, n = 16): void {
  const S = o.unet.sample_size;
  const x = withWeights(st.model, st.ema.shadow, () =>
    noGrad(() => sampleAll(diffusion, (xx, tt) => st.model.forward(xx, tt), [n, o.unet.in_channels, S, S], { sampler: 'ancestral', steps: o.sampleSteps, seed: o.seed + 1 })),
  );
  writePng(path, imageGrid(x.storage, x.shape, Math.ceil(Math.sqrt(n))));
}

/** loss.png: the training loss (grey: per step; blue: moving average over 100 steps), log scale. */
export function writeLossCurve(outDir: string, history: StepMetrics[]): void {
  if (history.length < 2) return;
  const raw: [number, number][] = history.map((m) => [m.step, m.loss]);
  const avg: [number, number][] = [];
  let acc = 0;
  history.forEach((m, i) => {
    acc += m.loss;
    if (i >= 100) acc -= history[i - 100].loss;
    avg.push([m.step, acc / Math.min(i + 1, 100)]);
  });
  writePng(join(outDir, 'loss.png'), linePlot([{ points: raw, color: [190, 190, 190] }, { points: avg, color: [20, 80, 200] }], 640, 360, true));
}

