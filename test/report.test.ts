// `ddpm report`: the page for a real (tiny) run renders in headless Chromium, its charts are drawn and its images load.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, writeTinyIdx } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const NO_BROWSER = existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1' ? false : `${CHROMIUM} is absent (apt-get install -y chromium)`;

describe('ddpm report', () => {
  it('renders in headless Chromium with its charts and images', { skip: NO_BROWSER }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-report-'));
    const data = writeTinyIdx(dir);
    const run = join(dir, 'run');
    const cli = (...a: string[]) => spawnSync(process.execPath, [CLI, '--backend', 'reference', ...a], { encoding: 'utf8' });
    let r = cli('train', '--data', data, '--out', run, '--preset', 'tiny', '--steps', '6', '--batch', '4', '--sample-every', '3', '--sample-steps', '5', '--checkpoint-every', '3');
    assert.equal(r.status, 0, r.stderr);
    r = cli('eval', 'bpd', '--model', run, '--data', data, '--split', 'train', '-n', '2', '--t-stride', '100', '--out', join(run, 'bpd.json'));
    assert.equal(r.status, 0, r.stderr);
    r = cli('report', run);
    assert.equal(r.status, 0, r.stderr);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    assert.ok(!/src="(?!data:)/.test(html), 'self-contained: every image is a data URI');
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
    try {
      const page = await browser.newPage();
      await page.goto(pathToFileURL(join(run, 'report.html')).href);
      assert.match(await page.textContent('h1') ?? '', /ddpm run run/);
      const facts = await page.evaluate(() => ({
        svgs: document.querySelectorAll('svg polyline').length,
        images: [...document.images].map((i) => ({ ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
        headings: [...document.querySelectorAll('h2')].map((h) => h.textContent),
      }));
      assert.ok(facts.svgs >= 6, `${facts.svgs} chart lines drawn`);
      assert.equal(facts.images.length, 2, 'the grids of steps 3 and 6');
      assert.ok(facts.images.every((i) => i.ok), JSON.stringify(facts.images));
      assert.ok(facts.headings.some((h) => /Bits\/dim/.test(h ?? '')), JSON.stringify(facts.headings));
    } finally {
      await browser.close();
    }
  });
});
