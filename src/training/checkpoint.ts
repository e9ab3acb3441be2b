// Checkpoints of a training run: writing one atomically (EMA weights as a diffusers model, raw weights, Adam moments,
// the state and options), and restoring the newest readable one after checking that the resumed run's options agree
// with the saved run's. Node-only.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readModelFolder, weightsOf, writeModelFolder } from '../io/checkpoint.js';
import { readJson, writeDirAtomic } from '../io/files.js';
import { parseSafetensors, serializeSafetensors, type SafeTensor } from '../io/safetensors.js';
import type { TrainOptions, TrainState } from './core.js';
import { checkpointDirs } from './run-folder.js';

/**
 * Reads one checkpoint completely (throws naming the file on any fault); nothing is changed until all of it is read.
 */
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

/**
 * The options a resumed run must share with the saved run, by CLI name; the rest (steps, time, checkpointing) may
 * change.
 */
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
  'embed-lr': { get: (o) => o.embedLr ?? null, overridable: true },
  warmup: { get: (o) => o.warmup, overridable: true },
  'grad-clip': { get: (o) => o.gradClip, overridable: true },
  ema: { get: (o) => o.emaDecay, overridable: true },
  'ema-warmup': { get: (o) => o.emaWarmup, overridable: true },
  flip: { get: (o) => o.flip, overridable: true },
  dropout: { get: (o) => o.unet.dropout, overridable: true },
  'cond-drop': { get: (o) => o.condDrop ?? 0, overridable: true },
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
