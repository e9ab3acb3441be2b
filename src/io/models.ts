// Where models are found: the folders shipped in models/ answer to their names (mnist, fashion, cifar10), as do the
// small feature networks of the quality metrics; anything else is a path. Node-only.
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** models/ of the package (dist/src/io -> the repository root). */
export const MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'models');

/** The names of the shipped models (folders of models/ with a config.json). */
export function shippedModels(): string[] {
  return existsSync(MODELS_DIR)
    ? readdirSync(MODELS_DIR)
        .filter((f) => existsSync(join(MODELS_DIR, f, 'config.json')))
        .sort()
    : [];
}

/** A model folder, or the name of a model shipped with ddpm (models/NAME). */
export function modelPath(spec: string): string {
  if (existsSync(spec) || /[/\\.]/.test(spec)) return spec;
  const shipped = join(MODELS_DIR, spec);
  if (existsSync(join(shipped, 'config.json'))) return shipped;
  const names = shippedModels();
  throw new Error(`${spec}: model folder not found${names.length ? ` (shipped models: ${names.join(', ')})` : ''}`);
}

/** Whether spec names a shipped model rather than a folder (a folder of that name in the working folder wins). */
export function isShippedName(spec: string): boolean {
  return !existsSync(spec) && !/[/\\.]/.test(spec) && existsSync(join(MODELS_DIR, spec, 'config.json'));
}

/**
 * A file-name-safe label of a --model argument, distinct for distinct models: a shipped model's name with "shipped-"
 * in front, else the folder's path (relative to the working folder when inside it) with separators as "_".
 */
export function modelLabel(spec: string): string {
  const path = resolve(modelPath(spec));
  if (dirname(path) === resolve(MODELS_DIR)) return `shipped-${basename(path)}`;
  const rel = relative(process.cwd(), path);
  const shown = rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
  return (
    shown
      .replace(/^[/\\]+/, '')
      .replace(/[/\\:]+/g, '_')
      .replace(/[^\w.+-]/g, '-') || 'model'
  );
}

/** The small feature networks shipped for the quality metrics, and the dataset each was trained on. */
export const FEATURE_NETS: Record<string, { file: string; data: string }> = {
  mnist: { file: 'digitnet-mnist.safetensors', data: '../shared/data/mnist' },
  fashion: { file: 'digitnet-fashion.safetensors', data: 'fashion-mnist' },
  cifar10: { file: 'digitnet-cifar10.safetensors', data: '../shared/data/cifar-10-batches-bin' },
};

/** The safetensors file of a feature network: a shipped one's name, or a path. */
export function featureNetPath(spec: string): string {
  const named = FEATURE_NETS[spec];
  const file = named ? join(MODELS_DIR, named.file) : spec;
  if (!existsSync(file))
    throw new Error(
      `--net ${spec}: ${file} not found (expected ${Object.keys(FEATURE_NETS).join(', ')}, or a safetensors file)`,
    );
  return file;
}
