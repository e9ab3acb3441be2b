// The ddpm library API (Node entry point): everything of the browser entry (engine, reference backend, the paper's
// math, samplers, U-Net, pure formats, metrics), plus the native backend, files, data loaders, training and reports.
export * from './browser.js';
export { NativeBackend, loadAddon } from './backends/native/index.js';
export { useBackend, createBackend } from './backends/select.js';
export * from './data/load.js';
export { downloadDataset, REMOTE_DATASETS } from './data/download.js';
export * from './io/checkpoint.js';
export { imageGrid, writePng, writeImages, linePlot } from './io/png.js';
export * from './training/train.js';
export { runReport } from './eval/report.js';
export { parseNpz, serializeNpz } from './io/npz.js';
