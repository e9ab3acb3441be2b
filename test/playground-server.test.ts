// The playground's HTTP server under hostile requests: malformed URLs and request lines, other Host names (DNS
// rebinding), path escapes, odd methods. Every request gets an answer and the server stays up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

async function startServer(): Promise<{ server: ChildProcess; port: number }> {
  const server = spawn(process.execPath, [join(ROOT, 'scripts', 'playground.mjs'), '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  server.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve(Number(m[1]));
    });
    server.on('exit', (code) => reject(new Error(`playground server exited with ${code}: ${err}`)));
  });
  return { server, port };
}

/** Sends raw bytes, returns the status code of the answer (0: the connection closed without one). */
function raw(port: number, request: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer in 10 s to ${JSON.stringify(String(request).slice(0, 120))}`));
    }, 10_000);
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve(m ? Number(m[1]) : 0);
    });
    s.end(request);
  });
}

const get = (port: number, path: string, host = `127.0.0.1:${port}`) =>
  raw(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

/** A deterministic generator (mulberry32), so that a failure can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('playground server', () => {
  let server: ChildProcess | undefined;
  let port = 0;
  before(async () => {
    ({ server, port } = await startServer());
  });
  after(() => server?.kill());

  it('answers malformed URLs with 400, foreign Host names with 403, escapes with 404, and sends nosniff', async () => {
    assert.equal(await get(port, '/models/%'), 400);
    assert.equal(await get(port, '/%E0%A4%A'), 400);
    assert.equal(await get(port, '/models/%00config.json'), 400);
    assert.equal(await get(port, '/', 'evil.example:80'), 403);
    assert.equal(await get(port, '/', `attacker.test:${port}`), 403);
    assert.equal(await get(port, '/models/..%2f..%2fpackage.json'), 404);
    assert.equal(await get(port, '/models/%2e%2e/package.json'), 404);
    assert.equal(await get(port, '/models/index.json', `localhost:${port}`), 200);
    assert.equal(await raw(port, `DELETE / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`), 405);
    assert.equal(await raw(port, 'GARBAGE\r\n\r\n'), 400);
    const r = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('cross-origin-opener-policy'), 'same-origin');
  });

  it('1,000 random and malformed requests: every one answered, the server still up', async () => {
    const rand = rng(16);
    const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)];
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    const pieces = [
      '/',
      '/models/',
      '%',
      '%2',
      '%zz',
      '%00',
      '%2e%2e',
      '..',
      '//',
      '\\',
      'index.json',
      'mnist',
      'config.json',
      '?a=%',
      '#x',
      '\u00e9',
      '%C0%AF',
      'app.js',
      ' ',
      '%E0%A4%A',
    ];
    const hosts = [`127.0.0.1:${port}`, `localhost:${port}`, 'evil.test', '', `[::1]:${port}`];
    const kinds: (() => string | Buffer)[] = [
      () =>
        `GET ${Array.from({ length: 1 + Math.floor(rand() * 6) }, () => pick(pieces)).join('')} HTTP/1.1\r\nHost: ` +
        `127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      () =>
        `GET /models/${Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(pieces)).join('')} ` +
        `HTTP/1.1\r\nHost: ${pick(hosts)}\r\nConnection: close\r\n\r\n`,
      () =>
        `${pick(['GET', 'POST', 'PUT', 'OPTIONS', 'HEAD', 'BREW', 'get'])} / HTTP/1.1\r\nHost: ` +
        `127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      () => Buffer.concat([bytes(1 + Math.floor(rand() * 200)), Buffer.from('\r\n\r\n')]),
      () =>
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${'X-A: b\r\n'.repeat(Math.floor(rand() * 50))}Bad Header ` +
        `Line\r\nConnection: close\r\n\r\n`,
      () =>
        `GET /${'a'.repeat(Math.floor(rand() * 20000))} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: ` +
        `close\r\n\r\n`,
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1000; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => raw(port, pick(kinds)())));
      for (const st of batch) statuses.set(st, (statuses.get(st) ?? 0) + 1);
    }
    assert.equal(statuses.get(0) ?? 0, 0, `requests closed without an answer: ${JSON.stringify([...statuses])}`);
    assert.equal(statuses.get(500) ?? 0, 0, `internal errors: ${JSON.stringify([...statuses])}`);
    assert.equal(server!.exitCode, null, 'the server exited');
    assert.equal(await get(port, '/models/index.json'), 200);
  });
});
