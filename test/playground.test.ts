// The playground page: `npm run playground`'s server starts, and in headless Chromium with WebGPU (SwiftShader) the
// page samples the shipped MNIST model, renders the chain and the x0 grid, and its picker loads another shipped model. DDPM_UPDATE_SCREENSHOTS=1 rewrites the
// screenshot in docs/ that the README shows; the test checks that one is committed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER =
  existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1'
    ? false
    : `${CHROMIUM} is absent (apt-get install -y chromium)`;
const SHOT = join(ROOT, 'docs', 'playground.png');

describe('playground', () => {
  it('the server prints its URL, and the page samples the shipped model on WebGPU, draws the grids and interpolates', {
    skip: NO_BROWSER,
  }, async () => {
    const server = spawn(process.execPath, [join(ROOT, 'scripts', 'playground.mjs'), '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    server.stderr.on('data', (d) => (err += d));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        server.stdout.on('data', (d) => {
          out += d;
          const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
          if (m) resolve(m[0]);
        });
        server.on('exit', (code) => reject(new Error(`playground server exited with ${code}: ${err}`)));
      });
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--no-sandbox',
          '--enable-unsafe-webgpu',
          '--use-webgpu-adapter=swiftshader',
          '--no-first-run',
          '--disable-background-networking',
        ],
      });
      try {
        const p = await browser.newPage({ viewport: { width: 1000, height: 900 } });
        const errors: string[] = [];
        p.on('pageerror', (e) => errors.push(e.message));
        await p.goto(`${url}?sampler=ddim&steps=4&num=4&seed=0&backend=webgpu`);
        await p.waitForSelector('body[data-sampled="1"]', { timeout: 240_000 });
        assert.deepEqual(errors, []);
        assert.equal(await p.evaluate('document.body.dataset.backend'), 'webgpu');
        assert.match((await p.textContent('#status')) ?? '', /done: 4 samples, ddim, 4 steps, seed 0/);
        // the x0 grid: 2x2 images of 28x28 with a 2-pixel border, holding both dark and light pixels
        const grid = (await p.evaluate(`(() => {
          const c = document.getElementById('x0'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let dark = 0, light = 0; for (let i = 0; i < d.length; i += 4) { if (d[i] < 64) dark++; else if (d[i] > 192) light++; }
          return { w: c.width, h: c.height, dark, light };
        })()`)) as { w: number; h: number; dark: number; light: number };
        assert.deepEqual([grid.w, grid.h], [2 * 30 + 2, 2 * 30 + 2]);
        assert.ok(grid.dark > 500 && grid.light > 100, JSON.stringify(grid));
        // interpolation (Fig. 8) between samples 0 and 1, decoded from t = 2
        await p.fill('#it', '2');
        await p.click('#interp');
        await p.waitForFunction(
          () => /lambda = 0|error/.test(document.getElementById('interpStatus')!.textContent ?? ''),
          undefined,
          { timeout: 240_000 },
        );
        assert.match((await p.textContent('#interpStatus')) ?? '', /lambda = 0, 1\/7, \.\.\., 1 from t = 2/);
        assert.equal(await p.evaluate('document.getElementById("interpOut").width'), 8 * 30 + 2);
        if (process.env.DDPM_UPDATE_SCREENSHOTS === '1') await p.screenshot({ path: SHOT, fullPage: true });
        // the model picker lists the shipped folders and loads the one chosen
        const shipped = readdirSync(join(ROOT, 'models'), { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name)
          .sort();
        assert.deepEqual(
          await p.evaluate('[...document.getElementById("modelPick").options].map((o) => o.value)'),
          shipped,
        );
        assert.equal(await p.inputValue('#modelPick'), 'mnist');
        await p.selectOption('#modelPick', 'fashion');
        await p.waitForFunction(
          () => /loaded|error/.test(document.getElementById('status')!.textContent ?? ''),
          undefined,
          { timeout: 60_000 },
        );
        assert.equal(await p.textContent('#status'), 'model fashion loaded');
        assert.match((await p.textContent('#model')) ?? '', /^fashion \(1x28x28, [\d,]+ parameters, T = 1000\)$/);
        assert.equal(await p.evaluate('document.getElementById("interp").disabled'), true);
      } finally {
        await browser.close();
      }
    } finally {
      server.kill();
    }
  });

  it('a screenshot of the playground is committed in docs/', () => {
    const png = readFileSync(SHOT);
    assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);
    assert.ok(png.length > 20_000, `${SHOT}: ${png.length} bytes`);
  });
});
