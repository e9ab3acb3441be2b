// The ddpm library API for browsers (and any JavaScript runtime without Node): the engine, the reference backend,
// the paper's math and samplers, the U-Net, pure file formats (safetensors, .npy), dataset batches, bits/dim and the
// sample-quality metrics. Nothing here imports from Node; package.json maps the "browser" condition to this file.
import { setBackend } from './engine/tensor.js';
import { ReferenceBackend } from './backends/reference/index.js';

export * from './engine/tensor.js';
export * as ops from './engine/ops.js';
export * from './engine/random.js';
export * from './engine/streams.js';
export * from './engine/optim.js';
export type { Backend, Storage, ConvParams } from './engine/backend.js';
export { ReferenceBackend } from './backends/reference/index.js';
export * from './diffusion/schedule.js';
export * from './diffusion/gaussian.js';
export * from './diffusion/samplers.js';
export * from './diffusion/interpolate.js';
export * from './model/unet.js';
export * from './data/dataset.js';
export * from './io/safetensors.js';
export * from './io/npy.js';
export * from './eval/bpd.js';
export * from './eval/metrics.js';
export * from './eval/digitnet.js';
export * from './eval/inception.js';

/** Installs the plain-TypeScript backend (the one that runs everywhere); returns it. */
export function useReferenceBackend(): ReferenceBackend {
  const b = new ReferenceBackend();
  setBackend(b);
  return b;
}
