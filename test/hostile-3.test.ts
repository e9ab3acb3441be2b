// The third round of faults found by trying the CLI as a hostile new user, each reproduced here: the euler samplers
// missing from --sampler, step plans with a zero-length step (NaN) or an extra step at timestep -1, steps_offset and
// other scheduler_config.json fields taken without a check, --class lists with holes, --guidance refused only once
// sampling began, image folders whose subfolders or symbolic links were silently dropped, and kept samples of
// `eval quality --samples` reused after the folder's step plan changed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import type { Tensor } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { type SamplerState, sample, samplerPlan } from '../src/diffusion/samplers.js';
import { PRESETS, UNet, type UNetConfig } from '../src/model/unet.js';
import { writeModelFolder } from '../src/io/checkpoint.js';
import { serializeNpy } from '../src/io/npy.js';
import { writePng } from '../src/io/png.js';
import { loadDataset } from '../src/data/load.js';
import { NATIVE_SKIP, ROOT, assertRefused, hostWeights } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const cli = (args: string[], backend = 'reference') =>
  spawnSync(process.execPath, [CLI, '--backend', backend, '--threads', '1', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });

/** A model folder of the tiny preset (T = 20 unless told), its scheduler_config.json extended by `sched`. */
function modelFolder(dir: string, cfg: Partial<UNetConfig> = {}, sched: Record<string, unknown> = {}, T = 20) {
  const c = { ...PRESETS.tiny(), ...cfg };
  writeModelFolder(dir, c, { ...PAPER_DIFFUSION, timesteps: T }, hostWeights(new UNet(c).init(1)));
  const f = join(dir, 'scheduler_config.json');
  writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), ...sched }));
  return dir;
}

/** An 8x8 gray PNG of value v. */
function png(path: string, v: number): void {
  const data = new Uint8Array(8 * 8 * 4).map((_, k) => (k % 4 === 3 ? 255 : v));
  writePng(path, { width: 8, height: 8, data });
}

