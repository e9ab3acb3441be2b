// The playground page: `npm run playground`'s server starts, and in headless Chromium with WebGPU (SwiftShader) the
// page samples the shipped MNIST model, renders the chain and the x0 grid, and its picker loads another shipped model.
// On wasm: a phone-width viewport has no horizontal overflow; settings in the address that the page cannot use, bad
// fields and a folder without a model are answered next to their controls while sampling still works; the loss chart
// has axes; a class-conditional model (a tiny one with a null class, from test/goldens) gets the class picker and
// guidance, and the labels reach the network. (playground-steer.test.ts: the pad, Fig. 7, Stop, a page that never
// freezes.)
// DDPM_UPDATE_SCREENSHOTS=1 rewrites the screenshot in docs/ that the README shows.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.js';
import { LONG, NO_BROWSER, usePlayground } from './playground-harness.js';

const SHOT = join(ROOT, 'docs', 'playground.png');

describe('playground', () => {
  const { COND, GOLDEN_COND, open, text, scrollWidth, sampled, interpolated, cells, loadFolder } = usePlayground();

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
});
