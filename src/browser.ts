// The ddpm library API for browsers (and any JavaScript runtime without Node): the engine, the reference and WebGPU
// backends, the paper's math and samplers, the U-Net, pure file formats (safetensors, .npy, diffusers folders),
// dataset batches, bits/dim and the sample-quality metrics. Nothing here imports from Node; package.json maps the
// "browser" condition to this file.
import type { Backend } from './engine/backend.js';
import { setBackend } from './engine/tensor.js';
import { ReferenceBackend } from './backends/reference/index.js';
import { type WebGPUBackend, createWebGPUBackend } from './backends/webgpu/index.js';
import { WasmBackend } from './backends/wasm/index.js';

export * from './engine/tensor.js';
export * as ops from './engine/ops.js';
export * from './engine/random.js';
export * from './engine/streams.js';
export * from './engine/optim.js';
export type { Backend, Storage, ConvParams } from './engine/backend.js';
export { ReferenceBackend } from './backends/reference/index.js';
export { WebGPUBackend, createWebGPUBackend } from './backends/webgpu/index.js';
export { WasmBackend } from './backends/wasm/index.js';
export * from './diffusion/schedule.js';
export * from './diffusion/gaussian.js';
export * from './diffusion/samplers.js';
export * from './diffusion/interpolate.js';
// data/dataset.ts has a classCount of its own (of a dataset): the model's is modelClassCount here
export {
  type ConditionalFn,
  classGuided,
  labelsFor,
  classDenoiser,
  classCount as modelClassCount,
} from './diffusion/guidance.js';
export * from './diffusion/repaint.js';
export * from './diffusion/sdedit.js';
export * from './model/unet.js';
export * from './data/dataset.js';
export * from './training/core.js';
export * from './training/options.js';
export * from './io/safetensors.js';
export * from './io/npy.js';
export * from './io/diffusers.js';
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

/**
 * Installs the WebGPU backend on navigator.gpu (or the GPU object given); returns it. Throws where WebGPU is missing.
 */
export async function useWebGPUBackend(gpu?: GPU): Promise<WebGPUBackend> {
  const g = gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!g) throw new Error('webgpu: this browser has no WebGPU (navigator.gpu is undefined)');
  const b = await createWebGPUBackend(g);
  setBackend(b);
  return b;
}

/** Installs the wasm backend (SIMD GEMMs for products and convolutions, plain loops for the rest); returns it. */
export function useWasmBackend(): WasmBackend {
  const b = new WasmBackend();
  setBackend(b);
  return b;
}

/**
 * The fastest backend this page can have: WebGPU on a GPU, else wasm (a software WebGPU adapter, SwiftShader, is
 * slower than wasm on the same CPU), else the reference backend. `prefer` names one to take first when it works
 * (webgpu, wasm, reference). Returns the backend and why faster ones were passed over.
 */
export async function useBestBackend(
  prefer?: 'webgpu' | 'wasm' | 'reference',
): Promise<{ backend: Backend; notes: string[] }> {
  const notes: string[] = [];
  if (prefer === 'reference') return { backend: useReferenceBackend(), notes };
  if (prefer !== 'wasm') {
    try {
      const b = await useWebGPUBackend();
      if (!b.isFallbackAdapter || prefer === 'webgpu') return { backend: b, notes };
      notes.push(`webgpu: the adapter is a software one (${b.adapterInfo || 'fallback'}), slower than wasm`);
    } catch (e) {
      notes.push((e as Error).message);
    }
  }
  try {
    return { backend: useWasmBackend(), notes };
  } catch (e) {
    notes.push(`wasm: ${(e as Error).message}`);
  }
  return { backend: useReferenceBackend(), notes };
}
