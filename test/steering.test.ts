// Image-to-image (SDEdit) and the inpaint / edit commands: strength 0 gives the input back, strength 1 is sampling
// from the same seed, strength s runs the last floor(s x steps) steps; `ddpm inpaint` keeps the known pixels of its
// PNGs exactly and refuses bad masks; `ddpm edit` writes its images. On the tiny preset (reference backend), fast.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import * as ops from '../src/engine/ops.js';
import { type Tensor, noGrad } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION, type Timesteps } from '../src/diffusion/gaussian.js';
import { sampleAll } from '../src/diffusion/samplers.js';
import { sdedit, sdeditStart } from '../src/diffusion/sdedit.js';
import { PRESETS, UNet } from '../src/model/unet.js';
import { writeModelFolder } from '../src/io/checkpoint.js';
import { serializeNpy } from '../src/io/npy.js';
import { ROOT, hostWeights, maxAbsDiff, reference, withBackendAsync, writeTinyIdx } from './helpers.js';
import { classGuided, labelsFor } from '../src/diffusion/guidance.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, '--backend', 'reference', ...args], { encoding: 'utf8', timeout: 120_000 });

function run<R>(it: Generator<unknown, R>): R {
  let r = noGrad(() => it.next());
  while (!r.done) r = noGrad(() => it.next());
  return r.value;
}

function png(path: string, f: (x: number, y: number) => number): void {
  const img = new PNG({ width: 8, height: 8 });
  for (let p = 0; p < 64; p++) {
    const v = f(p % 8, Math.floor(p / 8));
    img.data.set([v, v, v, 255], 4 * p);
  }
  writeFileSync(path, PNG.sync.write(img));
}
const pixels = (path: string) => {
  const d = PNG.sync.read(readFileSync(path)).data;
  return Array.from({ length: d.length / 4 }, (_, p) => d[4 * p]);
};

describe('image-to-image (SDEdit)', () => {
  const model = new UNet(PRESETS.tiny()).init(2);
  const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
  const f = (x: Tensor, t: Timesteps) => model.forward(x, t);
  const x0 = ops.fromArray(
    Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i)),
    [2, 1, 8, 8],
  );
  const opts = { sampler: 'ddim' as const, steps: 10, seed: 4 };

  it('strength s runs the last floor(s x steps) steps of the plan', () => {
    assert.deepEqual(sdeditStart(10, 0), { first: 10, steps: 0 });
    assert.deepEqual(sdeditStart(10, 0.6), { first: 4, steps: 6 });
    assert.deepEqual(sdeditStart(10, 1), { first: 0, steps: 10 });
    assert.throws(() => sdeditStart(10, 1.5), /strength must be in \[0, 1\], got 1.5/);
  });

  it('strength 0 returns the input; strength 1 equals sampling from the same seed; between, it moves', async () =>
    withBackendAsync(reference, async () => {
      const input = await x0.data();
      assert.deepEqual(Array.from(await run(sdedit(d, f, x0, 0, opts)).data()), Array.from(input));
      const full = await run(sdedit(d, f, x0, 1, opts)).data();
      const plain = await noGrad(() => sampleAll(d, f, [2, 1, 8, 8], opts)).data();
      assert.deepEqual(Array.from(full), Array.from(plain));
      const half = await run(sdedit(d, f, x0, 0.5, opts)).data();
      const dist = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));
      assert.ok(dist(half, input) > 0 && dist(half, plain) > 0);
    }));
});

describe('ddpm inpaint and ddpm edit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-steer-'));
  const model = join(dir, 'model');
  writeModelFolder(
    model,
    PRESETS.tiny(),
    { ...PAPER_DIFFUSION, timesteps: 40, betaEnd: 0.5 },
    hostWeights(new UNet(PRESETS.tiny()).init(1)),
  );
  const imgs = join(dir, 'imgs');
  mkdirSync(imgs);
  png(join(imgs, 'a.png'), (x, y) => ((x + y) % 2 ? 255 : 0));
  png(join(imgs, 'b.png'), (x) => x * 30);
  const mask = join(dir, 'mask.png');
  png(mask, (_, y) => (y < 4 ? 255 : 0)); // keep the top half

  it('inpaint keeps the known pixels of every image exactly and fills the rest', () => {
    const out = join(dir, 'inpainted');
    const r = cli(
      'inpaint',
      '--model',
      model,
      '--image',
      imgs,
      '--mask',
      mask,
      '--out',
      out,
      '--steps',
      '8',
      '--jump-length',
      '2',
      '--jump-n-sample',
      '2',
      '--eta',
      '1',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /wrote 2 inpainted 8x8 PNGs .*RePaint: \d+ steps, jumps of 2 x 2/);
    for (const [k, name] of ['a.png', 'b.png'].entries()) {
      const want = pixels(join(imgs, name)),
        got = pixels(join(out, `inpainted-0000${k}.png`));
      assert.deepEqual(got.slice(0, 32), want.slice(0, 32), `${name}: known pixels`);
    }
    // a second run into the same folder is refused without --overwrite
    const again = cli('inpaint', '--model', model, '--image', imgs, '--mask', mask, '--out', out, '--steps', '4');
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /--out .*: holds \d+ files of an earlier run; pass --overwrite/);
  });

  it('inpaint refuses a mask count that does not fit and missing files, naming them', () => {
    const masks = join(dir, 'masks');
    mkdirSync(masks);
    for (const n of ['1.png', '2.png', '3.png']) png(join(masks, n), () => 255);
    const r = cli('inpaint', '--model', model, '--image', imgs, '--mask', masks, '--out', join(dir, 'x'));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--mask .*masks: 3 masks for 2 images/);
    const m = cli(
      'inpaint',
      '--model',
      model,
      '--image',
      join(dir, 'nope.png'),
      '--mask',
      mask,
      '--out',
      join(dir, 'y'),
    );
    assert.match(m.stderr, /--image .*nope\.png: not found/);
  });

  it('edit writes the edited images; strength 0 gives the inputs back', () => {
    const out = join(dir, 'edited');
    const r = cli('edit', '--model', model, '--image', imgs, '--strength', '0.5', '--steps', '6', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /SDEdit, strength 0.5: 3 of 6 ddim steps/);
    const zero = cli('edit', '--model', model, '--image', imgs, '--strength', '0', '--out', join(dir, 'zero'));
    assert.equal(zero.status, 0, zero.stderr);
    assert.deepEqual(pixels(join(dir, 'zero', 'edited-00001.png')), pixels(join(imgs, 'b.png')));
  });
});

