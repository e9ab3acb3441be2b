// The image sets the quality metrics compare: a dataset, a PNG folder, a .npy of images, or a model folder (sampled
// here, resumably), brought to the feature network's channels; and the feature networks themselves (a shipped small
// network or Inception-v3). What `ddpm eval quality` assembles, for library users too. Node-only (files).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GaussianDiffusion } from '../diffusion/gaussian.js';
import { defaultClip, type SamplerName, samplerPlan } from '../diffusion/samplers.js';
import type { Spacing } from '../diffusion/samplers.js';
import type { Precision } from '../engine/ops.js';
import type { UNetConfig } from '../model/unet.js';
import { type ImageDataset, firstImagesWarning, makeBatch, subsetIndices } from '../data/dataset.js';
import { DATASET_NAMES, loadDataset, type Split } from '../data/load.js';
import { checkImageValues } from '../data/images.js';
import { WEIGHTS_FILE, loadModel } from '../io/checkpoint.js';
import { FEATURE_NETS, MODELS_DIR, featureNetPath, modelPath } from '../io/models.js';
import { parseNpy } from '../io/npy.js';
import { parseSafetensors } from '../io/safetensors.js';
import { DIGITNET_FEATURES, DigitNet } from './digitnet.js';
import { INCEPTION_FEATURES, InceptionV3 } from './inception.js';
import { drawSamples } from './sample-run.js';
import { classCount, classDenoiser, labelsFor } from '../diffusion/guidance.js';

/** Progress of a long step: called with the work done so far (the label names it, total is all of it). */
export type ProgressFactory = (label: string, total: number) => (done: number) => void;

export interface ImageSetContext {
  /** one-line warnings and notices (dropped alpha, a class-ordered subset, kept samples discarded) */
  warn: (msg: string) => void;
  progress?: ProgressFactory;
  /** the diffusion model's convolutions when a model folder is sampled */
  precision?: Precision;
  /** refuses a sampling batch that would not fit (see samplingMemoryBytes) */
  checkBatch?: (cfg: UNetConfig, batch: number, what: string) => void;
}

/**
 * A feature network for the quality metrics: a small shipped one (fixed image shape) or Inception-v3 (any size, 3
 * channels).
 */
export interface Extractor {
  label: string;
  dim: number;
  channels: number;
  /** the image size it takes; null: any H x W */
  size: number | null;
  embed(
    images: Float32Array,
    n: number,
    hw: [number, number],
  ): Promise<{ features: Float32Array; probs: Float32Array | null }>;
}

/** A shipped small feature network by name (mnist, fashion, cifar10) or a safetensors file. */
export function loadFeatureNet(spec: string): DigitNet {
  const file = featureNetPath(spec);
  const { tensors, metadata } = parseSafetensors(new Uint8Array(readFileSync(file)), file);
  return new DigitNet(tensors, file, metadata);
}

/** Inception-v3 from pytorch-fid's weights as safetensors (inception) or the small network `net`. */
export function extractor(o: { inception?: string; net: string }, ctx: ImageSetContext): Extractor {
  if (o.inception) {
    const file = o.inception;
    if (!existsSync(file))
      throw new Error(
        `--inception ${file}: file not found (pytorch-fid's weights as safetensors, see docs/metrics.md)`,
      );
    const net = new InceptionV3(parseSafetensors(new Uint8Array(readFileSync(file)), file).tensors, file);
    return {
      label: `Inception-v3 (pytorch-fid's FID network, ${file}; images resized to 299 bilinearly)`,
      dim: INCEPTION_FEATURES,
      channels: 3,
      size: null,
      embed: (images, n, hw) => net.embed(images, n, hw, 16, 299, ctx.progress?.('inception features', n)),
    };
  }
  const net = loadFeatureNet(o.net);
  return {
    label:
      `feature network "${o.net}" (${net.channels}x${net.size}x${net.size} images, ${DIGITNET_FEATURES}-d ` +
      `features; FD is FID's formula on these features, not on Inception-v3's)`,
    dim: DIGITNET_FEATURES,
    channels: net.channels,
    size: net.size,
    embed: (images, n) => net.embed(images, n),
  };
}

