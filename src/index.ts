// The ddpm library API (Node entry point). The core modules (engine, diffusion, model, reference backend) import
// nothing Node-specific; this entry adds the native backend, files, data and training.
export * from './engine/tensor.js';
export * as ops from './engine/ops.js';
export * from './engine/random.js';
export * from './engine/streams.js';
export * from './engine/optim.js';
export type { Backend, Storage, ConvParams } from './engine/backend.js';
export { ReferenceBackend } from './backends/reference/index.js';
export { NativeBackend, loadAddon } from './backends/native/index.js';
export { useBackend, createBackend } from './backends/select.js';
export * from './diffusion/schedule.js';
export * from './diffusion/gaussian.js';
export * from './diffusion/samplers.js';
export * from './diffusion/interpolate.js';
export * from './model/unet.js';
export * from './data/dataset.js';
export * from './data/load.js';
export { downloadDataset, REMOTE_DATASETS } from './data/download.js';
export * from './io/safetensors.js';
export * from './io/checkpoint.js';
export * from './io/npy.js';
export { imageGrid, writePng, writeImages, linePlot } from './io/png.js';
export * from './training/train.js';
export * from './eval/bpd.js';
export * from './eval/metrics.js';
export * from './eval/digitnet.js';
export { runReport } from './eval/report.js';
export { parseNpz, serializeNpz } from './io/npz.js';
