// Labels from an image folder with one subfolder per class, as torchvision's ImageFolder reads it: class k is the
// k-th subfolder name in sorted order, files found recursively in sorted order; and a class-conditional model trains
// on it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset, loadImageFolder } from '../src/data/load.js';
import { writePng } from '../src/io/png.js';
import { ROOT } from './helpers.js';

/** A folder of class folders (names out of order on purpose), each PNG a flat gray of value v. */
function makeFolder(classes: Record<string, number[]>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-imagefolder-'));
  for (const [name, values] of Object.entries(classes)) {
    mkdirSync(join(dir, name, 'sub'), { recursive: true });
    values.forEach((v, i) => {
      const data = new Uint8Array(8 * 8 * 4).map((_, k) => (k % 4 === 3 ? 255 : v));
      // the last file of each class in a nested folder: found recursively
      const at = i === values.length - 1 ? join(dir, name, 'sub', `z${i}.png`) : join(dir, name, `${i}.png`);
      writePng(at, { width: 8, height: 8, data });
    });
  }
  return dir;
}

describe('image folders with class subfolders', () => {
  it('labels follow the sorted subfolder names, files in sorted order, recursively', () => {
    const dir = makeFolder({ zebra: [200, 210], cat: [10, 20, 30], dog: [100] });
    try {
      const ds = loadImageFolder(dir, 8, 1);
      assert.deepEqual(ds.classNames, ['cat', 'dog', 'zebra']);
      assert.deepEqual(Array.from(ds.labels!), [0, 0, 0, 1, 2, 2]);
      assert.deepEqual(
        Array.from({ length: ds.count }, (_, i) => ds.pixels[i * 64]),
        [10, 20, 30, 100, 200, 210],
      );
      assert.ok(ds.files![2].endsWith(join('cat', 'sub', 'z2.png')));
      // through loadDataset (with the held-out split: every 10th image is test, so all 6 are train)
      const train = loadDataset(dir, 'train', { size: 8, channels: 1 });
      assert.deepEqual(Array.from(train.labels!), [0, 0, 0, 1, 2, 2]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a class folder without images is refused by name', () => {
    const dir = makeFolder({ cat: [10] });
    mkdirSync(join(dir, 'empty'));
    try {
      assert.throws(() => loadImageFolder(dir, 8, 1), /empty: a class folder with no \.png files \(class 1, "empty"\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ddpm train --classes learns from the subfolders (tiny preset, 2 steps)', () => {
    const dir = makeFolder({ a: [10, 20, 30, 40], b: [200, 210, 220, 230] });
    const out = join(dir, '..', `${dir.split('/').pop()}-run`);
    try {
      const cli = join(ROOT, 'dist', 'src', 'cli', 'main.js');
      const args = ['--backend', 'reference', 'train', '--data', dir, '--out', out, '--preset', 'tiny'];
      const r = spawnSync(
        process.execPath,
        [cli, ...args, '--classes', '2', '--cond-drop', '0.1', '--steps', '2', '--batch', '4', '--warmup', '1'],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      assert.equal(config.num_class_embeds, 3);
      assert.equal(config.ddpm_null_class, 2);
      // more classes in the folder than the model has is refused
      const bad = spawnSync(
        process.execPath,
        [cli, ...args.slice(0, 5), '--out', `${out}-2`, '--preset', 'tiny', '--classes', '1', '--steps', '1'],
        {
          encoding: 'utf8',
        },
      );
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /label|class/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(out, { recursive: true, force: true });
      rmSync(`${out}-2`, { recursive: true, force: true });
    }
  });
});
