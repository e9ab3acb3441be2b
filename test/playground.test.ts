// The playground page: `npm run playground`'s server starts, and in headless Chromium with WebGPU (SwiftShader) the
// page samples the shipped MNIST model, renders the chain and the x0 grid, and its picker loads another shipped model.
// On wasm: a phone-width viewport has no horizontal overflow; settings in the address that the page cannot use, bad
// fields and a folder without a model are answered next to their controls while sampling still works; the loss chart
// has axes. Steering: a class-conditional model (a tiny one with a null class, from test/goldens) gets the class
// picker and guidance, and the labels reach the network; strokes drawn on the pad are finished by RePaint (the kept
// pixels come back exactly) and cleaned up by SDEdit (strength 0 returns them); Fig. 7's rows share x_t; Stop ends an
// action.
// DDPM_UPDATE_SCREENSHOTS=1 rewrites the screenshot in docs/ that the README shows.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER =
  existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1'
    ? false
    : `${CHROMIUM} is absent (apt-get install -y chromium)`;
const SHOT = join(ROOT, 'docs', 'playground.png');
const LONG = 240_000;

describe('playground', () => {
  let server: ChildProcess | null = null;
  let browser: Browser | null = null;
  let url = '';
  // the tiny conditional U-Net of test/goldens (4 class embeddings) with its last class as the null class: classes 0-2
  const tmp = mkdtempSync(join(tmpdir(), 'ddpm-playground-'));
  const COND = join(tmp, 'cond-tiny'),
    GOLDEN_COND = join(ROOT, 'test', 'goldens', 'unet-cond-embedding');

  before(async () => {
    if (NO_BROWSER) return;
    cpSync(GOLDEN_COND, COND, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(COND, 'config.json'), 'utf8'));
    writeFileSync(join(COND, 'config.json'), JSON.stringify({ ...cfg, ddpm_null_class: 3 }));
    const s = spawn(process.execPath, [join(ROOT, 'scripts', 'playground.mjs'), '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = s;
    let err = '';
    s.stderr.on('data', (d) => (err += d));
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      s.stdout.on('data', (d) => {
        out += d;
        const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
        if (m) resolve(m[0]);
      });
      s.on('exit', (code) => reject(new Error(`playground server exited with ${code}: ${err}`)));
    });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        '--use-webgpu-adapter=swiftshader',
        '--no-first-run',
        '--disable-background-networking',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    server?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A new page at `query`, its uncaught errors collected. */
  async function open(query: string, width = 1000): Promise<{ p: Page; errors: string[] }> {
    const p = await browser!.newPage({ viewport: { width, height: 900 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(`${url}${query}`);
    await p.waitForSelector('body[data-ready="1"]', { timeout: LONG });
    return { p, errors };
  }
  const text = async (p: Page, sel: string) => (await p.textContent(sel)) ?? '';
  const scrollWidth = (p: Page) => p.evaluate(() => document.documentElement.scrollWidth);
  const sampled = (p: Page, n: number) => p.waitForSelector(`body[data-sampled="${n}"]`, { timeout: LONG });
  const interpolated = (p: Page) =>
    p.waitForFunction(
      () => /lambda = 0|error/.test(document.getElementById('interpStatus')!.textContent ?? ''),
      undefined,
      { timeout: LONG },
    );
  /** The images of a grid canvas (drawGrid's layout: S x S cells 2 pixels apart), each as its red channel. */
  const cells = (p: Page, sel: string, S: number) =>
    p.$eval(
      sel,
      (el, S) => {
        const c = el as HTMLCanvasElement,
          d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        const out: number[][] = [];
        for (let r = 0; 2 + (r + 1) * (S + 2) <= c.height; r++)
          for (let k = 0; 2 + (k + 1) * (S + 2) <= c.width; k++)
            out.push(
              Array.from({ length: S * S }, (_, i) => {
                const y = 2 + r * (S + 2) + Math.floor(i / S),
                  x = 2 + k * (S + 2) + (i % S);
                return d[(y * c.width + x) * 4];
              }),
            );
        return out;
      },
      S,
    );
  /** Loads a model folder through the folder chooser and waits for the model's message. */
  const loadFolder = async (p: Page, dir: string) => {
    await p.evaluate(() => (document.getElementById('modelStatus')!.textContent = ''));
    await p.setInputFiles('#folder', dir);
    await p.waitForFunction(() => /loaded|error/.test(document.getElementById('modelStatus')!.textContent ?? ''));
    assert.match(await text(p, '#modelStatus'), /loaded from your files/);
  };
  /** Waits for the message area `sel` to match `re`. */
  const until = (p: Page, sel: string, re: RegExp) =>
    p.waitForFunction(([s, r]) => new RegExp(r).test(document.querySelector(s)!.textContent ?? ''), [sel, re.source], {
      timeout: LONG,
    });

  it('the server prints its URL, and the page samples the shipped model on WebGPU, draws the grids and interpolates', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?sampler=ddim&steps=4&num=4&seed=0&backend=webgpu');
    try {
      await sampled(p, 1);
      assert.deepEqual(errors, []);
      assert.equal(await p.evaluate('document.body.dataset.backend'), 'webgpu');
      assert.match(await text(p, '#status'), /done: 4 samples, ddim, 4 steps, seed 0, clip on/);
      // the estimate for the next run, from this one's timed steps
      assert.match(await text(p, '#sampleEta'), /^estimate: (about \d+ (s|min)|under a second) on webgpu/);
      // the x0 grid: 2x2 images of 28x28 with a 2-pixel border, holding both dark and light pixels
      const grid = (await p.evaluate(`(() => {
        const c = document.getElementById('x0');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let dark = 0, light = 0;
        for (let i = 0; i < d.length; i += 4) { if (d[i] < 64) dark++; else if (d[i] > 192) light++; }
        return { w: c.width, h: c.height, dark, light };
      })()`)) as { w: number; h: number; dark: number; light: number };
      assert.deepEqual([grid.w, grid.h], [2 * 30 + 2, 2 * 30 + 2]);
      assert.ok(grid.dark > 500 && grid.light > 100, JSON.stringify(grid));
      // the forward chain: the 4 samples, each noised to 8 timesteps
      assert.equal(await p.evaluate('document.getElementById("forward").width'), 8 * 30 + 2);
      // interpolation (Fig. 8) between samples 0 and 1, decoded from t = 2
      await p.fill('#it', '2');
      await p.click('#interp');
      await interpolated(p);
      assert.match(await text(p, '#interpStatus'), /lambda = 0, 1\/7, \.\.\., 1 from t = 2/);
      assert.equal(await p.evaluate('document.getElementById("interpOut").width'), 8 * 30 + 2);
      if (process.env.DDPM_UPDATE_SCREENSHOTS === '1') await p.screenshot({ path: SHOT, fullPage: true });
      // the model picker lists the shipped folders and loads the one chosen, saying so in its own message area
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
        () => /loaded|error/.test(document.getElementById('modelStatus')!.textContent ?? ''),
        undefined,
        { timeout: 60_000 },
      );
      assert.equal(await text(p, '#modelStatus'), 'model fashion loaded');
      assert.match(await text(p, '#model'), /^fashion \(1x28x28, [\d,]+ parameters, T = 1000\)$/);
      assert.equal(await p.evaluate('document.getElementById("interp").disabled'), true);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('at phone width (375 px) the page has no horizontal overflow, before and after sampling and interpolating', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&sampler=ddim&steps=2&num=8&seed=0', 375);
    try {
      assert.ok((await scrollWidth(p)) <= 375, `scrollWidth ${await scrollWidth(p)} before sampling`);
      await sampled(p, 1);
      assert.match(await text(p, '#status'), /done: 8 samples/);
      assert.ok((await scrollWidth(p)) <= 375, `scrollWidth ${await scrollWidth(p)} after sampling`);
      await p.fill('#it', '1');
      await p.click('#interp');
      await interpolated(p);
      assert.match(await text(p, '#interpStatus'), /lambda = 0/);
      assert.ok((await scrollWidth(p)) <= 375, `scrollWidth ${await scrollWidth(p)} after interpolating`);
      // the explanation for a first visit is on the page
      assert.match(await text(p, '#about'), /forward chain[\s\S]*reverse chain[\s\S]*x0 estimate[\s\S]*Algorithm 2/);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('unknown ?model= and ?sampler=, bad ?steps= / ?num= / fields and a folder without a model: answered in place', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&model=nope&sampler=nope&steps=abc&num=0');
    try {
      assert.match(await text(p, '#modelStatus'), /model "nope", which is not shipped .*; loaded mnist instead/);
      assert.match(await text(p, '#model'), /^mnist \(/);
      assert.match(await text(p, '#samplerMsg'), /sampler "nope", which this page does not have; using ddim/);
      assert.match(await text(p, '#stepsMsg'), /steps=abc is not a whole number from 1 to 1000; using 20/);
      assert.match(await text(p, '#numMsg'), /num=0 is not a whole number from 1 to 64; using 8/);
      assert.match(await text(p, '#status'), /not sampling on load/);
      assert.match(await text(p, '#sampleEta'), /^estimate: .* on wasm/);
      // a field that cannot be used: said next to it, and Sample refuses in words
      await p.fill('#seed', '-1');
      assert.match(await text(p, '#seedMsg'), /seed must be a whole number 0 or more; "-1" is not/);
      await p.click('#sample');
      assert.match(await text(p, '#status'), /fix the fields marked above/);
      assert.equal(await p.evaluate('document.body.dataset.sampled'), undefined);
      // with valid choices the other controls still sample
      await p.fill('#seed', '0');
      await p.fill('#steps', '2');
      await p.fill('#num', '2');
      await p.selectOption('#sampler', 'ddim');
      await p.click('#sample');
      await sampled(p, 1);
      assert.match(await text(p, '#status'), /done: 2 samples, ddim, 2 steps, seed 0, clip on/);
      for (const id of ['#samplerMsg', '#stepsMsg', '#numMsg', '#seedMsg']) assert.equal(await text(p, id), '', id);
      // clip off reaches the sampler: the same seed gives other pixels
      const pixels = () =>
        p.evaluate(() => {
          const c = document.getElementById('xt') as HTMLCanvasElement;
          return Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data).join(',');
        });
      const clipped = await pixels();
      await p.uncheck('#clip');
      await p.click('#sample');
      await sampled(p, 2);
      assert.match(await text(p, '#status'), /clip off/);
      assert.notEqual(await pixels(), clipped);
      // a folder chosen with the picker is named by its files; one without a model is refused in the model's area
      await p.setInputFiles('#folder', join(ROOT, 'models', 'fashion'));
      await p.waitForFunction(() => /loaded|error/.test(document.getElementById('modelStatus')!.textContent ?? ''));
      assert.equal(await text(p, '#modelStatus'), 'model fashion loaded from your files');
      assert.match(await text(p, '#dropFiles'), /fashion\/config\.json \([\d.]+ [KM]?B\).*fashion\/diffusion_pytorch/);
      assert.match(await text(p, '#model'), /^fashion, from your files \(1x28x28/);
      await p.setInputFiles('#files', join(ROOT, 'models', 'README.md'));
      await p.waitForFunction(() => /error/.test(document.getElementById('modelStatus')!.textContent ?? ''));
      assert.match(await text(p, '#modelStatus'), /needs config\.json and diffusion_pytorch_model\.safetensors/);
      assert.match(await text(p, '#dropFiles'), /README\.md/);
      assert.match(await text(p, '#status'), /clip off/); // the sampling area keeps its own message
      // dropped files (a drop event carrying the three files of models/mnist) are named too
      await p.evaluate(async () => {
        const dt = new DataTransfer();
        for (const f of ['config.json', 'scheduler_config.json', 'diffusion_pytorch_model.safetensors'])
          dt.items.add(new File([await (await fetch(`models/mnist/${f}`)).blob()], f));
        const drop = new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
        document.getElementById('drop')!.dispatchEvent(drop);
      });
      await p.waitForFunction(() =>
        /your model loaded|could not read/.test(document.getElementById('modelStatus')!.textContent ?? ''),
      );
      assert.equal(await text(p, '#modelStatus'), 'model your model loaded from your files');
      assert.match(
        await text(p, '#dropFiles'),
        /^dropped: .*config\.json \(.*scheduler_config\.json \(.*safetensors \(/,
      );
      await p.click('#sample');
      await sampled(p, 3);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('the loss chart has a step axis and a log loss axis with tick labels, before and after training', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&auto=0');
    try {
      const chart = () =>
        p.evaluate(() => ({
          labels: [...document.querySelectorAll('#loss .axis-label')].map((t) => t.textContent),
          x: [...document.querySelectorAll('#loss .x-tick')].map((t) => t.textContent),
          y: [...document.querySelectorAll('#loss .y-tick')].map((t) => t.textContent),
          points: document.getElementById('loss')!.dataset.points,
        }));
      const empty = await chart();
      assert.deepEqual(empty.labels, ['step', 'loss (log scale)']);
      assert.deepEqual(empty.x, ['0', '500', '1000', '1500', '2000']);
      assert.deepEqual(empty.y, ['0.01', '0.1', '1']);
      assert.match(await text(p, '#trainEta'), /^estimate: .* on wasm \(a rough guess/);
      await p.fill('#trainSteps', '3');
      await p.click('#train');
      await p.waitForSelector('body[data-trained="1"]', { timeout: LONG });
      assert.match(await text(p, '#trainStatus'), /^done after 3 steps in [\d.]+ s, last loss \d/);
      const trained = await chart();
      assert.deepEqual(trained.labels, ['step', 'loss (log scale)']);
      assert.equal(trained.points, '3');
      assert.ok(trained.x.length >= 2 && trained.x[0] === '0', JSON.stringify(trained));
      assert.ok(trained.y.length >= 2 && trained.y.every((v) => Number(v) > 0), JSON.stringify(trained));
      assert.match(await text(p, '#trainEta'), /on wasm \(timed in this tab\)/);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('a class-conditional model: the class picker and guidance reach the network, "any" is every class in turn', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&auto=0&sampler=ddim&steps=3&num=4&seed=0');
    try {
      assert.equal(await p.isVisible('#classBox'), false); // mnist is unconditional
      await loadFolder(p, COND);
      assert.equal(await p.isVisible('#classBox'), true);
      const options = await p.$$eval('#classPick option', (os) => os.map((o) => o.getAttribute('value')).join());
      assert.equal(options, 'any,0,1,2');
      assert.equal(await p.isEnabled('#guidance'), true);
      assert.match(await text(p, '#classNote'), /the null class, 3/);
      const run = async (cls: string, w: string, k: number) => {
        await p.selectOption('#classPick', cls);
        await p.fill('#guidance', w);
        assert.equal(await text(p, '#guidanceVal'), `w = ${w}`);
        await p.click('#sample');
        await sampled(p, k);
        return { status: await text(p, '#status'), x: await cells(p, '#x0', 8) };
      };
      const one = await run('1', '3', 1);
      assert.match(one.status, /^done: 4 samples, ddim, 3 steps, seed 0, clip on, class 1, guidance w = 3, in /);
      const two = await run('2', '3', 2);
      const plain = await run('2', '1', 3);
      const any = await run('any', '3', 4);
      assert.match(any.status, /classes 0 to 2 in turn, guidance w = 3/);
      // the same noise for sample i in every run: its image changes with its class and with w
      assert.notDeepEqual(two.x[1], one.x[1]);
      assert.notDeepEqual(plain.x[1], two.x[1]);
      // "any": sample i takes class i mod 3, so sample 1 is run "class 1"'s and sample 2 run "class 2"'s
      assert.deepEqual(any.x[1], one.x[1]);
      assert.deepEqual(any.x[2], two.x[2]);
      assert.notDeepEqual(any.x[0], one.x[0]);
      // interpolation decodes with the class too
      await p.fill('#it', '2');
      await p.click('#interp');
      await interpolated(p);
      assert.match(await text(p, '#interpStatus'), /lambda = 0/);
      // without a null class the slider stays at w = 1 and says why; sampling works
      await loadFolder(p, GOLDEN_COND);
      assert.equal(await p.isEnabled('#guidance'), false);
      assert.equal(await text(p, '#guidanceVal'), 'w = 1');
      assert.match(await text(p, '#classNote'), /no null class .*guidance needs one/);
      assert.equal(await p.$$eval('#classPick option', (os) => os.length), 5);
      await p.click('#sample');
      await sampled(p, 5);
      assert.match(await text(p, '#status'), /classes 0 to 3 in turn, guidance w = 1, in /);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('the drawing pad: mouse strokes, finished by RePaint (kept pixels exact) and cleaned up by SDEdit', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&auto=0&sampler=ddim&seed=0');
    try {
      await p.click('#finish');
      assert.match(await text(p, '#padStatus'), /draw something first/);
      // a "7": a bar and a diagonal, with the mouse; then a dot by touch
      await p.locator('#pad').scrollIntoViewIfNeeded(); // the mouse acts on the viewport
      const box = (await p.locator('#pad').boundingBox())!;
      const at = (fx: number, fy: number) => [box.x + fx * box.width, box.y + fy * box.height] as const;
      await p.mouse.move(...at(0.25, 0.25));
      await p.mouse.down();
      await p.mouse.move(...at(0.75, 0.25), { steps: 8 });
      await p.mouse.move(...at(0.4, 0.8), { steps: 8 });
      await p.mouse.up();
      const inked = async () => Number(await p.getAttribute('#pad', 'data-inked'));
      const drawn = await inked();
      assert.ok(drawn > 30 && drawn < 400, `inked ${drawn}`);
      await p.$eval('#pad', (c) => {
        const r = c.getBoundingClientRect();
        for (const type of ['pointerdown', 'pointermove', 'pointerup']) {
          const o = { pointerId: 7, pointerType: 'touch', bubbles: true, clientY: r.top + r.height * 0.9 };
          c.dispatchEvent(
            new PointerEvent(type, { ...o, clientX: r.left + r.width * (type === 'pointerdown' ? 0.8 : 0.9) }),
          );
        }
      });
      assert.ok((await inked()) > drawn);
      assert.equal(await p.getAttribute('#pad', 'data-strokes'), '2');
      // the pad's canvas is the drawing itself, one canvas pixel per model pixel
      const ink = await p.$eval('#pad', (c) =>
        [...(c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 28, 28).data].filter((_, i) => i % 4 === 0),
      );
      await p.fill('#padNum', '2');
      await p.fill('#padSteps', '5');
      await p.fill('#jumps', '2');
      const finish = async (keep: string, k: number) => {
        await p.selectOption('#keep', keep);
        await p.click('#finish');
        await p.waitForSelector(`body[data-inpainted="${k}"]`, { timeout: LONG });
        return cells(p, '#padOut', 28);
      };
      const kept = await finish('drawn', 1);
      assert.match(await text(p, '#padStatus'), /^done: 2 results, kept what you drew, RePaint \d+ steps/);
      assert.equal(kept.length, 3); // the drawing with its hole, then the 2 results
      for (const r of kept.slice(1)) {
        // the drawn pixels come back as drawn; the rest is generated (grey in the input)
        for (let i = 0; i < 784; i++) if (ink[i] > 0) assert.ok(Math.abs(r[i] - ink[i]) <= 1, `pixel ${i}`);
        assert.equal(kept[0].filter((v, i) => ink[i] === 0 && v !== 128).length, 0);
      }
      assert.notDeepEqual(kept[1], kept[2]); // different noise, different completions
      const top = await finish('top', 2);
      assert.match(await text(p, '#padStatus'), /kept the top half/);
      for (const r of top.slice(1)) {
        for (let i = 0; i < 392; i++) assert.ok(Math.abs(r[i] - ink[i]) <= 1, `pixel ${i}`);
        assert.ok(r.slice(392).some((v, i) => Math.abs(v - ink[392 + i]) > 8));
      }
      // SDEdit: strength 0 gives the drawing back; 0.6 runs 3 of the 5 steps and changes it
      const clean = async (strength: string, k: number) => {
        await p.fill('#strength', strength);
        assert.equal(await text(p, '#strengthVal'), Number(strength).toFixed(2));
        await p.click('#clean');
        await p.waitForSelector(`body[data-sdedited="${k}"]`, { timeout: LONG });
        return cells(p, '#padOut', 28);
      };
      const same = await clean('0', 1);
      for (const r of same) assert.ok(r.every((v, i) => Math.abs(v - ink[i]) <= 1));
      const edited = await clean('0.6', 2);
      assert.match(await text(p, '#padStatus'), /^done: 2 results, SDEdit strength 0\.60 \(3 of 5 ddim steps\)/);
      for (const r of edited.slice(1)) assert.ok(r.some((v, i) => Math.abs(v - ink[i]) > 8));
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });

  it('Fig. 7: rows of samples sharing x_t (the same at t = 0, different from x_T); Stop ends an action', {
    skip: NO_BROWSER,
  }, async () => {
    const { p, errors } = await open('?backend=wasm&auto=0&seed=0');
    try {
      await loadFolder(p, COND);
      await p.selectOption('#classPick', '1');
      await p.fill('#guidance', '2');
      await p.fill('#f7t', '1000, 500, 0, 1200');
      await p.click('#fig7');
      assert.match(await text(p, '#f7tMsg'), /"1200" is not a whole number from 0 to 1000/);
      assert.match(await text(p, '#f7Status'), /fix the fields/);
      await p.fill('#f7t', '1000, 750, 500, 250, 0');
      await p.fill('#f7k', '3');
      await p.fill('#f7steps', '20');
      await p.click('#fig7');
      await p.waitForSelector('body[data-fig7="1"]', { timeout: LONG });
      assert.match(await text(p, '#f7Status'), /^done: 5 rows of 3 samples .* seed 0, class 1, guidance w = 2\)/);
      const ts = await p.$$eval('#f7Out .f7row', (rs) => rs.map((r) => Number((r as HTMLElement).dataset.t)));
      assert.deepEqual([ts.length, ts[0], ts[4]], [5, 1000, 0]);
      assert.deepEqual(
        [...new Set(ts)].sort((a, b) => b - a),
        ts,
      ); // falling
      const rows = [];
      for (let r = 0; r < 5; r++) {
        const sel = `#f7Out .f7row:nth-child(${r + 1})`;
        rows.push({ xt: (await cells(p, `${sel} .f7xt`, 8))[0], out: await cells(p, `${sel} .f7samples`, 8) });
      }
      assert.ok(rows.every((r) => r.out.length === 3));
      assert.notDeepEqual(rows[0].out[0], rows[0].out[1]); // from x_T: different samples
      assert.deepEqual(rows[4].out, [rows[4].xt, rows[4].xt, rows[4].xt]); // from x_0: the sample itself
      // Stop: a long Fig. 7 and a long sampling run end within a step of the press
      for (const [button, field, done] of [
        ['#fig7', '#f7steps', /stopped (on the shared chain|in row)/],
        ['#sample', '#steps', /stopped at step \d+$/],
      ] as const) {
        await p.fill(field, '1000');
        await p.click(button);
        await until(p, button === '#fig7' ? '#f7Status' : '#status', /step [1-9]/);
        assert.equal(await p.isEnabled('#stop'), true);
        assert.equal(await p.isEnabled('#finish'), false); // one action at a time
        await p.click('#stop');
        await until(p, button === '#fig7' ? '#f7Status' : '#status', done);
        assert.equal(await p.isEnabled('#stop'), false);
        assert.equal(await p.isEnabled(button), true);
      }
      assert.equal(await p.evaluate('document.body.dataset.fig7'), '1');
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });
});
