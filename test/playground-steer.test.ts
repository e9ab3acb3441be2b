// The playground page, steering and its worker: strokes drawn on the pad are finished by RePaint (the kept pixels come
// back exactly) and cleaned up by SDEdit (strength 0 returns them); Fig. 7's rows share x_t; on wasm the model runs in
// a Web Worker, so no main-thread task is over 100 ms while the page samples, interpolates or trains, and Stop ends
// each of them within one step.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LONG, NO_BROWSER, usePlayground } from './playground-harness.js';

describe('playground: steering and the worker', () => {
  const { state, COND, open, text, sampled, interpolated, cells, loadFolder, until } = usePlayground();

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

  it('on wasm the page never freezes: no main-thread task over 100 ms in sampling, interpolation, training; Stop', {
    skip: NO_BROWSER,
  }, async () => {
    const p = await state.browser!.newPage({ viewport: { width: 1000, height: 900 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    // every main-thread task over 50 ms (the Long Tasks API), from the page's first script on
    await p.addInitScript(() => {
      const w = window as unknown as { longTasks: { start: number; ms: number }[] };
      w.longTasks = [];
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) w.longTasks.push({ start: e.startTime, ms: e.duration });
      }).observe({ type: 'longtask', buffered: true });
    });
    try {
      await p.goto(`${state.url}?backend=wasm&auto=0&model=mnist&num=8&steps=10`);
      await p.waitForSelector('body[data-ready="1"]', { timeout: LONG });
      assert.match(await text(p, '#backend'), /^wasm, in a worker/);
      const t0 = await p.evaluate(() => performance.now());
      await p.click('#sample');
      await sampled(p, 1);
      assert.match(await text(p, '#status'), /^done: 8 samples, ddim, 10 steps/);
      await p.fill('#it', '15');
      await p.click('#interp');
      await interpolated(p);
      assert.match(await text(p, '#interpStatus'), /^lambda = 0, 1\/7, \.\.\., 1 from t = 15/);
      await p.fill('#trainSteps', '5');
      await p.click('#train');
      await p.waitForSelector('body[data-trained="1"]', { timeout: LONG });
      const long = await p.evaluate(
        (t0) =>
          (window as unknown as { longTasks: { start: number; ms: number }[] }).longTasks.filter((e) => e.start >= t0),
        t0,
      );
      assert.ok(
        long.every((e) => e.ms <= 100),
        `main-thread tasks over 100 ms: ${JSON.stringify(long)}`,
      );
      // the observer does see a task that holds the main thread (a timer's task of 150 ms)
      const t1 = await p.evaluate(
        () =>
          new Promise<number>((r) =>
            setTimeout(() => {
              const t = performance.now();
              while (performance.now() < t + 150);
              r(t);
            }, 0),
          ),
      );
      await p.waitForFunction(
        (t1) =>
          (window as unknown as { longTasks: { start: number; ms: number }[] }).longTasks.some(
            (e) => e.start >= t1 - 50 && e.ms >= 150,
          ),
        t1,
      );
      // Stop, pressed while the page shows step k, ends the run at step k + 1 at the latest
      const pressAt = (statusSel: string, stopSel: string) =>
        p.evaluate(
          ([s, b]) => {
            const shown = Number(/step (\d+)/.exec(document.querySelector(s)!.textContent ?? '')?.[1]);
            (document.querySelector(b) as HTMLButtonElement).click();
            return shown;
          },
          [statusSel, stopSel],
        );
      for (const [button, field, statusSel, stopSel, done] of [
        ['#sample', '#steps', '#status', '#stop', /^stopped at step (\d+)$/],
        ['#interp', '#it', '#interpStatus', '#stop', /^stopped at step (\d+) \/ 901$/],
        ['#train', '#trainSteps', '#trainStatus', '#trainStop', /^stopped after (\d+) steps/],
      ] as const) {
        await p.fill(field, button === '#interp' ? '900' : '1000');
        await p.click(button);
        await until(p, statusSel, /step [2-9]/);
        const shown = await pressAt(statusSel, stopSel);
        await until(p, statusSel, done);
        const at = Number(done.exec(await text(p, statusSel))?.[1]);
        assert.ok(shown >= 2 && at >= shown && at <= shown + 1, `${button}: Stop at step ${shown}, ended at ${at}`);
        assert.equal(await p.isEnabled(button), true);
      }
      // picking another model mid-run stops the run, then loads it; no action starts while it loads
      await p.fill('#steps', '1000');
      await p.click('#sample');
      await until(p, '#status', /step [1-9]/);
      await p.selectOption('#modelPick', 'fashion');
      assert.equal(await p.isEnabled('#sample'), false);
      await until(p, '#modelStatus', /model fashion loaded|error/);
      assert.match(await text(p, '#modelStatus'), /^model fashion loaded/);
      assert.match(await text(p, '#status'), /^stopped at step \d+$/);
      assert.equal(await p.isEnabled('#sample'), true);
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  });
});
