// A diffusers model folder as the playground reads it: on the page for its schedule and config, in the model worker
// for the network as well (worker.ts).
import * as lib from '../src/browser.js';

/** A model folder's files as read: config.json and scheduler_config.json parsed, the weights' bytes. */
export interface FolderFiles {
  config: Record<string, unknown>;
  scheduler?: Record<string, unknown>;
  weights: Uint8Array;
}

/** Parses a folder (the page for its schedule and config, the worker for the network too); names bad files. */
export function parseFolder(
  name: string,
  source: 'shipped' | 'files',
  files: FolderFiles,
  paths = { config: `${name}/config.json`, scheduler: `${name}/scheduler_config.json` },
) {
  const folder = lib.parseModelFolder(files, {
    dir: name,
    ...paths,
    weights: `${name}/diffusion_pytorch_model.safetensors`,
  });
  return {
    name,
    source,
    diffusion: new lib.GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas),
    cfg: folder.unetConfig,
    weights: folder.weights,
    warnings: folder.warnings,
  };
}
