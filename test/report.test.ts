// `ddpm report`: the page for a real (tiny) run renders in headless Chromium, its charts are drawn and its images load.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, writeTinyIdx } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER =
  existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1'
    ? false
    : `${CHROMIUM} is absent (apt-get install -y chromium)`;

describe('ddpm report', () => {
  it('renders in headless Chromium with its charts and images', { skip: NO_BROWSER }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-report-'));
    const data = writeTinyIdx(dir);
    const run = join(dir, 'run');
    const cli = (...a: string[]) =>
      spawnSync(process.execPath, [CLI, '--backend', 'reference', ...a], { encoding: 'utf8' });
    let r = cli(
      'train',
      '--data',
      data,
      '--out',
      run,
      '--preset',
      'tiny',
      '--steps',
      '6',
      '--batch',
      '4',
      '--sample-every',
      '3',
      '--sample-steps',
      '5',
      '--checkpoint-every',
      '3',
    );
    assert.equal(r.status, 0, r.stderr);
    r = cli(
      'eval',
      'bpd',
      '--model',
      run,
      '--data',
      data,
      '--split',
      'train',
      '-n',
      '2',
      '--t-stride',
      '100',
      '--out',
      join(run, 'bpd.json'),
    );
    assert.equal(r.status, 0, r.stderr);
    r = cli('report', run);
    assert.equal(r.status, 0, r.stderr);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    assert.ok(!/src="(?!data:)/.test(html), 'self-contained: every image is a data URI');
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      await page.goto(pathToFileURL(join(run, 'report.html')).href);
      assert.match((await page.textContent('h1')) ?? '', /ddpm run run/);
      const facts = await page.evaluate(() => ({
        svgs: document.querySelectorAll('svg polyline').length,
        images: [...document.images].map((i) => ({ ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
        headings: [...document.querySelectorAll('h2')].map((h) => h.textContent),
      }));
      assert.ok(facts.svgs >= 6, `${facts.svgs} chart lines drawn`);
      assert.equal(facts.images.length, 2, 'the grids of steps 3 and 6');
      assert.ok(
        facts.images.every((i) => i.ok),
        JSON.stringify(facts.images),
      );
      assert.ok(
        facts.headings.some((h) => /Bits\/dim/.test(h ?? '')),
        JSON.stringify(facts.headings),
      );
    } finally {
      await browser.close();
    }
  });

  it('a run folder with script in every string and number field renders with no script run', {
    skip: NO_BROWSER,
  }, async () => {
    const run = mkdtempSync(join(tmpdir(), 'ddpm-report-hostile-'));
    const X =
      '<script>window.__pwned=(window.__pwned||0)+1</script><img src=x onerror="window.__pwned=(window.__pwned||0)+1">';
    const metrics = [
      {
        step: X,
        loss: X,
        loss_q: [X, X, X, X],
        grad_norm: X,
        lr: X,
        ema_decay: X,
        images_per_s: X,
        time_s: X,
        quality: { fd: X, kid: X },
      },
      { step: 2, loss: 0.5, loss_q: [0.1, X, null, 0.2], grad_norm: 1, time_s: X },
      { step: 3, loss: 0.4, loss_q: [0.1, 0.2, 0.3, 0.2], grad_norm: 1, time_s: 3, quality: { fd: 2 } },
    ];
    writeFileSync(join(run, 'metrics.jsonl'), `${metrics.map((m) => JSON.stringify(m)).join('\n')}\n`);
    writeFileSync(
      join(run, 'bpd.json'),
      JSON.stringify({
        total: 3.5,
        prior: X,
        decoder: X,
        kl: X,
        images: X,
        clip: X,
        terms: [
          { t: X, bpd: X },
          { t: 1, bpd: 0.1 },
        ],
        rateDistortion: [{ rate: X, rmse: X }],
      }),
    );
    writeFileSync(join(run, 'bpd2.json'), JSON.stringify({ total: 3.5, terms: [] }));
    writeFileSync(
      join(run, 'quality.json'),
      JSON.stringify({
        fd: 1.5,
        images: X,
        reference: X,
        net: X,
        kid: { mean: X, stderr: X },
        is: { mean: X, std: X },
      }),
    );
    writeFileSync(join(run, `${X.replace(/\//g, '')}.json`.slice(0, 200)), JSON.stringify({ fd: 2 }));
    writeFileSync(join(run, 'null.json'), 'null');
    writeFileSync(join(run, 'config.json'), JSON.stringify({ sample_size: X, _class_name: X }));
    mkdirSync(join(run, 'checkpoints', 'step-0000003'), { recursive: true });
    writeFileSync(
      join(run, 'checkpoints', 'step-0000003', 'trainer_state.json'),
      JSON.stringify({ step: X, options: { preset: X, lr: X } }),
    );
    const r = spawnSync(process.execPath, [CLI, 'report', run], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    assert.ok(!html.includes('<script>window'), 'a value was written raw');
    assert.ok(!/<img src=x/i.test(html), 'a value was written raw');
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(pathToFileURL(join(run, 'report.html')).href);
      await page.waitForTimeout(200);
      assert.equal(await page.evaluate('window.__pwned'), undefined, 'script from the run folder ran');
      assert.deepEqual(errors, []);
      const text = (await page.textContent('body')) ?? '';
      assert.ok(text.includes('<script>window.__pwned'), 'the hostile values are shown as text');
      assert.ok(
        (await page.evaluate(() => document.querySelectorAll('svg polyline').length)) >= 1,
        'the numeric lines still draw',
      );
    } finally {
      await browser.close();
    }
  });
});