describe('class conditioning and classifier-free guidance', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-cond-'));
  writeTinyIdx(dir, 16);
  const data = dir; // the folder: images and their labels file
  // the labels file beside the images: classes 0..3 in turn
  const labels = new Uint8Array(8 + 16);
  new DataView(labels.buffer).setUint32(0, 0x801);
  new DataView(labels.buffer).setUint32(4, 16);
  for (let i = 0; i < 16; i++) labels[8 + i] = i % 4;
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), labels);

  it('guidance 1 is the conditional model, 0 the null class; both halves run in one batched call', async () =>
    withBackendAsync(reference, async () => {
      const m = new UNet({ ...PRESETS.tiny(), num_class_embeds: 5, ddpm_null_class: 4 }).init(3);
      // give the class embedding values, so that the classes differ
      const w = m.params.get('class_embedding.weight')!;
      w.write(Float32Array.from({ length: w.size }, (_, i) => Math.sin(i)));
      const calls: number[] = [];
      const f = (x: Tensor, t: Timesteps, y: Int32Array) => {
        calls.push(x.shape[0]);
        return m.forward(x, t, { classLabels: y });
      };
      const x = ops.fromArray(
        Float32Array.from({ length: 2 * 64 }, (_, i) => Math.cos(i)),
        [2, 1, 8, 8],
      );
      const t = Int32Array.from([10, 60]),
        y = Int32Array.from([1, 2]);
      const cond = await noGrad(() => f(x, t, y)).data(),
        nul = await noGrad(() => f(x, t, Int32Array.from([4, 4]))).data();
      calls.length = 0;
      const one = await noGrad(() => classGuided(f, y, 1, 4)(x, t)).data();
      const zero = await noGrad(() => classGuided(f, y, 0, 4)(x, t)).data();
      const three = await noGrad(() => classGuided(f, y, 3, 4)(x, t)).data();
      assert.deepEqual(calls, [2, 2, 4], 'w = 1 and w = 0: one call of B (class or null); else one call of 2B');
      assert.ok(maxAbsDiff(one, cond) === 0);
      assert.ok(maxAbsDiff(zero, nul) === 0);
      const want = Float32Array.from(cond, (c, i) => nul[i] + 3 * (c - nul[i]));
      assert.ok(maxAbsDiff(three, want) < 1e-5);
      assert.throws(() => classGuided(f, y, 2, null), /no null class \(train it with --cond-drop/);
      assert.throws(() => labelsFor('1,9', 2, 0, 4), /--class: "9" is not a class of this model \(0\.\.3\)/);
    }));

  it('train --classes --cond-drop writes a conditional folder; sample --class --guidance draws from it', () => {
    const run = join(dir, 'run');
    const r = cli(
      'train',
      '--data',
      data,
      '--out',
      run,
      '--preset',
      'tiny',
      '--steps',
      '3',
      '--batch',
      '4',
      '--warmup',
      '0',
      '--classes',
      '4',
      '--cond-drop',
      '0.5',
    );
    assert.equal(r.status, 0, r.stderr);
    const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
    assert.equal(cfg.num_class_embeds, 5);
    assert.equal(cfg.ddpm_null_class, 4);
    const s = cli(
      'sample',
      '--model',
      run,
      '-n',
      '4',
      '--batch',
      '2',
      '--sampler',
      'ddim',
      '--steps',
      '3',
      '--class',
      '1,3',
      '--guidance',
      '2',
      '--out',
      join(dir, 's'),
    );
    assert.equal(s.status, 0, s.stderr);
    // the labels reach bits/dim (each image's own) and predict (--class)
    const bpd = cli('eval', 'bpd', '--model', run, '--data', data, '--split', 'train', '-n', '4', '--t-stride', '500');
    assert.equal(bpd.status, 0, bpd.stderr);
    assert.match(bpd.stdout, /bits\/dim\s+\d+\.\d+/);
    const x = join(dir, 'x.npy');
    writeFileSync(x, serializeNpy(new Float32Array(2 * 64), [2, 1, 8, 8]));
    const p = cli(
      'predict',
      '--model',
      run,
      '--input',
      x,
      '--t',
      '5',
      '--class',
      '1,2',
      '--output',
      join(dir, 'eps.npy'),
    );
    assert.equal(p.status, 0, p.stderr);
    const noClass = cli('predict', '--model', run, '--input', x, '--t', '5', '--output', join(dir, 'eps2.npy'));
    assert.match(noClass.stderr, /--class: this model is class-conditional; give the class of each sample/);
    // ... and interpolation: the images' shared label, or --class with guidance, or the null class
    for (const extra of [[], ['--class', '2', '--guidance', '2']]) {
      const out = join(dir, `interp${extra.length}.png`);
      const i = cli(
        'interpolate',
        '--model',
        run,
        '--data',
        data,
        '--split',
        'train',
        '--t',
        '3',
        '--count',
        '3',
        '--out',
        out,
        ...extra,
      );
      assert.equal(i.status, 0, i.stderr);
      assert.ok(existsSync(out));
    }
    // inpainting and SDEdit of a conditional model, guided to a class
    const img = join(dir, 'img.png'),
      m = join(dir, 'm.png');
    png(img, (xx) => xx * 30);
    png(m, (_, y) => (y < 4 ? 255 : 0));
    const inp = cli(
      'inpaint',
      '--model',
      run,
      '--image',
      img,
      '--mask',
      m,
      '--out',
      join(dir, 'inp'),
      '--steps',
      '4',
      '--class',
      '1',
      '--guidance',
      '2',
    );
    assert.equal(inp.status, 0, inp.stderr);
    assert.deepEqual(pixels(join(dir, 'inp', 'inpainted-00000.png')).slice(0, 32), pixels(img).slice(0, 32));
    const ed = cli(
      'edit',
      '--model',
      run,
      '--image',
      img,
      '--strength',
      '0.5',
      '--steps',
      '4',
      '--out',
      join(dir, 'ed'),
      '--class',
      '3',
    );
    assert.equal(ed.status, 0, ed.stderr);
    const badClass = cli(
      'interpolate',
      '--model',
      run,
      '--data',
      data,
      '--split',
      'train',
      '--t',
      '3',
      '--class',
      '9',
      '--out',
      join(dir, 'i.png'),
    );
    assert.match(badClass.stderr, /--class: "9" is not a class of this model/);
    const bad = cli('sample', '--model', run, '-n', '2', '--steps', '2', '--class', '7', '--out', join(dir, 's2'));
    assert.match(bad.stderr, /--class: "7" is not a class of this model \(0\.\.3\)/);
  });

  it(
    'train --init starts a conditional run from an unconditional folder (every tensor but the class ' + 'embedding)',
    () => {
      const base = join(dir, 'base');
      assert.equal(
        cli('train', '--data', data, '--out', base, '--preset', 'tiny', '--steps', '2', '--batch', '4').status,
        0,
      );
      const ft = join(dir, 'ft');
      const r = cli(
        'train',
        '--data',
        data,
        '--out',
        ft,
        '--preset',
        'tiny',
        '--init',
        base,
        '--classes',
        '4',
        '--steps',
        '1',
        '--batch',
        '4',
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /starting from the weights of .*base \((\d+) of (\d+) tensors\)/);
      const [, kept, all] = /\((\d+) of (\d+) tensors\)/.exec(r.stderr)!.map(Number);
      assert.equal(all - kept, 1, 'only the class embedding starts fresh');
      const bad = cli(
        'train',
        '--data',
        data,
        '--out',
        join(dir, 'ft2'),
        '--preset',
        'tiny-rgb',
        '--init',
        base,
        '--steps',
        '1',
      );
      assert.match(bad.stderr, /--init .*base: its network differs from --preset's \(field "/);
    },
  );

  it('--classes on data without labels, and --class on an unconditional model, are refused', () => {
    const plain = mkdtempSync(join(tmpdir(), 'ddpm-nolabels-'));
    const d2 = writeTinyIdx(plain, 8);
    const r = cli(
      'train',
      '--data',
      d2,
      '--out',
      join(plain, 'r'),
      '--preset',
      'tiny',
      '--steps',
      '1',
      '--batch',
      '4',
      '--classes',
      '4',
    );
    assert.match(r.stderr, /--classes: .* has no labels/);
    const model = join(plain, 'm');
    writeModelFolder(
      model,
      PRESETS.tiny(),
      { ...PAPER_DIFFUSION, timesteps: 20 },
      hostWeights(new UNet(PRESETS.tiny()).init(1)),
    );
    const s = cli('sample', '--model', model, '-n', '1', '--steps', '2', '--class', '1', '--out', join(plain, 's'));
    assert.match(s.stderr, /--class \/ --guidance: this model is not class-conditional/);
  });
});