describe('hostile inputs, third round', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-hostile3-'));
  const unc = modelFolder(join(dir, 'unc'));
  const cond = modelFolder(join(dir, 'cond'), { num_class_embeds: 4, ddpm_null_class: 3 });
  const noNull = modelFolder(join(dir, 'nonull'), { num_class_embeds: 3 });
  const out = (name: string) => ['--out', join(dir, name), '--overwrite'];

  it('--sampler takes every sampler of the library (euler and euler-a were refused)', () => {
    for (const s of ['euler', 'euler-a']) {
      const r = cli(['sample', '--model', unc, ...out(`s-${s}`), '-n', '1', '--steps', '2', '--sampler', s]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`\\(${s}, 2 steps`));
    }
  });

  it('a plan with a zero-length step (a repeated timestep) is refused by name instead of sampling NaN', () => {
    for (const spacing of ['linspace', 'leading'])
      assertRefused(
        cli([
          'sample',
          '--model',
          unc,
          ...out('z'),
          '-n',
          '1',
          '--sampler',
          'dpm2m',
          '--steps',
          '20',
          ...['--timestep-spacing', spacing],
        ]),
        new RegExp(`--steps 20 --timestep-spacing ${spacing} lays out a step of zero length .*at most 19`),
      );
    const r = cli(['sample', '--model', unc, ...out('z19'), '-n', '1', '--sampler', 'dpm2m', '--steps', '19']);
    assert.equal(r.status, 0, r.stderr);
    // section lists are respaced's; the message names both flags
    assertRefused(
      cli([
        'sample',
        '--model',
        unc,
        ...out('z2'),
        '--steps',
        '3,4',
        '--sampler',
        'ddim',
        '--timestep-spacing',
        'leading',
      ]),
      /--steps "3,4": --timestep-spacing "leading" needs a step count in \[1, 20\]/,
    );
    assertRefused(cli(['sample', '--model', unc, ...out('z3'), '--steps', '0']), /--steps respacing "0": section 0/);
  });

  it('trailing spacing gives exactly the steps asked for, never timestep -1 (61 of T = 1000 gave 62 or threw)', () => {
    const d = new GaussianDiffusion(PAPER_DIFFUSION);
    for (const sampler of ['ddim', 'dpm2m', 'euler'] as const)
      for (const steps of [61, 103, 121]) {
        const { plan } = samplerPlan(d, { sampler, steps, timestepSpacing: 'trailing' });
        assert.equal(plan.length, steps, `${sampler} ${steps}`);
        assert.ok(
          plan.every((p) => p.t >= 0 && p.abPrev > p.ab),
          `${sampler} ${steps}`,
        );
        assert.equal(plan[0].t, 999);
      }
  });

  it('scheduler_config.json: steps_offset past T, num_train_timesteps too large, trained_betas not a list', () => {
    const over = modelFolder(join(dir, 'off1000'), {}, { steps_offset: 20 });
    assertRefused(
      cli(['sample', '--model', over, ...out('o1'), '--steps', '2', '--sampler', 'heun']),
      /scheduler_config\.json: field "steps_offset" must be a whole number in \[0, 19\] .*got 20/,
    );
    // in range, but the leading layout then passes T: refused naming steps_offset (heun sampled it silently, dpm2m NaN)
    const off = modelFolder(join(dir, 'off15'), {}, { steps_offset: 15 });
    for (const sampler of ['heun', 'dpm2m', 'ddim'])
      assertRefused(
        cli([
          'sample',
          '--model',
          off,
          ...out('o2'),
          '--steps',
          '3',
          '--sampler',
          sampler,
          '--timestep-spacing',
          'leading',
        ]),
        /--timestep-spacing leading and steps_offset 15 \(the model folder's scheduler_config\.json\) put timestep \d+/,
      );
    const huge = modelFolder(join(dir, 'huge'), {}, { num_train_timesteps: 1e12 });
    assertRefused(
      cli(['info', '--model', huge]),
      /field "num_train_timesteps" must be a whole number in \[1, 1000000\]/,
    );
    const betas = modelFolder(join(dir, 'betas'), {}, { trained_betas: 'abc' });
    assertRefused(
      cli(['info', '--model', betas]),
      /field "trained_betas" must be a list of 20 betas or null, got "abc"/,
    );
  });

  it('--class lists with holes or non-numbers are refused by every command (an empty entry was class 0)', () => {
    const x = join(dir, 'x.npy');
    writeFileSync(x, serializeNpy(new Float32Array(2 * 64), [2, 1, 8, 8]));
    for (const bad of ['1,,2', '', '0x1', '1.0', '2,']) {
      assertRefused(
        cli(['sample', '--model', cond, ...out('c'), '-n', '2', '--steps', '2', '--class', bad]),
        /--class must be a class number or a comma-separated list of them/,
      );
      assertRefused(
        cli(['predict', '--model', cond, '--input', x, '--t', '3', '--output', join(dir, 'y.npy'), '--class', bad]),
        /--class must be a class number/,
      );
    }
    assertRefused(
      cli(['interpolate', '--model', cond, '--data', join(dir, 'none'), '--class', '1,2']),
      /--class must be one class number, got "1,2"/,
    );
    const ok = cli(['sample', '--model', cond, ...out('c2'), '-n', '2', '--steps', '2', '--class', ' 1, 2']);
    assert.equal(ok.status, 0, ok.stderr);
  });

  it('--guidance on a conditional model without a null class is refused up front, naming the flag', () => {
    assertRefused(
      cli(['sample', '--model', noNull, ...out('g'), '-n', '1', '--steps', '2', '--guidance', '2']),
      /--guidance 2: this model has no null class/,
    );
    const img = join(dir, 'in.png');
    png(img, 40);
    assertRefused(
      cli(['edit', '--model', noNull, '--image', img, ...out('g2'), '--steps', '2', '--guidance', '0']),
      /--guidance 0: this model has no null class/,
    );
    assertRefused(
      cli(['interpolate', '--model', cond, '--data', join(dir, 'none'), '--guidance', '1e9']),
      /--guidance must be a number in \[0, 100\]/,
    );
  });

  it('image folders: PNGs beside class folders refused, linked class folders counted, loops, non-PNGs warned', () => {
    const mix = join(dir, 'mix');
    for (const c of ['a', 'b']) mkdirSync(join(mix, c), { recursive: true });
    png(join(mix, 'a', '0.png'), 10);
    png(join(mix, 'b', '0.png'), 20);
    png(join(mix, 'top.png'), 30);
    assert.throws(
      () => loadDataset(mix, 'train', { size: 8, channels: 1 }),
      /mix: holds both \.png files and subfolders of them \(a, b\)/,
    );
    // a: real, b: a link to a folder elsewhere, c: real; a/loop links back to the top; torchvision's file order
    const root = join(dir, 'linked'),
      elsewhere = join(dir, 'elsewhere');
    mkdirSync(join(root, 'a', 'm'), { recursive: true });
    mkdirSync(join(root, 'c'), { recursive: true });
    mkdirSync(elsewhere);
    png(join(root, 'a', 'x.png'), 1);
    png(join(root, 'a', 'm', 'y.png'), 2);
    png(join(root, 'a', 'z.png'), 3);
    writeFileSync(join(root, 'a', 'notes.txt'), 'hi');
    png(join(elsewhere, 'e.png'), 4);
    png(join(root, 'c', 'c.png'), 5);
    symlinkSync(elsewhere, join(root, 'b'));
    symlinkSync(root, join(root, 'a', 'loop'));
    const ds = loadDataset(root, 'train', { size: 8, channels: 1 });
    assert.deepEqual(ds.classNames, ['a', 'b', 'c']);
    assert.deepEqual(Array.from(ds.labels!), [0, 0, 0, 1, 2]);
    assert.deepEqual(
      Array.from({ length: ds.count }, (_, i) => ds.pixels[i * 64]),
      [1, 3, 2, 4, 5],
    );
    assert.ok(ds.warnings!.some((w) => /1 file\(s\) not \.png skipped \(a\/notes\.txt\)/.test(w)));
    assert.ok(ds.warnings!.some((w) => /skipped 1 symbolic link\(s\) back to a folder .*a\/loop/.test(w)));
    mkdirSync(join(root, 'd'));
    writeFileSync(join(root, 'd', 'photo.jpg'), 'jpeg');
    assert.throws(
      () => loadDataset(root, 'train', { size: 8, channels: 1 }),
      /a class folder with no \.png files \(class 3, "d"\); it holds 1 other file\(s\)/,
    );
  });

  it('train --embed-lr 0 and --cond-drop 1 warn; --classes on unlabelled PNGs names class folders', () => {
    const data = join(dir, 'classes');
    for (const [c, v] of [
      ['a', 10],
      ['b', 200],
    ] as const) {
      mkdirSync(join(data, c), { recursive: true });
      for (let i = 0; i < 2; i++) png(join(data, c, `${i}.png`), v + i);
    }
    const tiny = ['--preset', 'tiny', '--steps', '1', '--batch', '2', '--warmup', '0'];
    const r = cli(['train', '--data', data, '--out', join(dir, 'e0'), ...tiny, '--classes', '2', '--embed-lr', '0']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: --embed-lr 0: the class embedding keeps its starting values/);
    const c1 = cli(['train', '--data', data, '--out', join(dir, 'c1'), ...tiny, '--classes', '2', '--cond-drop', '1']);
    assert.match(c1.stderr, /warning: --cond-drop 1: every label is dropped/);
    const flat = join(dir, 'flat');
    mkdirSync(flat);
    png(join(flat, '0.png'), 5);
    assertRefused(
      cli(['train', '--data', flat, '--out', join(dir, 'f'), ...tiny, '--classes', '2']),
      /--classes: .* has no labels \(.*or a folder with one subfolder of PNGs per class\)/,
    );
  });

  it('a saved sampler state resumed under another spacing of the same length is refused (it mixed)', async () => {
    const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 20 });
    const eps = (x: Tensor) => ops.mul(x, 0.1);
    const opts = { sampler: 'dpm2m' as const, steps: 4, seed: 0, timestepSpacing: 'linspace' as const };
    const it1 = sample(d, eps, [1, 1, 2, 2], opts);
    const state: SamplerState = await (it1.next().value as { saveState: () => Promise<SamplerState> }).saveState();
    assert.throws(
      () => sample(d, eps, [1, 1, 2, 2], { ...opts, timestepSpacing: 'trailing' }, state).next(),
      /was drawn with another step plan than the request \(trailing\); resuming it would mix the two/,
    );
    assert.equal(sample(d, eps, [1, 1, 2, 2], opts, state).next().done, false);
  });

  it('eval quality --samples: samples drawn before scheduler_config.json changed are not reused or extended', {
    skip: NATIVE_SKIP,
  }, () => {
    const m28 = modelFolder(join(dir, 'm28'), { sample_size: 28 });
    const ref = join(dir, 'ref.npy');
    const refData = Float32Array.from({ length: 8 * 784 }, (_, i) => Math.sin(i));
    writeFileSync(ref, serializeNpy(refData, [8, 1, 28, 28]));
    const kept = join(dir, 'kept.npy');
    const args = ['eval', 'quality', '--images', m28, '-n', '4', '--batch', '2', '--sampler', 'dpm2m', '--steps', '3'];
    const more = ['--ref', ref, '--kid-subsets', '2', '--kid-size', '4', '--pr-num', '0', '--samples', kept];
    const first = cli([...args, ...more], 'native');
    assert.equal(first.status, 0, first.stderr);
    assert.match(cli([...args, ...more], 'native').stderr, /drawn before for this request; reusing it/);
    // the same command after the folder's timestep_spacing changed: another plan, the same weights and options
    const sched = join(m28, 'scheduler_config.json');
    const linspace = readFileSync(sched, 'utf8');
    writeFileSync(sched, JSON.stringify({ ...JSON.parse(linspace), timestep_spacing: 'trailing' }));
    assertRefused(
      cli([...args, ...more], 'native'),
      /kept\.npy: drawn with another process or step plan \(linspace spacing.*this request: trailing spacing/,
    );
    // kept batches (a killed run) of the old plan are discarded, not extended
    const raw = readFileSync(kept);
    writeFileSync(`${kept}.partial`, raw.subarray(raw.length - 4 * 784 * 4, raw.length - 2 * 784 * 4));
    cpSync(`${kept}.request.json`, `${kept}.partial.json`);
    const key = JSON.parse(readFileSync(`${kept}.partial.json`, 'utf8')).key;
    writeFileSync(`${kept}.partial.json`, JSON.stringify({ key, done: 2 }));
    for (const f of [kept, `${kept}.request.json`]) rmSync(f);
    const again = cli([...args, ...more], 'native');
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /kept samples were drawn with another process or step plan .*discarded and drawn again/);
    assert.doesNotMatch(again.stderr, /resuming after/);
  });
});
