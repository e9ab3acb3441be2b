// The browser entry: it bundles for the browser with nothing from Node (esbuild, platform browser), and in headless
// Chromium it samples from a U-Net with the reference backend, equal to the same run in Node.
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
import { ROOT, reference } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER = existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1' ? false : `${CHROMIUM} is absent (apt-get install -y chromium)`;

/** The run both sides do: a tiny U-Net (seed 1), 2 samples of DDIM in 5 steps, seed 0. */
const RUN = `
  lib.useReferenceBackend();
  const model = new lib.UNet(lib.PRESETS.tiny()).init(1);
  const d = new lib.GaussianDiffusion({ ...lib.PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
  const x = lib.noGrad(() => lib.sampleAll(d, (xx, t) => model.forward(xx, t), [2, 1, 8, 8], { sampler: 'ddim', steps: 5, seed: 0 }));
  return Array.from(await x.data());`;

describe('browser entry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-browser-'));
  const bundle = join(dir, 'ddpm.js');

  it('bundles for the browser without anything from Node', async () => {
    const r = await build({ entryPoints: [join(ROOT, 'dist', 'src', 'browser.js')], bundle: true, platform: 'browser', format: 'esm', outfile: bundle, logLevel: 'silent', metafile: true });
    const inputs = Object.keys(r.metafile!.inputs);
    assert.ok(inputs.every((f) => !/node_modules|cli|native|select|checkpoint|files|load|download|train|report|npz|png/.test(f)), inputs.join('\n'));
    assert.ok(readFileSync(bundle).length < 400_000);
  });

  it('samples in headless Chromium equal to Node on the same seed', { skip: NO_BROWSER }, async () => {
    if (!existsSync(bundle)) await build({ entryPoints: [join(ROOT, 'dist', 'src', 'browser.js')], bundle: true, platform: 'browser', format: 'esm', outfile: bundle, logLevel: 'silent' });
    setBackend(reference);
    const model = new UNet(PRESETS.tiny()).init(1);
    const d = new GaussianDiffusion({ ...PAPER_DIFFUSION, timesteps: 100, betaEnd: 0.2 });
    const ours = noGrad(() => sampleAll(d, (xx, t) => model.forward(xx, t), [2, 1, 8, 8], { sampler: 'ddim', steps: 5, seed: 0 })).dataSync();
    const page = `<!doctype html><meta charset="utf-8"><title>ddpm</title><script type="module">
      import * as lib from './ddpm.js';
      window.result = (async () => { ${RUN} })();</script>`;
    const server = createServer((req, res) => {
      if (req.url === '/ddpm.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(bundle));
      else res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
    try {
      const p = await browser.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      await p.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
      const theirs = (await p.evaluate('window.result')) as number[];
      assert.deepEqual(errors, []);
      assert.equal(theirs.length, ours.length);
      let worst = 0;
      theirs.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ours[i]))));
      assert.ok(worst < 1e-4, `browser vs Node: max difference ${worst}`);
    } finally {
      await browser.close();
      server.close();
    }
  });
});
