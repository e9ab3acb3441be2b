// The native addon's process-wide state: a bounded convolution cache, one owning thread, a build that can be
// required to succeed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { NATIVE_SKIP, ROOT } from './helpers.js';

describe('native addon', { skip: NATIVE_SKIP }, () => {
  it('the convolution primitive cache is bounded (LRU): evicted shapes are rebuilt and stay correct', () => {
    const script = `
      import { NativeBackend, loadAddon } from ${JSON.stringify(join(ROOT, 'dist/src/backends/native/index.js'))};
      import { ReferenceBackend } from ${JSON.stringify(join(ROOT, 'dist/src/backends/reference/index.js'))};
      const a = loadAddon().addon, nb = new NativeBackend(a), rb = new ReferenceBackend();
      const p = { stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1 };
      let worst = 0, most = 0;
      for (const round of [0, 1])
        for (const hw of [5, 6, 7, 8, 9]) {
          const xs = [2, 3, hw, hw], ws = [4, 3, 3, 3];
          const x = Float32Array.from({ length: 2 * 3 * hw * hw }, (_, i) => Math.sin(i + round));
          const w = Float32Array.from({ length: 108 }, (_, i) => Math.cos(i));
          const y1 = nb.conv2d(x, xs, w, ws, null, p), y2 = rb.conv2d(x, xs, w, ws, null, p);
          for (let i = 0; i < y1.length; i++) worst = Math.max(worst, Math.abs(y1[i] - y2[i]));
          most = Math.max(most, a.info().convCacheEntries);
        }
      console.log(JSON.stringify({ worst, most, limit: a.info().convCacheLimit }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, DDPM_CONV_CACHE: '2' },
    });
    assert.equal(r.status, 0, r.stderr);
    const { worst, most, limit } = JSON.parse(r.stdout);
    assert.equal(limit, 2);
    assert.ok(most <= 2, `cache held ${most} entries`);
    assert.ok(worst < 1e-4, `native vs reference ${worst}`);
  });

  it('a DDPM_CONV_CACHE that is not a positive integer is warned about and the default kept', () => {
    const script = `
      import { loadAddon } from ${JSON.stringify(join(ROOT, 'dist/src/backends/native/index.js'))};
      console.log(loadAddon().addon.info().convCacheLimit);`;
    for (const bad of ['abc', '0', '12x']) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, DDPM_CONV_CACHE: bad },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), '64');
      assert.match(r.stderr, new RegExp(`DDPM_CONV_CACHE="${bad}" is not a positive integer; using the default 64`));
    }
  });

  it('a second thread loading the addon while the main thread owns it gets a clear error, not a crash', async () => {
    const addonPath = join(ROOT, 'build', 'Release', 'ddpm_native.node');
    const w = new Worker(
      `
      const { parentPort } = require('node:worker_threads');
      try { require(${JSON.stringify(addonPath)}); parentPort.postMessage('loaded'); }
      catch (e) { parentPort.postMessage('error: ' + e.message); }`,
      { eval: true },
    );
    const msg = await new Promise<string>((resolve) => w.on('message', resolve));
    await w.terminate();
    assert.match(msg, /error: native: the addon is already in use by another thread/);
  });
});

describe('native build', () => {
  it('with DDPM_REQUIRE_NATIVE=1 an unbuildable addon fails the install (CI), otherwise it only says so', () => {
    const env = { ...process.env, DNNL_ROOT: '/nonexistent-onednn' };
    const strict = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-native.mjs')], {
      encoding: 'utf8',
      env: { ...env, DDPM_REQUIRE_NATIVE: '1' },
    });
    assert.equal(strict.status, 1);
    assert.match(
      strict.stdout + strict.stderr,
      /DNNL_ROOT=\/nonexistent-onednn has no include\/dnnl.hpp[\s\S]*failing the install/,
    );
    const lax = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-native.mjs')], {
      encoding: 'utf8',
      env: { ...env, DDPM_REQUIRE_NATIVE: '0' },
    });
    assert.equal(lax.status, 0);
  });
});

describe('native threads', { skip: NATIVE_SKIP }, () => {
  const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const threads = (args: string[], env: Record<string, string>, pre: string[] = []) => {
    const e = { ...process.env, ...env };
    delete e.DDPM_THREADS;
    delete e.OMP_NUM_THREADS;
    const r = pre.length
      ? spawnSync(pre[0], [...pre.slice(1), process.execPath, CLI, ...args, 'info'], {
          encoding: 'utf8',
          env: { ...e, ...env },
        })
      : spawnSync(process.execPath, [CLI, ...args, 'info'], { encoding: 'utf8', env: { ...e, ...env } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(/backend +native (\{.*\})/.exec(r.stdout)![1]).threads;
  };
  it('follow --threads, then DDPM_THREADS, then the CPUs the process may use (affinity)', () => {
    assert.equal(threads(['--threads', '1'], {}), 1);
    assert.equal(threads([], { DDPM_THREADS: '1' }), 1);
    if (spawnSync('taskset', ['-c', '0', 'true']).status === 0)
      assert.equal(threads([], {}, ['taskset', '-c', '0']), 1);
    const bad = spawnSync(process.execPath, [CLI, 'info'], {
      encoding: 'utf8',
      env: { ...process.env, DDPM_THREADS: 'lots' },
    });
    assert.match(bad.stderr, /DDPM_THREADS: expected a whole number from 1 to 4096, got "lots"/);
  });
});

describe('native builds', { skip: NATIVE_SKIP }, () => {
  it('the baseline, x86-64-v3 and x86-64-v4 builds (the best the CPU runs is chosen) compute the same', () => {
    const script = `
      import { NativeBackend, loadAddon } from ${JSON.stringify(join(ROOT, 'dist/src/backends/native/index.js'))};
      const a = loadAddon().addon, b = new NativeBackend(a, 1);
      const x = Float32Array.from({ length: 2 * 8 * 9 * 9 }, (_, i) => Math.sin(i * 0.37) * 3);
      const g = Float32Array.from({ length: 8 }, (_, i) => 1 + i / 10);
      const be = Float32Array.from({ length: 8 }, (_, i) => i / 20 - 0.2);
      const y = b.groupNorm(x, [2, 8, 9, 9], g, be, 4, 1e-6, true).y;
      const s = b.softmax(x, 16, 81), e = b.unary('exp', x);
      console.log(JSON.stringify({ build: a.info().build, y: Array.from(y), s: Array.from(s), e: Array.from(e) }));`;
    const run = (env: string) => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, DDPM_NATIVE_BUILD: env },
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    const base = run('baseline');
    assert.equal(base.build, 'baseline');
    for (const level of ['v3', 'v4', '']) {
      const other = run(level);
      if (level)
        assert.ok(
          other.build === `x86-64-${level}` || other.build !== 'baseline' || level === 'v3',
          `asked for ${level}, got ${other.build}`,
        );
      for (const k of ['y', 's', 'e'])
        base[k].forEach((v: number, i: number) =>
          assert.ok(
            Math.abs(v - other[k][i]) <= 1e-5 * Math.max(1, Math.abs(v)),
            `${k}[${i}]: ${v} vs ${other[k][i]} (${other.build})`,
          ),
        );
    }
    const bad = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, DDPM_NATIVE_BUILD: 'v9' },
    });
    assert.notEqual(bad.status, 0);
  });
});
