// Every random stream of ddpm, in one registry. The counter-based generator draws word (lane, element/4, sample) of
// stream s under key seed; a stream id is a 53-bit integer laid out as
//
//     stream = purpose * 2^48 + index        (purpose < 32, index < 2^48)
//
// so two purposes can never meet on the same (key, counter) word, whatever the step, micro-batch or site. Purposes
// with two indices pack them into the 48-bit index with a fixed width for the inner one (checked, never wrapped).
import type { RandomKey } from './random.js';

/** The purpose codes. Never renumber one: that would change every run's random numbers. */
export const PURPOSE = {
  /** weight initialisation, index = parameter number */
  init: 1,
  /** training data order, index = epoch */
  dataOrder: 2,
  /** horizontal flips, index = micro-batch */
  flips: 3,
  /** training timesteps, index = micro-batch */
  timesteps: 4,
  /** training noise eps, index = micro-batch */
  trainNoise: 5,
  /** dropout masks, index = micro-batch * 2^12 + site */
  dropout: 6,
  /** x_T of a sampler, index 0 */
  samplerInit: 7,
  /** a sampler's noise, index = step * 2^10 + sub (sub 0: the step's own noise, 1..: Langevin/corrector steps) */
  samplerNoise: 8,
  /** bits/dim: the noise of x_t ~ q(x_t | x_0), index = t */
  bpdNoise: 9,
  /** interpolation: index 0 encodes, 1 + k is reverse step k */
  interpolate: 10,
  /** sample-quality metrics: KID's subsets, index = 2 * subset + set */
  metrics: 11,
  /** inpainting (RePaint): index = k * 2^10 + sub, k the position in the timestep list (sub 0: the step, 1..: undo) */
  inpaint: 12,
  /** classifier-free guidance training: which labels are dropped to the null class, index = micro-batch */
  condDrop: 13,
} as const;
export type Purpose = keyof typeof PURPOSE;

const INDEX_BITS = 2 ** 48;
const SITE_BITS = 2 ** 12;
const SUB_BITS = 2 ** 10;

function check(what: string, v: number, limit: number): number {
  if (!Number.isSafeInteger(v) || v < 0 || v >= limit)
    throw new Error(`random streams: ${what} ${v} is outside [0, ${limit})`);
  return v;
}

/** The stream id of (purpose, index). */
export function streamId(purpose: Purpose, index: number): number {
  return PURPOSE[purpose] * INDEX_BITS + check(`${purpose} index`, index, INDEX_BITS);
}

const key = (seed: number, purpose: Purpose, index: number): RandomKey => ({ seed, stream: streamId(purpose, index) });

export const streams = {
  init: (seed: number, param: number) => key(seed, 'init', param),
  dataOrder: (seed: number, epoch: number) => key(seed, 'dataOrder', epoch),
  flips: (seed: number, micro: number) => key(seed, 'flips', micro),
  timesteps: (seed: number, micro: number) => key(seed, 'timesteps', micro),
  trainNoise: (seed: number, micro: number) => key(seed, 'trainNoise', micro),
  dropout: (seed: number, micro: number, site: number) =>
    key(
      seed,
      'dropout',
      check('dropout micro-batch', micro, INDEX_BITS / SITE_BITS) * SITE_BITS + check('dropout site', site, SITE_BITS),
    ),
  samplerInit: (seed: number) => key(seed, 'samplerInit', 0),
  samplerNoise: (seed: number, step: number, sub = 0) =>
    key(
      seed,
      'samplerNoise',
      check('sampler step', step, INDEX_BITS / SUB_BITS) * SUB_BITS + check('sampler sub-step', sub, SUB_BITS),
    ),
  bpdNoise: (seed: number, t: number) => key(seed, 'bpdNoise', t),
  interpolate: (seed: number, index: number) => key(seed, 'interpolate', index),
  metrics: (seed: number, index: number) => key(seed, 'metrics', index),
  condDrop: (seed: number, micro: number) => key(seed, 'condDrop', micro),
  inpaint: (seed: number, k: number, sub = 0) =>
    key(
      seed,
      'inpaint',
      check('inpaint step', k, INDEX_BITS / SUB_BITS) * SUB_BITS + check('inpaint ' + 'sub-step', sub, SUB_BITS),
    ),
};