/** Gray images become RGB for Inception (as pytorch-fid's loader converts them). */
export function toChannels(x: Float32Array, n: number, c: number, hw: number, want: number): Float32Array {
  if (c === want) return x;
  if (c !== 1 || want !== 3) throw new Error(`images have ${c} channels; the feature network needs ${want}`);
  const out = new Float32Array(n * 3 * hw);
  for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) out.set(x.subarray(i * hw, (i + 1) * hw), (i * 3 + k) * hw);
  return out;
}

/**
 * The n images of a dataset an evaluation uses: evenly spread over it with `spread`, else the first n (with a warning
 * when those miss classes); `which` names the choice ('' when n is the whole set).
 */
export function evalSubset(
  ds: ImageDataset,
  n: number,
  spread: boolean,
  what: string,
  warn: (m: string) => void,
): { indices: Int32Array; which: string } {
  if (!spread) {
    const w = firstImagesWarning(ds, n, '--spread');
    if (w) warn(what ? `${what}: ${w}` : w);
  }
  const which = n < ds.count ? (spread ? `${n} spread over ${ds.count}` : `the first ${n} of ${ds.count}`) : '';
  return { indices: subsetIndices(ds.count, n, spread), which };
}

export interface ImageSetRequest {
  /** a dataset spec, a PNG folder, a .npy [N, C, H, W] on [-1, 1], or a model folder / shipped model name */
  spec: string;
  /** images to use (a model: samples to draw, default 1000; a set: default all) */
  num?: number;
  split: Split;
  spread?: boolean;
  /** model folders: how to sample */
  sampler?: SamplerName;
  steps?: string;
  timestepSpacing?: Spacing;
  eta?: number;
  clip?: boolean;
  batch?: number;
  seed?: number;
  /** model folders: keep the drawn samples in this .npy (a killed run resumes) */
  samples?: string;
  /** class-conditional model folders: the classes in turn ("7", "0,1,2"; default all) and the guidance scale */
  class?: string;
  guidance?: number;
}

export interface ImageSet {
  images: Float32Array;
  n: number;
  hw: [number, number];
  name: string;
  /** the class each image was drawn for (samples of a class-conditional model) */
  labels?: Int32Array;
}

/** Whether spec is a model folder (or a shipped model's name) rather than a dataset or image files. */
export function isModelSpec(spec: string): boolean {
  return (
    existsSync(join(spec, 'config.json')) ||
    (!existsSync(spec) && !DATASET_NAMES.includes(spec) && existsSync(join(MODELS_DIR, spec, 'config.json')))
  );
}

