// The Node trainer: the training core (core.ts, Algorithm 1 with the paper's recipe) run in a run folder, with
// periodic atomic checkpoints keeping the last K (checkpoint.ts), exact resume (data order, timesteps and noise are
// pure functions of seed and step), the run lock and crash clean-up (run-folder.ts), signals, sample grids, a JSONL
// log and the loss curve.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
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
  cycledLabels,
  trainStep,
} from './core.js';
import { makeDirs, writeFileAtomic } from '../io/files.js';
import { readModelFolder } from '../io/checkpoint.js';
import { imageGrid, linePlot, writePng } from '../io/png.js';
import { restoreLatest, saveCheckpoint } from './checkpoint.js';
import { checkRunFolder, cleanLeftovers, lockRun } from './run-folder.js';

export { RESUME_FIELDS, ResumeOptionsError, checkResumeOptions, restoreLatest, saveCheckpoint } from './checkpoint.js';
export { checkRunFolder, checkpointDirs, cleanLeftovers, lockRun } from './run-folder.js';

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
      `${data.name}: images are ${data.channels}x${data.height}x${data.width}, the model expects ` +
        `${o.unet.in_channels}x${o.unet.sample_size}x${o.unet.sample_size}`,
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
  else if (o.init) log(`starting from the weights of ${o.init} (${initFrom(o, st)})`);
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
      // the checkpoint of the last finite step holds the weights that gave this loss: it is only "good" when steps ran
      // after it
      const ck = join(o.outDir, 'checkpoints');
      const where =
        lastCheckpointStep === null
          ? 'no checkpoint was written'
          : lastCheckpointStep < e.step - 1
            ? `the newest checkpoint (step ${lastCheckpointStep}) in ${ck} was written before it and is intact`
            : `the newest checkpoint (step ${lastCheckpointStep}) holds the weights that gave it, so resuming from ` +
              `it fails the same way unless the options change; an older one may be kept in ${ck}`;
      throw new Error(`${e.message}; ${where}. Lower --lr or check the data.`);
    }
    if (o.evalEvery && cb.evaluate && st.step % o.evalEvery === 0) {
      const sampleImages = (n: number) =>
        withWeights(st.model, st.ema.shadow, () =>
          noGrad(() =>
            sampleAll(
              diffusion,
              (xx, tt) => st.model.forward(xx, tt, { classLabels: cycledLabels(o.unet, xx.shape[0]) }),
              [n, C, S, S],
              {
                sampler: 'ddim',
                steps: 50,
                seed: o.seed + 1,
              },
            ),
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

/**
 * Loads a model folder's weights into a new run (model and EMA): the same network but for the class embedding, which
 * keeps its zero start when the folder has none (so step 0 computes the folder's model). Returns what it did.
 */
export function initFrom(o: TrainOptions, st: TrainState): string {
  const dir = o.init!;
  const folder = checkInit(o);
  let kept = 0;
  const params = [...st.model.params.entries()];
  params.forEach(([name, p], i) => {
    const w = folder.weights.get(name);
    if (!w) {
      if (!name.startsWith('class_embedding.')) throw new Error(`--init ${dir}: tensor "${name}" is missing`);
      return;
    }
    if (w.data.length !== p.size)
      throw new Error(`--init ${dir}: tensor "${name}" has ${w.data.length} values, the model ${p.size}`);
    p.write(w.data);
    st.ema.shadow[i].write(w.data);
    kept++;
  });
  return `${kept} of ${params.length} tensors`;
}

/** Reads the --init folder and refuses one whose network is not the run's (but for the class embedding). */
export function checkInit(o: TrainOptions) {
  const dir = o.init!;
  const folder = readModelFolder(dir);
  const strip = (c: Record<string, unknown>) => {
    const { dropout, class_embed_type, num_class_embeds, ddpm_null_class, center_input_sample, ...rest } = c;
    void [dropout, class_embed_type, num_class_embeds, ddpm_null_class, center_input_sample];
    return JSON.stringify(
      Object.keys(rest)
        .sort()
        .map((k) => [k, rest[k]]),
    );
  };
  const mine = o.unet as unknown as Record<string, unknown>,
    theirs = folder.unetConfig as unknown as Record<string, unknown>;
  if (strip(mine) !== strip(theirs)) {
    const field = Object.keys(theirs).find(
      (k) => JSON.stringify(mine[k]) !== JSON.stringify(theirs[k]) && k !== 'dropout',
    );
    throw new Error(
      `--init ${dir}: its network differs from --preset's (field "${field}": ${JSON.stringify(theirs[field ?? ''])} ` +
        `against ${JSON.stringify(mine[field ?? ''])}); use the preset it was trained with`,
    );
  }
  return folder;
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
      sampleAll(
        diffusion,
        (xx, tt) => st.model.forward(xx, tt, { classLabels: cycledLabels(o.unet, xx.shape[0]) }),
        [n, o.unet.in_channels, S, S],
        {
          sampler: 'ancestral',
          steps: o.sampleSteps,
          seed: o.seed + 1,
        },
      ),
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
