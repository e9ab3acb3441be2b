// Builds the native oneDNN backend during `npm ci`. A failed build does not fail the install (the engine then runs
// on the reference backend and says how to enable the native one) unless DDPM_REQUIRE_NATIVE=1, as in CI.
//
// The build targets the baseline of the machine's architecture (no -march): oneDNN picks AVX2 / AVX-512 / AMX
// kernels at run time, so the same build runs on any x86-64 and on arm64. DNNL_ROOT points at a oneDNN installed
// outside the system folders (headers in DNNL_ROOT/include, library in DNNL_ROOT/lib).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const required = process.env.DDPM_REQUIRE_NATIVE === '1';
function giveUp(msg) {
  console.log(`ddpm: ${msg}`);
  if (required) {
    console.error('ddpm: DDPM_REQUIRE_NATIVE=1: failing the install');
    process.exit(1);
  }
  process.exit(0);
}

if (process.env.DDPM_SKIP_NATIVE === '1') giveUp('DDPM_SKIP_NATIVE=1, native backend not built');
const root = process.env.DNNL_ROOT;
if (root && !existsSync(join(root, 'include', 'dnnl.hpp'))) giveUp(`DNNL_ROOT=${root} has no include/dnnl.hpp`);
const hasDnnl =
  !!root ||
  ['/usr/include/dnnl.hpp', '/usr/local/include/dnnl.hpp', '/opt/homebrew/include/dnnl.hpp'].some((p) => existsSync(p));
if (!hasDnnl)
  giveUp('oneDNN headers not found; native backend not built (install libdnnl-dev, then run `npm rebuild ddpm`)');
const env = { ...process.env };
if (root) {
  env.CXXFLAGS = `${env.CXXFLAGS ?? ''} -I${join(root, 'include')}`;
  env.LDFLAGS = `${env.LDFLAGS ?? ''} -L${join(root, 'lib')} -Wl,-rpath,${join(root, 'lib')}`;
}
// npm sets npm_config_node_gyp while it runs install scripts; otherwise use the copy bundled with npm
const gyp = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
].find((p) => p && existsSync(p));
// build against the headers installed with this Node (no download), unless npm already says where they are
const prefix = join(dirname(process.execPath), '..');
const args = ['rebuild', '--loglevel=error'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h')))
  args.push(`--nodedir=${prefix}`);
// the compiler's output is shown only when the build fails
const r = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { env, encoding: 'utf8' })
  : spawnSync('node-gyp', args, { env, encoding: 'utf8', shell: true });
if (r.status !== 0) {
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  giveUp('native backend build failed; using the reference backend (needs g++ and libdnnl-dev)');
}
const warnings = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => /warning:/.test(l) && !/gyp/.test(l));
for (const w of warnings) console.log(w);
console.log('ddpm: native backend built');
