// Training (Algorithm 1) with the paper's recipe: Adam, linear warmup, global-norm clipping, EMA of parameters,
// optional random horizontal flips and dropout; gradient accumulation; periodic atomic checkpoints keeping the last K;
// exact resume (data order, timesteps and noise are pure functions of seed and step); sample grids; a JSONL log.
import {
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  appendFileSync,
  openSync,
  closeSync,
  writeSync,
  statSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type Tensor, noGrad } from '../engine/tensor.js';
import { withValues } from '../engine/optim.js';
import { GaussianDiffusion } from '../diffusion/gaussian.js';
import { sampleAll } from '../diffusion/samplers.js';
import type { UNet } from '../model/unet.js';
import type { ImageDataset } from '../data/dataset.js';
import {
  NonFiniteLossError,
  type StepMetrics,
  type TrainOptions,
  type TrainState,
  createTrainState,
  trainStep,
} from './core.js';
import { readModelFolder, weightsOf, writeModelFolder } from '../io/checkpoint.js';
import { parseSafetensors, serializeSafetensors, type SafeTensor } from '../io/safetensors.js';
import { makeDirs, readJson, writeDirAtomic, writeFileAtomic } from '../io/files.js';
import { imageGrid, linePlot, writePng } from '../io/png.js';

export function checkpointDirs(outDir: string): { step: number; dir: string }[] {
  const root = join(outDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((d) => /^step-(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(root, m[0], 'trainer_state.json')))
    .map((m) => ({ step: Number(m[1]), dir: join(root, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

/** Reads one checkpoint completely (throws naming the file on any fault); nothing is changed until all of it is read. */
function readCheckpoint(dir: string, st: TrainState) {
  const saved = readJson(join(dir, 'trainer_state.json')) as {
    step: number;
    adam_step: number;
    options?: Record<string, unknown>;
  };
  if (!Number.isInteger(saved.step) || !Number.isInteger(saved.adam_step))
    throw new Error(`${join(dir, 'trainer_state.json')}: fields "step" and "adam_step" must be integers`);
  const file = (f: string) => join(dir, f);
  const raw = parseSafetensors(
    new Uint8Array(readFileSync(file('raw_weights.safetensors'))),
    file('raw_weights.safetensors'),
  ).tensors;
  const opt = parseSafetensors(
    new Uint8Array(readFileSync(file('optimizer.safetensors'))),
    file('optimizer.safetensors'),
  ).tensors;
  const ema = readModelFolder(dir).weights;
  const get = (m: Map<string, SafeTensor>, k: string, size: number, f: string) => {
    const v = m.get(k);
    if (!v || v.data.length !== size)
      throw new Error(`${file(f)}: tensor "${k}" missing or of the wrong size for this model`);
    return v.data;
  };
  const values = [...st.model.params.entries()].map(([name, p]) => ({
    raw: get(raw, name, p.size, 'raw_weights.safetensors'),
    ema: get(ema, name, p.size, 'diffusion_pytorch_model.safetensors'),
    m: get(opt, `${name}.exp_avg`, p.size, 'optimizer.safetensors'),
    v: get(opt, `${name}.exp_avg_sq`, p.size, 'optimizer.safetensors'),
  }));
  return { saved, values };
}

/** The options a resumed run must share with the saved run, by CLI name; the rest (steps, time, checkpointing) may change. */
export const RESUME_FIELDS: Record<string, { get: (o: TrainOptions) => unknown; overridable: boolean }> = {
  // out_channels follows --variance (learnedrange doubles it): a change there is named as --variance below
  preset: {
    get: (o) => ({
      ...o.unet,
      dropout: undefined,
      out_channels: undefined,
      center_input_sample: o.unet.center_input_sample ?? false,
    }),
    overridable: false,
  },
  timesteps: { get: (o) => o.diffusion.timesteps, overridable: false },
  schedule: { get: (o) => [o.diffusion.schedule, o.diffusion.betaStart, o.diffusion.betaEnd], overridable: false },
  prediction: { get: (o) => o.diffusion.prediction, overridable: false },
  variance: { get: (o) => o.diffusion.variance, overridable: false },
  loss: { get: (o) => o.diffusion.loss, overridable: false },
  batch: { get: (o) => o.batchSize, overridable: true },
  accumulate: { get: (o) => o.accumulate, overridable: true },
  seed: { get: (o) => o.seed, overridable: true },
  lr: { get: (o) => o.lr, overridable: true },
  warmup: { get: (o) => o.warmup, overridable: true },
  'grad-clip': { get: (o) => o.gradClip, overridable: true },
  ema: { get: (o) => o.emaDecay, overridable: true },
  'ema-warmup': { get: (o) => o.emaWarmup, overridable: true },
  flip: { get: (o) => o.flip, overridable: true },
  dropout: { get: (o) => o.unet.dropout, overridable: true },
};

function stableJson(v: unknown): string {
  return JSON.stringify(v, (_, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

/** A resumed run's options differ from the saved run's (not a fault of the checkpoint). */
export class ResumeOptionsError extends Error {}

/** Throws (one line naming the field and both values) when o differs from the saved run's options. */
export function checkResumeOptions(o: TrainOptions, saved: TrainOptions, run: string): void {
  const allowed = new Set(o.override ?? []);
  for (const f of allowed) {
    if (!RESUME_FIELDS[f])
      throw new ResumeOptionsError(
        `--override: unknown option "${f}" (one of ${Object.keys(RESUME_FIELDS)
          .filter((k) => RESUME_FIELDS[k].overridable)
          .join(', ')})`,
      );
    if (!RESUME_FIELDS[f].overridable)
      throw new ResumeOptionsError(
        `--override: "${f}" changes the model or the process and cannot change within a run; start a new --out`,
      );
  }
  for (const [field, spec] of Object.entries(RESUME_FIELDS)) {
    const a = stableJson(spec.get(o)),
      b = stableJson(spec.get(saved));
    if (a === b || allowed.has(field)) continue;
    const how = spec.overridable
      ? `pass the same value, or --override ${field} to change it`
      : 'start a new --out to change it';
    throw new ResumeOptionsError(`resume: --${field} is ${a} but the run in ${run} was started with ${b}; ${how}`);
  }
}

/** Saved options of a checkpoint, as TrainOptions (with unet and diffusion from the model folder's config). */
function savedOptions(dir: string, saved: { options?: Record<string, unknown> }): TrainOptions | null {
  if (!saved.options) return null;
  const folder = readModelFolder(dir);
  return { ...(saved.options as unknown as TrainOptions), unet: folder.unetConfig, diffusion: folder.diffusion.config };
}

/**
 * Restores model, EMA and Adam state from the newest readable checkpoint in outDir. A checkpoint that cannot be read
 * is skipped with a warning naming it and the one used instead. Returns the step and folder, or null for a new run.
 */
export function restoreLatest(
  o: TrainOptions,
  st: TrainState,
  warn: (msg: string) => void = () => {},
): { step: number; dir: string } | null {
  const all = checkpointDirs(o.outDir).reverse();
  let lastError = '';
  for (const { dir } of all) {
    let ck: ReturnType<typeof readCheckpoint>;
    try {
      // the options first: weights of another --preset or --variance do not fit, and the options say why
      const prev = savedOptions(dir, readJson(join(dir, 'trainer_state.json')));
      if (prev) checkResumeOptions(o, prev, o.outDir);
      ck = readCheckpoint(dir, st);
    } catch (e) {
      if (e instanceof ResumeOptionsError) throw e;
      lastError = `${dir} is unreadable (${(e as Error).message})`;
      warn(`warning: ${lastError}; trying the previous checkpoint`);
      continue;
    }
    [...st.model.params.values()].forEach((p, i) => {
      p.write(ck.values[i].raw);
      st.ema.shadow[i].write(ck.values[i].ema);
      st.adam.m[i].write(ck.values[i].m);
      st.adam.v[i].write(ck.values[i].v);
    });
    st.step = ck.saved.step;
    st.adam.step = ck.saved.adam_step;
    if (lastError) warn(`warning: resuming from ${dir} instead`);
    return { step: st.step, dir };
  }
  if (lastError)
    throw new Error(
      `${o.outDir}: no readable checkpoint (${lastError}); move the run's checkpoints/ away to start over`,
    );
  return null;
}

// ---------------------------------------------------------------- the run folder: lock and crash leftovers

/** Names a killed writer leaves (writeFileAtomic's and writeDirAtomic's temporary and moved-aside copies). */
const LEFTOVER = /\.\d+(\.\d+)?\.(tmp|old)$/;

/**
 * Refuses an output folder that is neither new, empty, nor a run folder of this trainer (one with a checkpoint), so that
 * training never overwrites a model it did not make (a shipped model, a converted folder, a run whose checkpoints were
 * moved). What a run leaves before its first checkpoint (its log, lock, sample grids, leftovers) may be reused.
 */
export function checkRunFolder(outDir: string): void {
  if (!existsSync(outDir) || checkpointDirs(outDir).length) return;
  const ours = (name: string, sub: string) => {
    if (LEFTOVER.test(name)) return true;
    if (name === 'metrics.jsonl' || name === 'train.lock') return true;
    const inside = () =>
      readdirSync(join(outDir, name)).every(
        (f) => LEFTOVER.test(f) || (sub === 'samples' && /^step-\d+\.png$/.test(f)),
      );
    return (
      (name === 'checkpoints' || name === 'samples') &&
      name === sub &&
      statSync(join(outDir, name)).isDirectory() &&
      inside()
    );
  };
  const foreign = readdirSync(outDir).filter((name) => !ours(name, name));
  if (foreign.length)
    throw new Error(
      `--out ${outDir}: holds ${foreign.slice(0, 4).join(', ')}${foreign.length > 4 ? ` and ${foreign.length - 4} more` : ''} but no checkpoint of a ddpm training run; training there would overwrite it. Use a new or empty folder (a run folder of ddpm train, with its checkpoints/, resumes)`,
    );
}

/**
 * Takes outDir/train.lock for this process: a second trainer on the same folder is refused at once; a lock left by a
 * process that no longer exists (on this host) is taken over. Returns a function that releases it.
 */
export function lockRun(outDir: string, warn: (msg: string) => void = () => {}): () => void {
  const path = join(outDir, 'train.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }));
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(
          `${path}: cannot create the run lock (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        );
    }
    let holder: { pid?: number; host?: string; started?: string } = {};
    try {
      holder = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      // a lock being written this instant, or garbage: judge it by its age
      if (Date.now() - statSync(path).mtimeMs < 5000)
        throw new Error(`${outDir}: another trainer is starting in this folder (${path}); use another --out`);
    }
    if (holder.pid && holder.host === hostname() && holder.pid !== process.pid && isAlive(holder.pid))
      throw new Error(
        `${outDir}: another trainer (pid ${holder.pid}, started ${holder.started}) is writing this run; wait for it, stop it, or use another --out`,
      );
    if (holder.pid && holder.host && holder.host !== hostname())
      throw new Error(
        `${outDir}: locked by a trainer on host ${holder.host} (pid ${holder.pid}); remove ${path} if that run is gone`,
      );
    warn(
      `warning: taking over the lock of a trainer that is gone (pid ${holder.pid ?? '?'}, started ${holder.started ?? '?'})`,
    );
    rmSync(path, { force: true });
  }
  throw new Error(`${path}: could not take the run lock`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes what a killed writer leaves behind: *.tmp files and folders, *.old folders (in outDir and checkpoints/). */
export function cleanLeftovers(outDir: string): string[] {
  const removed: string[] = [];
  for (const dir of [outDir, join(outDir, 'checkpoints')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (!LEFTOVER.test(name)) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    }
  }
  return removed;
}

/** Writes checkpoints/step-N atomically (EMA weights as the diffusers model, raw weights, Adam moments, state). */
export async function saveCheckpoint(o: TrainOptions, st: TrainState): Promise<string> {
  const dir = join(o.outDir, 'checkpoints', `step-${String(st.step).padStart(7, '0')}`);
  const names = [...st.model.params.keys()];
  // every value is read back first; the files are then written without waiting
  const [emaWeights, raw, m, v] = await Promise.all([
    weightsOf(st.model, st.ema.shadow),
    weightsOf(st.model),
    Promise.all(st.adam.m.map((t) => t.data())),
    Promise.all(st.adam.v.map((t) => t.data())),
  ]);
  const opt: [string, SafeTensor][] = [];
  names.forEach((n, i) => {
    const shape = st.model.params.get(n)!.shape;
    opt.push([`${n}.exp_avg`, { shape, data: m[i] }], [`${n}.exp_avg_sq`, { shape, data: v[i] }]);
  });
  writeDirAtomic(dir, (tmp) => {
    writeModelFolder(tmp, o.unet, o.diffusion, emaWeights);
    writeFileSync(join(tmp, 'raw_weights.safetensors'), serializeSafetensors(raw));
    writeFileSync(join(tmp, 'optimizer.safetensors'), serializeSafetensors(opt));
    writeFileSync(
      join(tmp, 'trainer_state.json'),
      JSON.stringify(
        {
          step: st.step,
          adam_step: st.adam.step,
          seed: o.seed,
          options: { ...o, unet: undefined, diffusion: undefined, override: undefined },
        },
        null,
        2,
      ),
    );
  });
  // the newest EMA model also lives at the top of outDir, ready for `ddpm sample` / `ddpm eval`
  writeModelFolder(o.outDir, o.unet, o.diffusion, emaWeights);
  const all = checkpointDirs(o.outDir);
  for (const old of all.slice(0, Math.max(0, all.length - o.keepCheckpoints)))
    rmSync(old.dir, { recursive: true, force: true });
  return dir;
}

/** Runs fn with the model's parameters temporarily replaced by `values` (the EMA weights for sampling). */
export function withWeights<R>(model: UNet, values: Tensor[], fn: () => R): R {
  return withValues([...model.params.values()], values, fn);
}

export interface TrainCallbacks {
  onStep?: (m: StepMetrics) => void;
  onCheckpoint?: (dir: string) => void;
  /** one-line notices: resuming, warnings, cleanup */
  log?: (msg: string) => void;
  /** sample quality every evalEvery steps, given a sampler of the EMA model: n images [n, C, H, W] on [-1, 1] */
  evaluate?: (sampleImages: (n: number) => Promise<Float32Array>, step: number) => Promise<Record<string, number>>;
}

function readMetrics(path: string, upTo: number): StepMetrics[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .flatMap((l, i) => {
      try {
        return [JSON.parse(l) as StepMetrics];
      } catch {
        throw new Error(`${path}: line ${i + 1} is not valid JSON`);
      }
    })
    .filter((m) => m.step <= upTo);
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Trains (or resumes) and returns the final state. The run folder is locked while it runs; SIGINT / SIGTERM stop it
 * after writing a checkpoint (state.interrupted names the signal).
 */
export async function train(o: TrainOptions, data: ImageDataset, cb: TrainCallbacks = {}): Promise<TrainState> {
  if (data.channels !== o.unet.in_channels || data.height !== o.unet.sample_size || data.width !== o.unet.sample_size)
    throw new Error(
      `${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ${o.unet.in_channels}x${o.unet.sample_size}x${o.unet.sample_size}`,
    );
  const log = cb.log ?? (() => {});
  checkRunFolder(o.outDir);
  makeDirs(o.outDir);
  const unlock = lockRun(o.outDir, log);
  let stopSignal: string | undefined;
  const onSignal = (sig: string) => {
    stopSignal = sig;
    log(`${sig}: stopping after this step and writing a checkpoint (send it again to stop at once)`);
  };
  const handlers = SIGNALS.map((sig) => {
    const h = () => onSignal(sig);
    process.once(sig, h);
    return [sig, h] as const;
  });
  try {
    for (const f of cleanLeftovers(o.outDir)) log(`removed ${f} (left by a killed writer)`);
    return await trainLocked(o, data, cb, log, () => stopSignal);
  } finally {
    for (const [sig, h] of handlers) process.removeListener(sig, h);
    unlock();
  }
}

async function trainLocked(
  o: TrainOptions,
  data: ImageDataset,
  cb: TrainCallbacks,
  log: (m: string) => void,
  stopRequested: () => string | undefined,
): Promise<TrainState> {
  const diffusion = new GaussianDiffusion(o.diffusion);
  const st = createTrainState(o);
  const resumed = restoreLatest(o, st, log);
  if (resumed) log(`resuming from step ${resumed.step} of ${o.outDir}`);
  if (resumed && st.step >= o.steps)
    log(`the run is already at step ${st.step} of ${o.steps}; pass a larger --steps to train further`);
  const metricsPath = join(o.outDir, 'metrics.jsonl');
  // keep the log consistent with the restored step (a killed run may have logged steps after its last checkpoint)
  const history = readMetrics(metricsPath, resumed ? st.step : 0);
  writeFileAtomic(metricsPath, history.map((m) => `${JSON.stringify(m)}\n`).join(''));
  const order = new Map<number, Int32Array>();
  const C = o.unet.in_channels,
    S = o.unet.sample_size;
  const started = Date.now();
  let lastCheckpointStep: number | null = resumed ? st.step : null;

  while (st.step < o.steps) {
    const t0 = Date.now();
    let m: StepMetrics;
    try {
      const core = await trainStep(o, diffusion, st, data, order);
      m = {
        ...core,
        images_per_s: (o.batchSize * o.accumulate) / ((Date.now() - t0) / 1000),
        time_s: (Date.now() - started) / 1000,
      };
    } catch (e) {
      if (!(e instanceof NonFiniteLossError)) throw e;
      // the checkpoint of the last finite step holds the weights that gave this loss: it is only "good" when steps ran after it
      const ck = join(o.outDir, 'checkpoints');
      const where =
        lastCheckpointStep === null
          ? 'no checkpoint was written'
          : lastCheckpointStep < e.step - 1
            ? `the newest checkpoint (step ${lastCheckpointStep}) in ${ck} was written before it and is intact`
            : `the newest checkpoint (step ${lastCheckpointStep}) holds the weights that gave it, so resuming from it fails the same way unless the options change; an older one may be kept in ${ck}`;
      throw new Error(`${e.message}; ${where}. Lower --lr or check the data.`);
    }
    if (o.evalEvery && cb.evaluate && st.step % o.evalEvery === 0) {
      const sampleImages = (n: number) =>
        withWeights(st.model, st.ema.shadow, () =>
          noGrad(() =>
            sampleAll(diffusion, (xx, tt) => st.model.forward(xx, tt), [n, C, S, S], {
              sampler: 'ddim',
              steps: 50,
              seed: o.seed + 1,
            }),
          ),
        ).data();
      m.quality = await cb.evaluate(sampleImages, st.step);
    }
    appendFileSync(metricsPath, `${JSON.stringify(m)}\n`);
    history.push(m);
    cb.onStep?.(m);
    // let signal handlers run between steps
    await new Promise<void>((r) => setImmediate(r));
    const signal = stopRequested();
    const outOfTime = o.maxSeconds !== undefined && (Date.now() - started) / 1000 >= o.maxSeconds;
    if (st.step % o.checkpointEvery === 0 || st.step === o.steps || outOfTime || signal) {
      const dir = await saveCheckpoint(o, st);
      lastCheckpointStep = st.step;
      writeLossCurve(o.outDir, history);
      cb.onCheckpoint?.(dir);
    }
    if (o.sampleEvery > 0 && st.step % o.sampleEvery === 0)
      await writeSampleGrid(
        o,
        st,
        diffusion,
        join(o.outDir, 'samples', `step-${String(st.step).padStart(7, '0')}.png`),
      );
    if (signal) {
      st.interrupted = signal;
      break;
    }
    if (outOfTime) break;
  }
  return st;
}

/** 16 samples from the EMA weights (respaced ancestral sampling) as a PNG grid. */
export async function writeSampleGrid(
  o: TrainOptions,
  st: TrainState,
  diffusion: GaussianDiffusion,
  path: string,
  n = 16,
): Promise<void> {
  const S = o.unet.sample_size;
  const x = withWeights(st.model, st.ema.shadow, () =>
    noGrad(() =>
      sampleAll(diffusion, (xx, tt) => st.model.forward(xx, tt), [n, o.unet.in_channels, S, S], {
        sampler: 'ancestral',
        steps: o.sampleSteps,
        seed: o.seed + 1,
      }),
    ),
  );
  writePng(path, imageGrid(await x.data(), x.shape, Math.ceil(Math.sqrt(n))));
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
  writePng(
    join(outDir, 'loss.png'),
    linePlot(
      [
        { points: raw, color: [190, 190, 190] },
        { points: avg, color: [20, 80, 200] },
      ],
      640,
      360,
      true,
    ),
  );
}
