// The browser entry: it bundles for the browser with nothing from Node (esbuild, platform browser), and in headless
// Chromium it samples from a U-Net with the reference backend, equal to the same run in Node; with WebGPU (on
// Chromium's SwiftShader) and with wasm it samples the shipped MNIST model equal to Node's native backend, and it
// trains in the tab on WebGPU.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { noGrad, setBackend } from '../src/engine/tensor.js';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { sampleAll } from '../src/diffusion/samplers.js';
import { PRESETS, UNet } from '../src/model/unet.js';
import { loadModel } from '../src/io/checkpoint.js';
import { ROOT, native, reference, writeTinyIdx } from './helpers.js';
import { spawnSync } from 'node:child_process';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER =
  existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1'
    ? false
    : `${CHROMIUM} is absent (apt-get install -y chromium)`;

/** The run both sides do: a tiny U-Net (seed 1), 2 samples of DDIM in 5 steps, seed 0. */
const RUN = `
  lib.useReferenceBackend();
  const model = new lib.UNet(lib.PRESETS.tiny()).init(1);
  const d = new lib.GaussianDiffusion({ ...lib.PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
  const opts = { sampler: 'ddim', steps: 5, seed: 0 };
  const x = lib.noGrad(() => lib.sampleAll(d, (xx, t) => model.forward(xx, t), [2, 1, 8, 8], opts));
  return Array.from(await x.data());`;

/** Modules the browser bundle must not contain (Node-only code). */
const NODE_ONLY = new RegExp(
  'node_modules|cli|native|select|checkpoint|files|load|download|training/train|report|npz|png|sample-run|image-sets' +
    '|models|system',
);

