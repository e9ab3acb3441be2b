// Builds the native oneDNN backend during `npm ci`. A failed build never fails the install: the engine then runs on
// the reference backend and says how to enable the native one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

if (process.env.DDPM_SKIP_NATIVE === '1') {
  console.log('ddpm: DDPM_SKIP_NATIVE=1, native backend not built');
  process.exit(0);
}
const hasDnnl = ['/usr/include/dnnl.hpp', '/usr/local/include/dnnl.hpp'].some((p) => existsSync(p)) || !!process.env.DNNL_ROOT;
if (!hasDnnl) {
  console.log('ddpm: oneDNN headers not found; native backend not built (install libdnnl-dev, then run `npm rebuild ddpm` or `npx node-gyp rebuild`)');
  process.exit(0);
}
// npm sets npm_config_node_gyp while it runs install scripts; otherwise use the copy bundled with npm
const gyp = [process.env.npm_config_node_gyp, join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')]
  .find((p) => p && existsSync(p));
// build against the headers installed with this Node (no download), unless npm already says where they are
const prefix = join(dirname(process.execPath), '..');
const args = ['rebuild'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit' })
  : spawnSync('node-gyp', args, { stdio: 'inherit', shell: true });
if (r.status !== 0) {
  console.log('ddpm: native backend build failed; using the reference backend (needs g++ and libdnnl-dev)');
}
process.exit(0);
