// `ddpm data`: a dataset's count, size and pixel statistics, a preview grid; or an optional download.
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { makeBatch, pixelStats } from '../../data/dataset.js';
import { downloadDataset } from '../../data/download.js';
import type { Split } from '../../data/load.js';
import { imageGrid, writePng } from '../../io/png.js';
import { ensureWritableFile, loadDataset, split } from '../shared.js';

export interface DataOptions {
  data?: string;
  download?: string;
  cache?: string;
  baseUrl?: string;
  split: Split;
  preview?: string;
}

export function register(program: Command): void {
  program
    .command('data')
    .description('inspect a dataset (count, size, pixel statistics) and write a preview grid; or download one')
    .option('--data <spec>', 'dataset (as for train)')
    .option('--download <name>', 'download a public dataset (mnist) into the cache, checking sha256')
    .option('--cache <dir>', 'download cache folder (default ~/.cache/ddpm)')
    .option('--base-url <url>', 'download from this mirror instead')
    .option('--split <s>', 'train or test', split, 'train')
    .option('--preview <file>', 'write a PNG grid of the first 64 images')
    .action(dataCommand);
}

export async function dataCommand(o: DataOptions): Promise<void> {
  if (o.preview) ensureWritableFile(o.preview, '--preview');
  if (o.download) {
    const dir = await downloadDataset(o.download, {
      cacheDir: o.cache,
      baseUrl: o.baseUrl,
      log: (m) => console.error(m),
    });
    console.log(dir);
    if (!o.data) return;
  }
  if (!o.data) throw new Error('data: pass --data <spec> or --download <name>');
  const ds = loadDataset(o.data, o.split, { size: 32, channels: 3 });
  const s = pixelStats(ds);
  console.log(
    `${ds.name}: ${ds.count} images, ${ds.channels}x${ds.height}x${ds.width}, pixel mean ${s.mean.toFixed(5)}, std ` +
      `${s.std.toFixed(5)} (on [0, 1])`,
  );
  if (ds.files?.length) {
    const sizes = ds.files.map((f) => statSync(f).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const shown =
      ds.files.length <= 6
        ? ds.files.map((f, i) => `${f} (${sizes[i].toLocaleString()} bytes)`).join(', ')
        : `${ds.files.length} files`;
    console.log(`files: ${shown}; ${total.toLocaleString()} bytes on disk in all`);
  }
  if (o.preview) {
    const k = Math.min(64, ds.count);
    const x = makeBatch(
      ds,
      Int32Array.from({ length: k }, (_, i) => i),
    );
    writePng(o.preview, imageGrid(await x.data(), x.shape, 8));
    console.log(`wrote ${o.preview}`);
  }
}
