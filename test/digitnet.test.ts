// The digit feature network: the engine's forward pass equals the PyTorch network that trained it (features and
// logits of test images, written by scripts/train_digitnet.py), on both backends; the CLI's quality command.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { DigitNet } from '../src/eval/digitnet.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { serializeNpy } from '../src/io/npy.js';
import { parseNpz } from '../src/io/npz.js';
import { NATIVE_SKIP, ROOT, assertClose, native, reference, withBackend, writeTinyIdx } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

// the accuracy each network reached on its held-out test set (CIFAR-10's from 10,000 training images of 32x32 RGB)
const ACCURACY: Record<string, number> = { mnist: 0.97, fashion: 0.85, cifar10: 0.55 };
for (const name of ['mnist', 'fashion', 'cifar10'])
  describe(`small feature network (${name})`, () => {
    const file = join(ROOT, 'models', `digitnet-${name}.safetensors`);
    const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', `digitnet-${name}.json`), 'utf8'));
    for (const be of [reference, ...(native ? [native] : [])])
      it(`features and logits equal PyTorch's within 1e-4 (${be.name})`, () =>
        withBackend(be, () => {
          const { tensors, metadata } = parseSafetensors(new Uint8Array(readFileSync(file)), file);
          const net = new DigitNet(tensors, file, metadata);
          const { features, logits } = net.forward(
            ops.fromArray(Float32Array.from(G.x), [4, net.channels, net.size, net.size]),
          );
          assertClose(features.dataSync(), G.features, 1e-4, 1e-4, 'features');
          assertClose(logits.dataSync(), G.logits, 1e-4, 1e-4, 'logits');
        }));
    it('classifies the held-out test set well (accuracy recorded at training)', () =>
      assert.ok(G.accuracy > ACCURACY[name], `test accuracy ${G.accuracy}`));
  });

describe('ddpm eval quality', () => {
  it('judges a .npy set against a dataset, writes statistics as .npz, and reads them back as the reference', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-quality-'));
    const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'digitnet-mnist.json'), 'utf8'));
    // 40 images: the 4 golden test digits, slightly perturbed
    const x = new Float32Array(40 * 784);
    for (let i = 0; i < 40; i++)
      for (let j = 0; j < 784; j++)
        x[i * 784 + j] = Math.max(-1, Math.min(1, G.x[(i % 4) * 784 + j] + 0.05 * Math.sin(i * 7 + j)));
    writeFileSync(join(dir, 'x.npy'), serializeNpy(x, [40, 1, 28, 28]));
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        '--backend',
        'reference',
        'eval',
        'quality',
        '--images',
        join(dir, 'x.npy'),
        '--ref',
        join(dir, 'x.npy'),
        '--kid-subsets',
        '5',
        '--kid-size',
        '20',
        '--pr-num',
        '20',
        '--save-stats',
        join(dir, 's.npz'),
        '--out',
        join(dir, 'r.json'),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /FD +-?\d/);
    const res = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
    assert.ok(Math.abs(res.fd) < 1e-4, `a set against itself: FD ${res.fd}`);
    assert.equal(res.precisionRecall.precision, 1);
    const z = parseNpz(new Uint8Array(readFileSync(join(dir, 's.npz'))), 's.npz');
    assert.deepEqual(z.get('mu')!.shape, [128]);
    assert.deepEqual(z.get('sigma')!.shape, [128, 128]);
    const r2 = spawnSync(
      process.execPath,
      [CLI, '--backend', 'reference', 'eval', 'quality', '--images', join(dir, 'x.npy'), '--ref', join(dir, 's.npz')],
      { encoding: 'utf8' },
    );
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stdout, /statistics only/);
    const tiny = writeTinyIdx(dir);
    const bad = spawnSync(process.execPath, [CLI, 'eval', 'quality', '--images', tiny], { encoding: 'utf8' });
    assert.match(bad.stderr, /images are 1x8x8; the digit network needs 1x28x28/);
    assert.match(
      spawnSync(process.execPath, [CLI, 'eval', 'fid', '--images', tiny], { encoding: 'utf8' }).stderr,
      /eval fid: pass --inception FILE/,
    );
  });

  it('a dataset stored in class order: the first n images are warned about, --spread takes n spread over it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-spread-'));
    // a CIFAR-10 binary batch of 40 records sorted by label (4 classes of 10), as this machine's test batch is
    const bin = new Uint8Array(40 * 3073);
    for (let i = 0; i < 40; i++) {
      bin[i * 3073] = Math.floor(i / 10);
      for (let j = 1; j < 3073; j++) bin[i * 3073 + j] = (i * 37 + j * 11 + Math.floor(i / 10) * 60) % 256;
    }
    const f = join(dir, 'sorted_batch.bin');
    writeFileSync(f, bin);
    const run = (...extra: string[]) =>
      spawnSync(
        process.execPath,
        [
          CLI,
          '--backend',
          'reference',
          'eval',
          'quality',
          '--net',
          'cifar10',
          '--images',
          f,
          '-n',
          '8',
          '--ref',
          f,
          '--ref-num',
          '20',
          '--kid-subsets',
          '2',
          '--kid-size',
          '4',
          '--pr-num',
          '0',
          ...extra,
        ],
        { encoding: 'utf8' },
      );
    const first = run();
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /--images: .*its first 8 images hold 1 of its 4 classes/);
    assert.match(first.stderr, /--ref: .*its first 20 images hold 2 of its 4 classes/);
    assert.match(first.stdout, /the first 8 of 40 images/);
    const spread = run('--spread');
    assert.equal(spread.status, 0, spread.stderr);
    assert.doesNotMatch(spread.stderr, /classes/);
    assert.match(spread.stdout, /8 spread over 40 images/);
    assert.match(spread.stdout, /20 spread over 40 images/);
  });
});

