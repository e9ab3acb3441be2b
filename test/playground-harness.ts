// The playground tests' harness: `npm run playground`'s server on a free port, headless Chromium with WebGPU on
// SwiftShader, a tiny class-conditional model folder (from test/goldens, its last class the null class: classes 0-2),
// and the helpers that open a page and wait for its messages. usePlayground() is called inside a describe.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const NO_BROWSER =
  existsSync(CHROMIUM) || process.env.DDPM_REQUIRE_BROWSER === '1'
    ? false
    : `${CHROMIUM} is absent (apt-get install -y chromium)`;
export const LONG = 240_000;

export function usePlayground() {
  const state: { server: ChildProcess | null; browser: Browser | null; url: string } = {
    server: null,
    browser: null,
    url: '',
  };
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
    state.server = s;
    let err = '';
    s.stderr.on('data', (d) => (err += d));
    state.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      s.stdout.on('data', (d) => {
        out += d;
        const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
        if (m) resolve(m[0]);
      });
      s.on('exit', (code) => reject(new Error(`playground server exited with ${code}: ${err}`)));
    });
    const { chromium } = await import('playwright-core');
    state.browser = await chromium.launch({
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
    await state.browser?.close();
    state.server?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A new page at `query`, its uncaught errors collected. */
  async function open(query: string, width = 1000): Promise<{ p: Page; errors: string[] }> {
    const p = await state.browser!.newPage({ viewport: { width, height: 900 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(`${state.url}${query}`);
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

  return { state, tmp, COND, GOLDEN_COND, open, text, scrollWidth, sampled, interpolated, cells, loadFolder, until };
}
