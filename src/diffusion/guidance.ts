// Sampling a class-conditional model: the labels of a batch bound into the model function every sampler calls, and
// classifier-free guidance (Ho & Salimans 2022): eps = eps_null + w (eps_class - eps_null), both halves in one
// batched network call; w = 1 is the plain conditional model, w = 0 the unconditional one (the null class).
import * as ops from '../engine/ops.js';
import type { Tensor } from '../engine/tensor.js';
import type { DenoiseFn, Timesteps } from './gaussian.js';
import { type UNet, type UNetConfig, isClassConditional } from '../model/unet.js';

/** A class-conditional network: x, timesteps and one label per sample. */
export type ConditionalFn = (x: Tensor, t: Timesteps, labels: Int32Array) => Tensor;

/** Stacks two [B, ...] tensors into [2B, ...] (batch-major memory: channel-axis concat of [1, B*C, H, W] views). */
function stack(a: Tensor, b: Tensor): Tensor {
  const [B, C, H, W] = a.shape;
  const flat = (x: Tensor) => ops.reshape(x, [1, B * C, H, W]);
  return ops.reshape(ops.concat([flat(a), flat(b)]), [2 * B, C, H, W]);
}

/** The two halves of a [2B, ...] tensor. */
function halves(y: Tensor): [Tensor, Tensor] {
  const [B2, C, H, W] = y.shape,
    B = B2 / 2;
  const flat = ops.reshape(y, [1, B2 * C, H, W]);
  const half = (k: number) => ops.reshape(ops.sliceChannels(flat, k * B * C, B * C), [B, C, H, W]);
  return [half(0), half(1)];
}

/**
 * The model function of a batch with these labels, guided with scale w towards them and away from the null class.
 * With learned variances (2C output channels) the guidance applies to the eps half; the variance half is the
 * conditional one's (as GLIDE and diffusers do).
 */
export function classGuided(model: ConditionalFn, labels: Int32Array, w: number, nullClass: number | null): DenoiseFn {
  if (w === 1) return (x, t) => model(x, t, labels);
  if (nullClass === null)
    throw new Error(`guidance ${w}: the model has no null class (train it with --cond-drop for guidance)`);
  // w = 0 is the null class alone: one half is enough
  if (w === 0) return (x, t) => model(x, t, new Int32Array(labels.length).fill(nullClass));
  const both = Int32Array.from({ length: 2 * labels.length }, (_, i) => (i < labels.length ? labels[i] : nullClass));
  return (x, t) => {
    const tt = t instanceof Float32Array ? Float32Array.from([...t, ...t]) : Int32Array.from([...t, ...t]);
    const [cond, uncond] = halves(model(stack(x, x), tt, both));
    const C = x.shape[1];
    const eps = (y: Tensor) => (y.shape[1] === C ? y : ops.sliceChannels(y, 0, C));
    const guided = ops.add(eps(uncond), ops.mul(ops.sub(eps(cond), eps(uncond)), w));
    return cond.shape[1] === C ? guided : ops.concat([guided, ops.sliceChannels(cond, C, cond.shape[1] - C)]);
  };
}

/** Parses a --class list ("7", "0,1,2") into one label per sample, the list in turn; checks it against the classes. */
export function labelsFor(spec: string, n: number, start: number, classes: number): Int32Array {
  const list = spec.split(',').map((s) => Number(s.trim()));
  for (const [i, y] of list.entries())
    if (!Number.isInteger(y) || y < 0 || y >= classes)
      throw new Error(`--class: "${spec.split(',')[i].trim()}" is not a class of this model (0..${classes - 1})`);
  return Int32Array.from({ length: n }, (_, i) => list[(start + i) % list.length]);
}

/**
 * The model function of each batch for a class-conditional model (labels from --class in turn, guided with
 * --guidance); undefined for an unconditional one, which refuses --class and --guidance.
 */
export function classDenoiser(
  model: UNet,
  cfg: UNetConfig,
  spec: string | undefined,
  w: number,
  n: number,
): ((start: number, B: number) => DenoiseFn) | undefined {
  if (!isClassConditional(cfg)) {
    if (spec !== undefined || w !== 1)
      throw new Error('--class / --guidance: this model is not class-conditional (its config has no num_class_embeds)');
    return undefined;
  }
  if (cfg.class_embed_type === 'identity')
    throw new Error('sample: class_embed_type "identity" takes embeddings, ' + 'not classes');
  const classes = cfg.ddpm_null_class ?? cfg.num_class_embeds!;
  const list = spec ?? Array.from({ length: classes }, (_, k) => k).join(',');
  labelsFor(list, n, 0, classes); // checks the list before any work
  const f = (x: Tensor, t: Timesteps, labels: Int32Array) => model.forward(x, t, { classLabels: labels });
  return (start: number, B: number) =>
    classGuided(f, labelsFor(list, B, start, classes), w, cfg.ddpm_null_class ?? null);
}

/** The classes of a class-conditional model (the null class left out). */
export const classCount = (cfg: UNetConfig): number => cfg.ddpm_null_class ?? cfg.num_class_embeds ?? 0;