describe('train --eval-every', { skip: NATIVE_SKIP }, () => {
  it('logs FD and KID of the EMA weights into metrics.jsonl, and the report shows them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-evalevery-'));
    const run = join(dir, 'run');
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'train',
        '--data',
        'embedded',
        '--out',
        run,
        '--preset',
        'mnist',
        '--steps',
        '2',
        '--batch',
        '2',
        '--eval-every',
        '2',
        '--eval-samples',
        '12',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /step 2: FD [\d.]+, KID/);
    const last = JSON.parse(readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').pop()!);
    assert.ok(
      last.quality.fd > 0 && Number.isFinite(last.quality.kid) && last.quality.samples === 12,
      JSON.stringify(last.quality),
    );
    const refused = spawnSync(
      process.execPath,
      [CLI, 'train', '--data', writeTinyIdx(dir), '--out', join(dir, 'x'), '--preset', 'tiny', '--eval-every', '2'],
      { encoding: 'utf8' },
    );
    assert.match(
      refused.stderr,
      /--eval-every: the feature network "mnist" takes 1x28x28 images; preset tiny makes 1x8x8/,
    );
  });
});

describe('eval quality --samples', { skip: NATIVE_SKIP }, () => {
  it(
    'keeps the drawn samples; a run killed mid-way resumes after its last finished batch and gives the same ' +
      'samples',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ddpm-keep-'));
      const model = join(dir, 'model');
      const t = spawnSync(
        process.execPath,
        [CLI, 'train', '--data', 'embedded', '--out', model, '--preset', 'mnist', '--steps', '1', '--batch', '2'],
        { encoding: 'utf8' },
      );
      assert.equal(t.status, 0, t.stderr);
      const args = (file: string) => [
        CLI,
        '--threads',
        '1',
        'eval',
        'quality',
        '--images',
        model,
        '-n',
        '8',
        '--batch',
        '2',
        '--sampler',
        'ddim',
        '--steps',
        '40',
        '--ref',
        'embedded',
        '--ref-num',
        '50',
        '--kid-subsets',
        '2',
        '--kid-size',
        '4',
        '--pr-num',
        '0',
        '--samples',
        file,
      ];
      const full = join(dir, 'full.npy');
      const a = spawnSync(process.execPath, args(full), { encoding: 'utf8' });
      assert.equal(a.status, 0, a.stderr);
      // a second run, killed once two batches are kept
      const part = join(dir, 'part.npy');
      const child = spawn(process.execPath, args(part), { stdio: 'ignore' });
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const meta = `${part}.partial.json`;
          if (existsSync(meta) && JSON.parse(readFileSync(meta, 'utf8')).done >= 4) {
            clearInterval(timer);
            child.kill('SIGKILL');
          }
        }, 5);
        child.on('exit', () => {
          clearInterval(timer);
          resolve();
        });
      });
      assert.ok(!existsSync(part), 'the killed run had not finished');
      const b = spawnSync(process.execPath, args(part), { encoding: 'utf8' });
      assert.equal(b.status, 0, b.stderr);
      assert.match(b.stderr, /resuming after [46] kept samples/);
      assert.ok(readFileSync(part).equals(readFileSync(full)), 'resumed samples differ from an uninterrupted run');
      assert.ok(!existsSync(`${part}.partial`) && !existsSync(`${part}.partial.json`), 'partial files removed');
    },
  );
});
