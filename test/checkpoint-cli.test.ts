// Model folders in the diffusers format and the CLI commands on a tiny model.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { UNet, PRESETS } from '../src/model/unet.js';
import { PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { loadModel, readModelFolder, writeModelFolder, WEIGHTS_FILE } from '../src/io/checkpoint.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { parseNpy, serializeNpy } from '../src/io/npy.js';
import { noGrad, Tensor } from '../src/engine/tensor.js';
import { ROOT, writeTinyIdx, hostWeights } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

function tinyFolder(dir: string) {
  const m = new UNet(PRESETS.tiny()).init(5);
  writeModelFolder(dir, PRESETS.tiny(), { ...PAPER_DIFFUSION, timesteps: 50, betaEnd: 0.4 }, hostWeights(m));
  return m;
}

describe('diffusers model folders', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-ckpt-'));

  // the key list and config of google/ddpm-cifar10-32 are committed in test/goldens (copied from ../shared/reference)
  it('the cifar10 preset has every tensor name and shape of the diffusers CIFAR-10 model', () => {
    const keys = readFileSync(join(ROOT, 'test', 'goldens', 'diffusers-ddpm-cifar10-32.keys.txt'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t'));
    const m = new UNet(PRESETS.cifar10());
    assert.equal(m.parameterCount, 35_746_307);
    assert.equal(keys.length, m.params.size);
    for (const [name, shape] of keys) assert.equal(m.params.get(name)?.shape.join('x'), shape, name);
    const ref = JSON.parse(
      readFileSync(join(ROOT, 'test', 'goldens', 'diffusers-ddpm-cifar10-32.config.json'), 'utf8'),
    );
    const c = PRESETS.cifar10() as unknown as Record<string, unknown>;
    for (const k of [
      'block_out_channels',
      'layers_per_block',
      'down_block_types',
      'up_block_types',
      'norm_num_groups',
      'norm_eps',
      'freq_shift',
      'flip_sin_to_cos',
      'downsample_padding',
    ])
      assert.deepEqual(c[k], ref[k], k);
  });

  it('writes and reads back a flat folder; reads unet/ + scheduler/ subfolders and old attention names', () => {
    const flat = join(dir, 'flat');
    const m = tinyFolder(flat);
    for (const f of ['model_index.json', 'config.json', 'scheduler_config.json', WEIGHTS_FILE])
      assert.ok(existsSync(join(flat, f)), f);
    const idx = JSON.parse(readFileSync(join(flat, 'model_index.json'), 'utf8'));
    assert.deepEqual(idx.unet, ['diffusers', 'UNet2DModel']);
    const { model, folder } = loadModel(flat);
    assert.equal(folder.diffusion.config.timesteps, 50);
    for (const [n, p] of m.params) assert.deepEqual(model.params.get(n)!.dataSync(), p.dataSync(), n);

    // the 2022 layout: subfolders, old attention names
    const sub = join(dir, 'sub');
    mkdirSync(join(sub, 'unet'), { recursive: true });
    mkdirSync(join(sub, 'scheduler'), { recursive: true });
    writeFileSync(join(sub, 'model_index.json'), readFileSync(join(flat, 'model_index.json')));
    writeFileSync(join(sub, 'unet', 'config.json'), readFileSync(join(flat, 'config.json')));
    writeFileSync(join(sub, 'scheduler', 'scheduler_config.json'), readFileSync(join(flat, 'scheduler_config.json')));
    const old = new Map(
      [...parseSafetensors(new Uint8Array(readFileSync(join(flat, WEIGHTS_FILE))), 'w').tensors].map(([k, v]) => [
        k
          .replace('.to_q.', '.query.')
          .replace('.to_k.', '.key.')
          .replace('.to_v.', '.value.')
          .replace('.to_out.0.', '.proj_attn.'),
        v,
      ]),
    );
    assert.ok([...old.keys()].some((k) => k.includes('.proj_attn.')));
    writeFileSync(join(sub, 'unet', WEIGHTS_FILE), serializeSafetensors(old));
    const r = loadModel(sub);
    for (const [n, p] of m.params) assert.deepEqual(r.model.params.get(n)!.dataSync(), p.dataSync(), n);
  });

  it('schedules diffusers lacks travel as trained_betas', () => {
    const d = join(dir, 'jsd');
    const m = new UNet(PRESETS.tiny());
    writeModelFolder(d, PRESETS.tiny(), { ...PAPER_DIFFUSION, schedule: 'jsd', timesteps: 10 }, hostWeights(m));
    const cfg = JSON.parse(readFileSync(join(d, 'scheduler_config.json'), 'utf8'));
    assert.equal(cfg.trained_betas.length, 10);
    assert.equal(readModelFolder(d).diffusion.betas!.length, 10);
  });
});

describe('CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-cli-'));
  const model = join(dir, 'model');
  const m = tinyFolder(model);

  it('--help works for every command', () => {
    for (const c of [
      [],
      ['train'],
      ['sample'],
      ['eval', 'bpd'],
      ['predict'],
      ['convert'],
      ['info'],
      ['data'],
      ['demo'],
    ]) {
      const r = run(...c, '--help');
      assert.equal(r.status, 0, `${c.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: ddpm/);
    }
  });

  it('sample writes a grid, single PNGs and a denoising strip', () => {
    const out = join(dir, 'samples');
    const r = run(
      'sample',
      '--model',
      model,
      '--out',
      out,
      '-n',
      '3',
      '--batch',
      '2',
      '--sampler',
      'ddim',
      '--steps',
      '5',
      '--strip',
    );
    assert.equal(r.status, 0, r.stderr);
    for (const f of ['grid.png', 'strip.png', 'sample-00000.png', 'sample-00002.png'])
      assert.ok(existsSync(join(out, f)), f);
    // a single sample is exactly the model's size, no border, and reads back as the image
    const png = PNG.sync.read(readFileSync(join(out, 'sample-00000.png')));
    assert.deepEqual([png.width, png.height], [8, 8]);
    // a second run into the same folder never mixes with the first one's images
    const again = run('sample', '--model', model, '--out', out, '-n', '2', '--sampler', 'ddim', '--steps', '5');
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /holds 5 images of an earlier run; pass --overwrite/);
    const over = run(
      'sample',
      '--model',
      model,
      '--out',
      out,
      '-n',
      '2',
      '--sampler',
      'ddim',
      '--steps',
      '5',
      '--overwrite',
    );
    assert.equal(over.status, 0, over.stderr);
    assert.ok(!existsSync(join(out, 'sample-00002.png')) && !existsSync(join(out, 'strip.png')), 'old images removed');
  });

  it('predict runs the model on .npy input and writes .npy output equal to the library', () => {
    const x = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i));
    writeFileSync(join(dir, 'x.npy'), serializeNpy(x, [2, 1, 8, 8]));
    const r = run(
      'predict',
      '--model',
      model,
      '--input',
      join(dir, 'x.npy'),
      '--t',
      '3,40',
      '--output',
      join(dir, 'y.npy'),
    );
    assert.equal(r.status, 0, r.stderr);
    const y = parseNpy(new Uint8Array(readFileSync(join(dir, 'y.npy'))), 'y.npy');
    assert.deepEqual(y.shape, [2, 1, 8, 8]);
    const want = noGrad(() => m.forward(new Tensor(x, [2, 1, 8, 8]), [3, 40]));
    for (let i = 0; i < y.data.length; i++) assert.ok(Math.abs(y.data[i] - want.dataSync()[i]) < 1e-4);
  });

  it('info, convert and eval bpd', () => {
    const i = run('info', '--model', model);
    assert.equal(i.status, 0, i.stderr);
    assert.match(i.stdout, /176,849 parameters/);
    const c = run('convert', '--model', model, '--out', join(dir, 'conv'));
    assert.equal(c.status, 0, c.stderr);
    assert.ok(existsSync(join(dir, 'conv', WEIGHTS_FILE)));
    const idxDir = join(dir, 'idx');
    mkdirSync(idxDir, { recursive: true });
    const f = writeTinyIdx(idxDir, 8);
    renameSync(f, join(idxDir, 't10k-images-idx3-ubyte'));
    const e = run(
      'eval',
      'bpd',
      '--model',
      model,
      '--data',
      idxDir,
      '--batch',
      '4',
      '--t-stride',
      '7',
      '--out',
      join(dir, 'bpd.json'),
      '--rd-plot',
      join(dir, 'rd.png'),
    );
    assert.equal(e.status, 0, e.stderr);
    assert.match(e.stdout, /bits\/dim\s+\d+\.\d+/);
    assert.match(e.stdout, /rate-distortion/);
    assert.ok(existsSync(join(dir, 'rd.png')));
    const res = JSON.parse(readFileSync(join(dir, 'bpd.json'), 'utf8'));
    assert.equal(res.images, 8);
    assert.ok(res.total > 0 && Number.isFinite(res.total));
    assert.ok(Math.abs(res.total - (res.prior + res.decoder + res.kl)) < 1e-9);
    // the rate grows as the chain is sent; at t = 0 it is L_T plus every KL term
    const rd = res.rateDistortion;
    assert.equal(rd.length, 50);
    assert.ok(rd.every((x: { rate: number }, i: number) => i === 0 || x.rate >= rd[i - 1].rate));
    assert.ok(Math.abs(rd[rd.length - 1].rate - (res.prior + res.kl)) < 1e-9);
  });

  it('interpolate writes a row of decoded mixtures between two images', () => {
    const idxDir = join(dir, 'idx3');
    mkdirSync(idxDir, { recursive: true });
    renameSync(writeTinyIdx(idxDir, 8), join(idxDir, 't10k-images-idx3-ubyte'));
    const out = join(dir, 'interp.png');
    const r = run(
      'interpolate',
      '--model',
      model,
      '--data',
      idxDir,
      '--a',
      '0',
      '--b',
      '5',
      '--t',
      '10',
      '--count',
      '4',
      '--out',
      out,
    );
    assert.equal(r.status, 0, r.stderr);
    const png = PNG.sync.read(readFileSync(out));
    assert.deepEqual([png.width, png.height], [6 * 10 + 2, 12]);
    const bad = run('interpolate', '--model', model, '--data', idxDir, '--a', '99');
    assert.match(bad.stderr, /--a: image 99 does not exist \(8 images\)/);
  });

  it('demo (the main job) trains on the embedded digits and writes a sample grid, a strip and a loss curve', () => {
    const out = join(dir, 'demo');
    // a step budget, not a time budget: a loaded machine still trains the 3 steps that make a loss curve
    const r = run('demo', '--out', out, '--minutes', '5', '--steps', '3');
    assert.equal(r.status, 0, r.stderr);
    for (const f of [
      'samples/grid.png',
      'samples/strip.png',
      'train/loss.png',
      `train/${WEIGHTS_FILE}`,
      'train/metrics.jsonl',
    ])
      assert.ok(existsSync(join(out, f)), f);
    // each message after the file it names exists (the sampling is awaited)
    const order = [
      'wrote .*shipped.grid\\.png',
      'ddpm demo: .*shipped.grid\\.png in',
      'done: step 3',
      'wrote .*samples.grid\\.png',
      'demo done',
    ].map((p) => r.stderr.search(new RegExp(p)));
    assert.ok(
      order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1])),
      `messages out of order: ${order}\n${r.stderr}`,
    );
    // the shipped model answers to its name and gives the demo's first grid
    if (existsSync(join(ROOT, 'models', 'mnist', 'config.json'))) {
      assert.ok(existsSync(join(out, 'shipped', 'grid.png')), 'the shipped model sampled first');
      assert.match(r.stderr, /sampling 16 digits from the shipped mnist model/);
    }
  });

  it('every shipped model answers to its name: it loads, and 2 DDIM steps give finite images of its shape', () => {
    const names = readdirSync(join(ROOT, 'models')).filter((f) => existsSync(join(ROOT, 'models', f, 'config.json')));
    assert.ok(names.includes('mnist'), `shipped models: ${names.join(', ')}`);
    for (const name of names) {
      const out = join(dir, `shipped-${name}`);
      const r = run(
        'sample',
        '--model',
        name,
        '-n',
        '2',
        '--batch',
        '2',
        '--sampler',
        'ddim',
        '--steps',
        '2',
        '--npy',
        '--out',
        out,
      );
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      const { shape, data } = parseNpy(new Uint8Array(readFileSync(join(out, 'samples.npy'))), 'samples.npy');
      const cfg = readModelFolder(join(ROOT, 'models', name)).unetConfig;
      assert.deepEqual(shape, [2, cfg.in_channels, cfg.sample_size, cfg.sample_size], name);
      assert.ok(data.every(Number.isFinite), `${name}: non-finite samples`);
    }
  });

  it('data prints statistics and writes a preview', () => {
    const idxDir = join(dir, 'idx2');
    mkdirSync(idxDir, { recursive: true });
    writeTinyIdx(idxDir, 8);
    const r = run('data', '--data', idxDir, '--preview', join(dir, 'preview.png'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /8 images, 1x8x8/);
    assert.ok(existsSync(join(dir, 'preview.png')));
  });
});

describe('float16 weights', () => {
  it('float32 -> float16 rounds as IEEE (numpy float16 values) and reads back', async () => {
    const { f32ToF16, serializeSafetensors, parseSafetensors } = await import('../src/io/safetensors.js');
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [70000, 0x7c00],
      [6e-8, 0x0001],
      [1e-8, 0],
      [0.333333, 0x3555],
      [Infinity, 0x7c00],
    ];
    for (const [x, h] of cases) assert.equal(f32ToF16(x), h, `${x}`);
    assert.ok(
      Number.isNaN(
        parseSafetensors(
          serializeSafetensors([['n', { shape: [1], data: Float32Array.of(NaN) }]], undefined, 'F16'),
          'x',
        ).tensors.get('n')!.data[0],
      ),
    );
    const v = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 3);
    const back = parseSafetensors(
      serializeSafetensors([['w', { shape: [100], data: v }]], undefined, 'F16'),
      'x',
    ).tensors.get('w')!.data;
    v.forEach((x, i) => assert.ok(Math.abs(back[i] - x) <= Math.abs(x) * 2 ** -11 + 1e-7, `${x} -> ${back[i]}`));
  });
});

describe('learned-variance folders', () => {
  it('a folder with variance_type learned_range and no ddpm_loss loads (as hybrid) and samples', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-learned-'));
    const cfg = { ...PRESETS.tiny(), out_channels: 2 };
    writeModelFolder(
      dir,
      cfg,
      { ...PAPER_DIFFUSION, variance: 'learnedrange', loss: 'hybrid', timesteps: 20, betaEnd: 0.5 },
      hostWeights(new UNet(cfg).init(2)),
    );
    const sched = JSON.parse(readFileSync(join(dir, 'scheduler_config.json'), 'utf8'));
    delete sched.ddpm_loss;
    writeFileSync(join(dir, 'scheduler_config.json'), JSON.stringify(sched));
    const f = readModelFolder(dir);
    assert.equal(f.diffusion.config.loss, 'hybrid');
    const r = spawnSync(
      process.execPath,
      [CLI, '--backend', 'reference', 'sample', '--model', dir, '-n', '2', '--steps', '5', '--out', join(dir, 's')],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
  });
});