describe('browser entry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-browser-'));
  const bundle = join(dir, 'ddpm.js');

  it('bundles for the browser without anything from Node', async () => {
    const r = await build({
      entryPoints: [join(ROOT, 'dist', 'src', 'browser.js')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      outfile: bundle,
      logLevel: 'silent',
      metafile: true,
    });
    const inputs = Object.keys(r.metafile!.inputs);
    assert.ok(
      inputs.every((f) => !NODE_ONLY.test(f)),
      inputs.join('\n'),
    );
    assert.ok(
      inputs.some((f) => /training\/core/.test(f)),
      'the training core is in the bundle',
    );
    assert.ok(readFileSync(bundle).length < 400_000);
  });

  /**
   * Serves the bundle, the shipped models and a page running `script` (an async function body given `lib`); returns its
   * result.
   */
  async function inChromium(script: string, flags: string[] = []): Promise<unknown> {
    if (!existsSync(bundle))
      await build({
        entryPoints: [join(ROOT, 'dist', 'src', 'browser.js')],
        bundle: true,
        platform: 'browser',
        format: 'esm',
        outfile: bundle,
        logLevel: 'silent',
      });
    const page = `<!doctype html><meta charset="utf-8"><title>ddpm</title><script type="module">
      import * as lib from './ddpm.js';
      window.result = (async () => { ${script} })();</script>`;
    const server = createServer((req, res) => {
      const m = /^\/models\/([\w-]+)\/([\w.-]+)$/.exec(req.url ?? '');
      if (req.url === '/ddpm.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(bundle));
      else if (m && existsSync(join(ROOT, 'models', m[1], m[2])))
        res.writeHead(200).end(readFileSync(join(ROOT, 'models', m[1], m[2])));
      else if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        ...flags,
      ],
    });
    try {
      const p = await browser.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      // 127.0.0.1 is a secure context, which WebGPU needs
      await p.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
      const result = await p.evaluate('window.result');
      assert.deepEqual(errors, []);
      return result;
    } finally {
      await browser.close();
      server.close();
    }
  }

  function assertNear(theirs: number[], ours: ArrayLike<number>, tol: number, what: string): void {
    assert.equal(theirs.length, ours.length);
    let worst = 0;
    theirs.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ours[i]))));
    assert.ok(worst < tol, `${what}: max difference ${worst}`);
  }

  it('samples in headless Chromium equal to Node on the same seed', { skip: NO_BROWSER }, async () => {
    setBackend(reference);
    const model = new UNet(PRESETS.tiny()).init(1);
    const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
    const ours = noGrad(() =>
      sampleAll(d, (xx, t) => model.forward(xx, t), [2, 1, 8, 8], { sampler: 'ddim', steps: 5, seed: 0 }),
    ).dataSync();
    assertNear((await inChromium(RUN)) as number[], ours, 1e-4, 'browser vs Node');
  });

  const WEBGPU = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

  for (const [name, setup] of [
    ['WebGPU', 'const backend = await lib.useWebGPUBackend();'],
    [
      'wasm',
      'const { backend, notes } = await lib.useBestBackend(); if (!notes.some((n) => /software/.test(n))) throw new ' +
        'Error("the software WebGPU adapter was not passed over: " + notes.join("; "));',
    ],
  ])
    it(`${name} in Chromium: the shipped MNIST model samples (4 images, seed 0) equal to Node native within 1e-3`, {
      skip: NO_BROWSER,
    }, async () => {
      const opts = { sampler: 'ddim' as const, steps: 5, seed: 0 };
      const theirs = (await inChromium(
        `
        ${setup}
        const get = (f) => fetch('/models/mnist/' + f);
        const W = 'diffusion_pytorch_model.safetensors';
        const files = {
          config: await (await get('config.json')).json(),
          scheduler: await (await get('scheduler_config.json')).json(),
          weights: new Uint8Array(await (await get(W)).arrayBuffer()),
        };
        const names = { dir: 'mnist', config: 'config.json', scheduler: 'scheduler_config.json', weights: W };
        const folder = lib.parseModelFolder(files, names);
        const model = new lib.UNet(folder.unetConfig);
        lib.loadWeights(model, folder.weights, 'mnist');
        const d = new lib.GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
        const f = (xx, t) => model.forward(xx, t);
        const x = lib.noGrad(() => lib.sampleAll(d, f, [4, 1, 28, 28], ${JSON.stringify(opts)}));
        return { backend: backend.name, x: Array.from(await x.data()) };`,
        WEBGPU,
      )) as { backend: string; x: number[] };
      assert.equal(theirs.backend, name.toLowerCase());
      setBackend(native ?? reference);
      try {
        const { model, folder } = loadModel(join(ROOT, 'models', 'mnist'));
        const d = new GaussianDiffusion(folder.diffusion.config, folder.diffusion.betas);
        const ours = noGrad(() => sampleAll(d, (xx, t) => model.forward(xx, t), [4, 1, 28, 28], opts)).dataSync();
        assertNear(theirs.x, ours, 1e-3, `${name} in Chromium vs Node native`);
      } finally {
        setBackend(reference);
      }
    });

  it('WebGPU in Chromium: the tiny preset trains in the tab and its loss falls', { skip: NO_BROWSER }, async () => {
    // 16 Adam steps on one batch of 8 blobs (Algorithm 1 with a fixed batch): the loss of the last 4 steps is below the
    // first 4
    const losses = (await inChromium(
      `
      await lib.useWebGPUBackend();
      const img = new Float32Array(8 * 64);
      for (let i = 0; i < 8; i++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++)
        img[i * 64 + y * 8 + x] = (y - 2 - (i % 4)) ** 2 + (x - 2 - (i >> 2) * 2) ** 2 <= 3 ? 1 : -1;
      const out = [];
      const o = lib.trainOptionsFrom({ out: '', preset: 'tiny', steps: 16, batch: 8, lr: 3e-3, warmup: 0, seed: 0 });
      o.diffusion = { ...o.diffusion, timesteps: 100, betaEnd: 0.2 };
      const st = lib.createTrainState(o);
      const pixels = Uint8Array.from(img, (v) => (v > 0 ? 255 : 0));
      const data = { name: 'blobs', count: 8, channels: 1, height: 8, width: 8, pixels }, order = new Map();
      const d = new lib.GaussianDiffusion(o.diffusion);
      for (let s = 0; s < 16; s++) out.push((await lib.trainStep(o, d, st, data, order)).loss);
      return out;`,
      WEBGPU,
    )) as number[];
    assert.equal(losses.length, 16);
    const mean = (a: number[]) => a.reduce((p, q) => p + q, 0) / a.length;
    assert.ok(
      mean(losses.slice(-4)) < 0.7 * mean(losses.slice(0, 4)),
      `loss ${losses.map((l) => l.toFixed(3)).join(' ')}`,
    );
  });

  it('the same seed trains the tiny preset to the same losses in the tab (the training core) as `ddpm train` in Node', {
    skip: NO_BROWSER,
  }, async () => {
    const data = writeTinyIdx(dir, 12);
    const out = join(dir, 'node-run');
    const args = [
      '--preset',
      'tiny',
      '--steps',
      '6',
      '--batch',
      '4',
      '--accumulate',
      '2',
      '--lr',
      '2e-3',
      '--warmup',
      '3',
      '--ema',
      '0.9',
      '--flip',
      '--seed',
      '7',
    ];
    const r = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist', 'src', 'cli', 'main.js'),
        '--backend',
        'reference',
        'train',
        '--data',
        data,
        '--out',
        out,
        ...args,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const nodeLosses = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss as number);
    const pixels = Array.from(readFileSync(data).subarray(16));
    const tab = (await inChromium(`
      lib.useReferenceBackend();
      const flags = { out: '', preset: 'tiny', steps: 6, batch: 4, accumulate: 2, lr: 2e-3, warmup: 3, ema: 0.9 };
      flags.flip = true;
      const o = lib.trainOptionsFrom({ ...flags, seed: 7 });
      const st = lib.createTrainState(o), d = new lib.GaussianDiffusion(o.diffusion), order = new Map();
      const pixels = Uint8Array.from(${JSON.stringify(pixels)});
      const data = { name: 'idx', count: 12, channels: 1, height: 8, width: 8, pixels };
      const out = [];
      for (let s = 0; s < o.steps; s++) out.push((await lib.trainStep(o, d, st, data, order)).loss);
      return out;`)) as number[];
    assert.equal(tab.length, 6);
    tab.forEach((l, i) =>
      assert.ok(Math.abs(l - nodeLosses[i]) <= 1e-6, `step ${i + 1}: tab ${l}, node ${nodeLosses[i]}`),
    );
  });
});
