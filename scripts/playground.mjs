#!/usr/bin/env node
// `npm run playground`: bundles the playground page (esbuild) when its sources are newer than the bundle, serves it
// with the shipped models (listed at /models/index.json for the page's picker) on 127.0.0.1 and prints the URL.
// Options: --port N (default 8080; 0: any free port), --build-only.
import { existsSync, mkdirSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize } from 'node:path';
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

const bundle = join(OUT, 'app.js');
const sources = Math.max(newest(join(ROOT, 'dist', 'src')), newest(join(ROOT, 'dist', 'playground')));
if (!existsSync(bundle) || statSync(bundle).mtimeMs < sources) {
  mkdirSync(OUT, { recursive: true });
  await build({ entryPoints: [ENTRY], bundle: true, platform: 'browser', format: 'esm', outfile: bundle, minify: true, logLevel: 'warning' });
  console.error(`playground: built ${bundle} (${(statSync(bundle).size / 1024).toFixed(0)} KiB)`);
}
if (flag('--build-only')) process.exit(0);

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.json': 'application/json', '.safetensors': 'application/octet-stream', '.png': 'image/png' };
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  let file = null;
  if (url.pathname === '/' || url.pathname === '/index.html') file = join(ROOT, 'playground', 'index.html');
  else if (url.pathname === '/app.js') file = bundle;
  else if (url.pathname === '/models/index.json') {
    // the shipped model folders (the page's model picker)
    const names = readdirSync(join(ROOT, 'models'), { withFileTypes: true })
      .filter((e) => e.isDirectory() && existsSync(join(ROOT, 'models', e.name, 'config.json')) && existsSync(join(ROOT, 'models', e.name, 'diffusion_pytorch_model.safetensors')))
      .map((e) => e.name)
      .sort();
    res.writeHead(200, { 'content-type': TYPES['.json'], 'cache-control': 'no-cache' }).end(JSON.stringify(names));
    return;
  }
  else if (url.pathname.startsWith('/models/')) {
    const rel = normalize(decodeURIComponent(url.pathname.slice('/models/'.length)));
    if (!rel.startsWith('..')) file = join(ROOT, 'models', rel);
  }
  if (!file || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${url.pathname}`);
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' }).end(readFileSync(file));
});

const want = Number(value('--port', process.env.PORT ?? '8080'));
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
  console.log(`playground: http://127.0.0.1:${server.address().port}/  (Ctrl-C to stop)`);
});
server.listen(want, '127.0.0.1');
