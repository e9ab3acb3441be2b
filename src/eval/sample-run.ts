// Drawing many samples in batches, as `ddpm sample` and `ddpm eval quality` do: sample i gets the same noise in any
// batch split, non-finite output is refused naming the images, and a run may keep its finished batches in a file so
// that a killed run resumes after its last finished batch (only for the same request). Node-only (the kept files).
import { appendFileSync, existsSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import type { DenoiseFn, GaussianDiffusion } from '../diffusion/gaussian.js';
import { type SampleOptions, type SamplerStep, sample, samplerPlan } from '../diffusion/samplers.js';
import type { UNet } from '../model/unet.js';
import { readJson, writeFileAtomic } from '../io/files.js';
import { parseNpy, serializeNpy } from '../io/npy.js';

/** Where drawn samples are kept (an .npy) and the request that drew them (a run resumes only the same request). */
export interface SampleKeep {
  file: string;
  key: string;
}

export interface DrawOptions {
  /** what the images are, for error messages ("sample", "--images samples") */
  what?: string;
  /** every step of every batch (start: the batch's first image, B: its size) */
  onStep?: (st: SamplerStep, start: number, B: number) => void;
  /** model evaluations done and in all (a progress bar); first call with the work a resumed run skips */
  onProgress?: (done: number, total: number) => void;
  keep?: SampleKeep;
  /** notices: a resumed run, kept samples discarded */
  log?: (msg: string) => void;
  /** the model function of the batch of B images from `start` (class labels, guidance); default: model.forward */
  denoiser?: (start: number, B: number) => DenoiseFn;
}

/** Throws naming the first non-finite value; nothing is written then. */
export function assertFinite(x: Float32Array, what: string): void {
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]))
      throw new Error(
        `${what}: the model produced ${x[i]} at index ${i}; nothing was written (check the weights, or try ` +
          `--backend reference)`,
      );
}

/** Draws shape[0] samples in batches of `batch`; returns them [n, C, H, W] on [-1, 1]. */
export async function drawSamples(
  model: UNet,
  diffusion: GaussianDiffusion,
  shape: number[],
  batch: number,
  opts: Omit<SampleOptions, 'sampleStart'>,
  o: DrawOptions = {},
): Promise<Float32Array> {
  const [n, ...per] = shape;
  const size = per.reduce((a, b) => a * b, 1);
  const all = new Float32Array(n * size);
  const steps = samplerPlan(diffusion, opts).plan.length;
  if (o.keep) {
    const done = finishedSamples(o.keep, shape);
    if (done) {
      o.log?.(`${o.keep.file}: drawn before for this request; reusing it`);
      return done;
    }
  }
  const first = o.keep ? resumeSamples(o.keep, all, size, batch, o.log ?? (() => {})) : 0;
  const total = Math.ceil(n / batch) * steps;
  let done = Math.ceil(first / batch) * steps;
  o.onProgress?.(done, total);
  for (let start = first; start < n; start += batch) {
    const B = Math.min(batch, n - start);
    const f = o.denoiser?.(start, B) ?? ((x, t) => model.forward(x, t));
    const it = sample(diffusion, f, [B, ...per], { ...opts, sampleStart: start });
    let r = it.next();
    while (!r.done) {
      o.onStep?.(r.value, start, B);
      o.onProgress?.(++done, total);
      r = it.next();
    }
    const x = await r.value.data();
    assertFinite(x, `${o.what ?? 'samples'} (images ${start}..${start + B - 1})`);
    all.set(x, start * size);
    if (o.keep) keepBatch(o.keep, x, start + B);
  }
  if (o.keep) finishSamples(o.keep, all, shape);
  return all;
}

/**
 * A finished FILE of this request (FILE.request.json holds the request that drew it), or null when there is none;
 * refuses a FILE that ddpm did not draw for this request, rather than overwrite it.
 */
function finishedSamples(k: SampleKeep, shape: number[]): Float32Array | null {
  if (!existsSync(k.file)) return null;
  const meta = `${k.file}.request.json`;
  let key: unknown;
  try {
    key = existsSync(meta) ? readJson(meta).key : undefined;
  } catch {
    key = undefined;
  }
  if (key !== k.key)
    throw new Error(
      `--samples ${k.file}: the file exists and was not drawn for this ` +
        `request${key === undefined ? '' : ' (another model, sampler, seed or count)'}; choose another file, or ` +
        `remove it to draw again`,
    );
  const { shape: s, data } = parseNpy(new Uint8Array(readFileSync(k.file)), k.file);
  if (s.join(',') !== shape.join(',') || !data.every(Number.isFinite))
    throw new Error(
      `--samples ${k.file}: holds (${s.join(', ')}), not the ${shape.join('x')} finite samples of this request; ` +
        `remove it to draw again`,
    );
  return data;
}

// While a run draws, FILE.partial holds the finished batches' float32 values and FILE.partial.json the request and
// how many images are done (written after the values, so a kill between the two loses at most one batch). Kept
// values of another request (or unreadable ones) are removed before the run appends its own.
function resumeSamples(
  k: SampleKeep,
  all: Float32Array,
  size: number,
  batch: number,
  log: (m: string) => void,
): number {
  const meta = `${k.file}.partial.json`,
    raw = `${k.file}.partial`;
  const discard = () => {
    rmSync(raw, { force: true });
    rmSync(meta, { force: true });
    return 0;
  };
  if (!existsSync(meta) || !existsSync(raw)) return discard();
  let m: Record<string, unknown>;
  try {
    m = readJson(meta);
  } catch (e) {
    log(`warning: ${(e as Error).message}; the kept samples are discarded and drawn again`);
    return discard();
  }
  if (m.key !== k.key) {
    log(
      `warning: ${k.file}: the kept samples were drawn for another request (${String(m.key)}); they are discarded ` +
        `and drawn again`,
    );
    return discard();
  }
  const said = Number(m.done);
  if (!Number.isSafeInteger(said) || said < 0) {
    log(`warning: ${meta}: "done" is ${JSON.stringify(m.done)}, not a count; the kept samples are discarded`);
    return discard();
  }
  const done = Math.min(said, Math.floor(statSync(raw).size / 4 / size), all.length / size);
  // batch boundaries: sample i's noise does not depend on them, but keep them aligned
  const start = Math.floor(done / batch) * batch;
  const bytes = readFileSync(raw);
  const kept = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + start * size * 4));
  if (!kept.every(Number.isFinite)) {
    log(`warning: ${raw}: the kept samples hold non-finite values; they are discarded and drawn again`);
    return discard();
  }
  all.set(kept);
  truncateSync(raw, start * size * 4);
  if (start) log(`${k.file}: resuming after ${start} kept samples`);
  return start;
}

function keepBatch(k: SampleKeep, x: Float32Array, done: number): void {
  appendFileSync(`${k.file}.partial`, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  writeFileAtomic(`${k.file}.partial.json`, JSON.stringify({ key: k.key, done }));
}

function finishSamples(k: SampleKeep, all: Float32Array, shape: number[]): void {
  writeFileAtomic(k.file, serializeNpy(all, shape));
  writeFileAtomic(`${k.file}.request.json`, JSON.stringify({ key: k.key }));
  rmSync(`${k.file}.partial`, { force: true });
  rmSync(`${k.file}.partial.json`, { force: true });
}