/** Images on [-1, 1] in the extractor's channels; `what` names the set in messages (--images, --ref). */
export async function imageSet(
  r: ImageSetRequest,
  what: string,
  ex: Extractor,
  ctx: ImageSetContext,
): Promise<ImageSet> {
  const spec = r.spec;
  const fits = (c: number, h: number, w: number) => {
    if (ex.size !== null && (h !== ex.size || w !== ex.size || c !== ex.channels))
      throw new Error(
        `${what} ${spec}: images are ${c}x${h}x${w}; the ${ex.channels === 1 ? 'digit network' : 'feature network'} ` +
          `needs ${ex.channels}x${ex.size}x${ex.size} ` +
          `(--net ${Object.keys(FEATURE_NETS).join(' / ')}, or --inception for other images)`,
      );
  };
  if (spec.endsWith('.npy')) {
    const { shape, data } = parseNpy(new Uint8Array(readFileSync(spec)), spec);
    if (shape.length !== 4)
      throw new Error(`${spec}: expected [N, C, H, W] images on [-1, 1], got shape (${shape.join(', ')})`);
    fits(shape[1], shape[2], shape[3]);
    const n = Math.min(shape[0], r.num ?? shape[0]),
      hw = shape[2] * shape[3];
    checkImageValues(data.subarray(0, n * shape[1] * hw), n, `${what} ${spec}`);
    return {
      images: toChannels(data.subarray(0, n * shape[1] * hw), n, shape[1], hw, ex.channels),
      n,
      hw: [shape[2], shape[3]],
      name: spec,
    };
  }
  if (isModelSpec(spec)) {
    const dir = modelPath(spec);
    const { model, folder } = loadModel(dir);
    model.precision = ctx.precision ?? 'f32';
    for (const w of folder.warnings) ctx.warn(w);
    const diffusion = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
    const C = folder.unetConfig.in_channels,
      S = folder.unetConfig.sample_size;
    fits(C, S, S);
    const n = r.num ?? 1000,
      batch = r.batch ?? 64,
      sampler = r.sampler ?? 'ancestral',
      seed = r.seed ?? 0;
    ctx.checkBatch?.(folder.unetConfig, Math.min(batch, n), `${what} ${spec}: sampling`);
    const { plan } = samplerPlan(diffusion, { sampler, steps: r.steps, timestepSpacing: r.timestepSpacing });
    const sopts = {
      sampler,
      steps: r.steps,
      timestepSpacing: r.timestepSpacing,
      seed,
      eta: r.eta,
      clip: r.clip ?? defaultClip(sampler, diffusion),
    };
    // the request: the model folder and its weights (size and time, so that new weights in the same folder do not
    // resume the old ones' samples), the precision, the sampler's options, the count
    const wf = [join(dir, WEIGHTS_FILE), join(dir, 'unet', WEIGHTS_FILE)].find((f) => existsSync(f));
    const w = wf ? statSync(wf) : { size: 0, mtimeMs: 0 };
    const weights = { bytes: w.size, mtime: w.mtimeMs };
    const cfg = folder.unetConfig,
      guidance = r.guidance ?? 1;
    const denoiser = classDenoiser(model, cfg, r.class, guidance, n);
    const classes = classCount(cfg);
    const labels = denoiser
      ? labelsFor(r.class ?? Array.from({ length: classes }, (_, k) => k).join(','), n, 0, classes)
      : undefined;
    const cond = denoiser ? { class: r.class ?? 'all', guidance } : {};
    const request = { model: resolve(dir), weights, precision: ctx.precision ?? 'f32', n, ...sopts, ...cond };
    const keep = r.samples ? { file: r.samples, key: JSON.stringify(request) } : undefined;
    let barFn: ((d: number) => void) | undefined;
    const progress = ctx.progress;
    const bar = progress
      ? (done: number, total: number) => {
          barFn ??= progress(`sample ${sampler} ${plan.length} steps`, total);
          barFn(done);
        }
      : undefined;
    const images = await drawSamples(model, diffusion, [n, C, S, S], batch, sopts, {
      what: `${what} samples`,
      keep,
      denoiser,
      onProgress: bar,
      log: ctx.warn,
    });
    return {
      images: toChannels(images, n, C, S * S, ex.channels),
      n,
      hw: [S, S],
      name:
        `${n} samples of ${spec} (${sampler}, ${plan.length} steps, seed ` +
        `${seed}${denoiser ? `, guidance ${guidance}` : ''})`,
      labels,
    };
  }
  const ds = loadDataset(spec, r.split, { size: ex.size ?? 299, channels: ex.channels as 1 | 3 });
  for (const w of ds.warnings ?? []) ctx.warn(w);
  fits(ds.channels, ds.height, ds.width);
  const n = Math.min(ds.count, r.num ?? ds.count);
  const { indices, which } = evalSubset(ds, n, !!r.spread, what, ctx.warn);
  const x = await makeBatch(ds, indices).data();
  return {
    images: toChannels(x, n, ds.channels, ds.height * ds.width, ex.channels),
    n,
    hw: [ds.height, ds.width],
    name: `${ds.name} (${which || n} images)`,
  };
}
