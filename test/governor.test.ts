// The thread governor: it reads the kernel's CPU accounting right, counts the CPUs others leave free, and changes the
// native backend's team, whose cached oneDNN primitives follow the new size.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  type CpuTimes,
  ThreadGovernor,
  parseCpuList,
  parseCpuTimes,
  procReader,
  threadsFor,
} from '../src/backends/native/governor.js';
import { NATIVE_SKIP, ROOT } from './helpers.js';

const STAT = `cpu  300 0 100 500 20 0 0 0 0 0
cpu0 100 0 50 200 10 0 0 0 0 0
cpu1 150 0 30 250 10 0 0 0 0 0
cpu2 50 0 20 50 0 0 0 0 0 0
intr 12345
`;

describe('thread governor', () => {
  it('parses allowed-CPU lists, and refuses what it cannot read', () => {
    assert.deepEqual(parseCpuList('0-3,6\n'), [0, 1, 2, 3, 6]);
    assert.deepEqual(parseCpuList('2'), [2]);
    assert.throws(() => parseCpuList('0-a'), /Cpus_allowed_list: expected ranges/);
  });

  it('sums the allowed CPUs of /proc/stat and reads utime + stime after a command name with spaces', () => {
    const self = '4242 (node (a) b) R 1 2 3 4 5 6 7 8 9 10 77 23 0 0 20 0 3';
    const t = parseCpuTimes(STAT, self, [0, 2]);
    // cpu0: 360 jiffies, 200 idle, 10 iowait; cpu2: 120 jiffies, 50 idle
    assert.equal(t.total, 360 + 120);
    assert.equal(t.busy, 360 - 200 - 10 + (120 - 50));
    assert.equal(t.self, 100);
    assert.throws(() => parseCpuTimes(STAT, self, [0, 7]), /2 allowed CPUs, 1 found/);
  });

  it('counts the CPUs others leave free, between 1 and the maximum', () => {
    const at = (busy: number, total: number, self: number): CpuTimes => ({ busy, total, self });
    const t0 = at(0, 0, 0);
    // 2 CPUs over 100 jiffies each: others idle, we used 1.9 CPUs
    assert.equal(threadsFor(t0, at(190, 200, 190), 2, 2), 2);
    // one busy neighbour (100 jiffies) beside our 90
    assert.equal(threadsFor(t0, at(190, 200, 90), 2, 2), 1);
    // three neighbours take everything: still one thread
    assert.equal(threadsFor(t0, at(200, 200, 50), 2, 2), 1);
    // a neighbour at a quarter of a CPU leaves 1.75 free: two threads
    assert.equal(threadsFor(t0, at(25, 200, 0), 2, 2), 2);
    // 8 CPUs, others on 3: 5 threads, but never above the maximum
    assert.equal(threadsFor(t0, at(300, 800, 0), 8, 8), 5);
    assert.equal(threadsFor(t0, at(300, 800, 0), 8, 4), 4);
    // no time passed: the maximum
    assert.equal(threadsFor(t0, t0, 2, 2), 2);
  });

  it('re-reads after its interval only (the first one shorter) and applies a changed count once', () => {
    let clock = 0;
    let times: CpuTimes = { busy: 0, total: 0, self: 0 };
    const applied: number[] = [];
    const g = new ThreadGovernor(
      2,
      (n) => applied.push(n),
      { cpus: 2, read: () => times },
      () => clock,
      500,
    );
    times = { busy: 20, total: 20, self: 0 }; // a neighbour takes everything
    clock = 50;
    g.tick();
    assert.deepEqual(applied, [], 'read before the first interval (100 ms)');
    clock = 100;
    g.tick();
    assert.deepEqual(applied, [1]);
    times = { busy: 120, total: 120, self: 50 };
    clock = 400;
    g.tick();
    assert.deepEqual(applied, [1], 'read again before 500 ms');
    clock = 600;
    g.tick();
    assert.deepEqual(applied, [1], 'the same count is not applied again');
    times = { busy: 200, total: 220, self: 130 }; // the neighbour left
    clock = 1100;
    g.tick();
    assert.deepEqual(applied, [1, 2]);
    assert.equal(g.current, 2);
  });

  it('reads this machine where /proc describes it', { skip: process.platform !== 'linux' && 'not Linux' }, () => {
    const r = procReader();
    assert.ok(r, 'procReader found /proc');
    assert.ok(r.cpus >= 1);
    const t = r.read();
    assert.ok(t.total > 0 && t.busy >= 0 && t.busy <= t.total && t.self >= 0);
  });

  it('a governed native backend rebuilds its primitives for the new team and stays correct', {
    skip: NATIVE_SKIP,
  }, () => {
    const script = `
      import { NativeBackend, loadAddon } from ${JSON.stringify(join(ROOT, 'dist/src/backends/native/index.js'))};
      const a = loadAddon().addon;
      const nb = new NativeBackend(a, 2);
      const p = { stride: 1, padTop: 1, padBottom: 1, padLeft: 1, padRight: 1 };
      const xs = [2, 16, 8, 8], ws = [16, 16, 3, 3];
      const x = Float32Array.from({ length: 2048 }, (_, i) => Math.sin(i));
      const w = Float32Array.from({ length: 2304 }, (_, i) => Math.cos(i));
      const y2 = nb.readSync(nb.conv2d(x, xs, w, ws, null, p));
      const before = a.info().convCacheEntries;
      a.setThreads(1);
      const after = a.info();
      const y1 = nb.readSync(nb.conv2d(x, xs, w, ws, null, p));
      let worst = 0;
      for (let i = 0; i < y1.length; i++) worst = Math.max(worst, Math.abs(y1[i] - y2[i]));
      console.log(JSON.stringify({ before, entriesAfter: after.convCacheEntries, threads: after.threads, worst }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.ok(o.before >= 1);
    assert.equal(o.entriesAfter, 0, 'a new team size drops the cached primitives');
    assert.equal(o.threads, 1);
    assert.ok(o.worst < 1e-4, `conv after the change differs by ${o.worst}`);
  });
});
