// The layering of the README: each folder imports only folders below it; the core imports nothing from Node.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from './helpers.js';

const SRC = join(ROOT, 'src');
/** Rank of each folder, bottom first (the README's layering table); a file may import only equal or lower ranks. */
const RANK: Record<string, number> = {
  engine: 0,
  'backends/reference': 1,
  'backends/native': 1,
  'backends/webgpu': 1,
  'backends/wasm': 1,
  backends: 2,
  diffusion: 3,
  'diffusion/samplers': 3,
  model: 3,
  io: 4,
  data: 5,
  training: 6,
  eval: 6,
  cli: 7,
  'cli/commands': 7,
  '.': 8,
};
const CORE = ['engine', 'backends/reference', 'backends/webgpu', 'backends/wasm', 'diffusion', 'model'];

function folderOf(file: string): string {
  const rel = relative(SRC, dirname(file)).replace(/\\/g, '/');
  return rel === '' ? '.' : rel;
}

function sources(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }))
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') && out.push(join(d, e.name));
  };
  walk(SRC);
  return out;
}

const importsOf = (f: string) =>
  [...readFileSync(f, 'utf8').matchAll(/^\s*(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]);

describe('layering', () => {
  it('every folder has a rank', () => {
    for (const f of sources()) assert.ok(folderOf(f) in RANK, `${folderOf(f)} has no rank in the layering table`);
  });

  it('no file imports a folder above its own', () => {
    for (const f of sources()) {
      const from = folderOf(f);
      for (const spec of importsOf(f)) {
        if (!spec.startsWith('.')) continue;
        const to = folderOf(resolve(dirname(f), spec));
        assert.ok(RANK[to] <= RANK[from], `${relative(ROOT, f)} (${from}) imports ${spec} (${to}), a higher layer`);
      }
    }
  });

  it('no backend imports another (but wasm the reference loops), nor the engine a backend', () => {
    for (const f of sources()) {
      const from = folderOf(f);
      for (const spec of importsOf(f)) {
        if (!spec.startsWith('.')) continue;
        const to = folderOf(resolve(dirname(f), spec));
        if (from === 'backends/native') assert.notEqual(to, 'backends/reference', relative(ROOT, f));
        // the wasm backend runs the reference backend's loops for everything but its GEMMs; no other backend imports
        // another
        const allowed = from === 'backends/wasm' && to === 'backends/reference';
        if (from.startsWith('backends/') && to.startsWith('backends/') && !allowed)
          assert.equal(to, from, `${relative(ROOT, f)}: one backend imports another`);
        if (from === 'engine') assert.ok(!to.startsWith('backends'), `${relative(ROOT, f)} imports ${spec}`);
      }
    }
  });

  it(
    'no code above the engine touches a backend buffer (.storage), wraps one (new Tensor) or reads one ' +
      'synchronously',
    () => {
      for (const f of sources()) {
        const from = folderOf(f);
        if (from === 'engine' || from.startsWith('backends')) continue;
        const text = readFileSync(f, 'utf8');
        assert.doesNotMatch(text, /\.storage\b/, `${relative(ROOT, f)} reads a tensor's storage`);
        assert.doesNotMatch(text, /new Tensor\(/, `${relative(ROOT, f)} wraps a buffer itself (use ops.fromArray)`);
        // synchronous reads work on CPU backends only; everything above the engine reads with await data()
        assert.doesNotMatch(
          text,
          /\.dataSync\(|\.item\(\)/,
          `${relative(ROOT, f)} reads values synchronously (use await tensor.data())`,
        );
      }
    },
  );

  it('the core (engine, reference, WebGPU and wasm backends, diffusion, model) imports nothing from Node', () => {
    for (const f of sources()) {
      if (!CORE.includes(folderOf(f))) continue;
      for (const spec of importsOf(f)) assert.ok(spec.startsWith('.'), `${relative(ROOT, f)} imports "${spec}"`);
    }
  });

  it('everything the browser entry reaches (the training core included) imports nothing from Node', () => {
    const seen = new Set<string>();
    const visit = (f: string) => {
      if (seen.has(f)) return;
      seen.add(f);
      for (const spec of importsOf(f)) {
        assert.ok(spec.startsWith('.'), `${relative(ROOT, f)} imports "${spec}" (reached from src/browser.ts)`);
        visit(resolve(dirname(f), spec).replace(/\.js$/, '.ts'));
      }
    };
    visit(join(SRC, 'browser.ts'));
    assert.ok(seen.has(join(SRC, 'training', 'core.ts')), 'the browser entry exports the training core');
  });
});
