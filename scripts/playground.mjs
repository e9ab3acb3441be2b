#!/usr/bin/env node
// `npm run playground`: bundles the playground page (esbuild) when its sources are newer than the bundle, serves it
// with the shipped models (listed at /models/index.json for the page's picker) on 127.0.0.1 and prints the URL.
// Options: --port N (default 8080; 0: any free port), --build-only.
import { existsSync, mkdirSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, isAbsolute, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'playground-site');
const ENTRY = join(ROOT, 'dist', 'playground', 'main.js');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);

if (!existsSync(ENTRY)) {
  console.error(`playground: ${ENTRY} is missing; run \`npm run build\` first (npm run playground does)`);
  process.exit(1);
}

/** Newest modification time of the compiled library and page. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

// the page (app.js) and its model worker (worker.js: the network and every long computation, off the main thread)
const bundle = join(OUT, 'app.js');
const workerBundle = join(OUT, 'worker.js');
const sources = Math.max(newest(join(ROOT, 'dist', 'src')), newest(join(ROOT, 'dist', 'playground')));
const stale = (f) => !existsSync(f) || statSync(f).mtimeMs < sources;
if (stale(bundle) || stale(workerBundle)) {
  mkdirSync(OUT, { recursive: true });
  for (const [entry, outfile] of [
    [ENTRY, bundle],
    [join(ROOT, 'dist', 'playground', 'worker.js'), workerBundle],
  ]) {
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      outfile,
      minify: true,
      logLevel: 'warning',
    });
    console.error(`playground: built ${outfile} (${(statSync(outfile).size / 1024).toFixed(0)} KiB)`);
  }
}
if (flag('--build-only')) process.exit(0);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
  '.png': 'image/png',
};
// every answer: no MIME sniffing; the page is cross-origin isolated (COOP/COEP), so a wasm backend may share memory
const COMMON = {
  'x-content-type-options': 'nosniff',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cache-control': 'no-cache',
};
const send = (res, status, type, body) => res.writeHead(status, { ...COMMON, 'content-type': type }).end(body);
let port = 0;
/**
 * Only names of this machine: a page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own Host and is
 * refused.
 */
const hostAllowed = (host) =>
  [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`].includes(String(host ?? '').toLowerCase());

function answer(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET and HEAD\n');
  if (!hostAllowed(req.headers.host))
    return send(res, 403, 'text/plain', 'this server answers only to 127.0.0.1, localhost and [::1]\n');
  let url, path;
  try {
    url = new URL(req.url ?? '/', 'http://localhost');
    path = decodeURIComponent(url.pathname);
  } catch {
    return send(res, 400, 'text/plain', 'malformed URL\n');
  }
  if (path.includes('\0')) return send(res, 400, 'text/plain', 'malformed URL\n');
  let file = null;
  if (path === '/' || path === '/index.html') file = join(ROOT, 'playground', 'index.html');
  else if (path === '/app.js') file = bundle;
  else if (path === '/worker.js') file = workerBundle;
  else if (path === '/models/index.json') {
    // the shipped model folders (the page's model picker)
    const names = readdirSync(join(ROOT, 'models'), { withFileTypes: true })
      .filter(
        (e) =>
          e.isDirectory() &&
          existsSync(join(ROOT, 'models', e.name, 'config.json')) &&
          existsSync(join(ROOT, 'models', e.name, 'diffusion_pytorch_model.safetensors')),
      )
      .map((e) => e.name)
      .sort();
    return send(res, 200, TYPES['.json'], JSON.stringify(names));
  } else if (path.startsWith('/models/')) {
    const rel = normalize(path.slice('/models/'.length));
    if (!rel.startsWith('..') && !isAbsolute(rel)) file = join(ROOT, 'models', rel);
  }
  if (!file || !existsSync(file) || !statSync(file).isFile()) return send(res, 404, 'text/plain', 'not found\n');
  send(
    res,
    200,
    TYPES[extname(file)] ?? 'application/octet-stream',
    req.method === 'HEAD' ? undefined : readFileSync(file),
  );
}

const server = createServer((req, res) => {
  try {
    answer(req, res);
  } catch (e) {
    console.error(`playground: ${req.method} ${String(req.url).slice(0, 200)}: ${e.message}`);
    if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
    else res.destroy();
  }
});
// a malformed request line or header: answer 400 and close, never throw
server.on('clientError', (_err, socket) => {
  if (socket.writable && !socket.destroyed)
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  else socket.destroy();
});

const portArg = value('--port', process.env.PORT ?? '8080');
const want = Number(portArg);
if (!/^\d+$/.test(String(portArg)) || want > 65535) {
  console.error(`playground: --port must be an integer in [0, 65535], got "${portArg ?? ''}"`);
  process.exit(1);
}
server.on('error', (e) => {
  if (e.code === 'EADDRINUSE' && want !== 0) {
    console.error(`playground: port ${want} is in use; taking a free one`);
    server.listen(0, '127.0.0.1');
  } else {
    console.error(`playground: ${e.message}`);
    process.exit(1);
  }
});
server.on('listening', () => {
  port = server.address().port;
  console.log(`playground: http://127.0.0.1:${server.address().port}/  (Ctrl-C to stop)`);
});
server.listen(want, '127.0.0.1');
