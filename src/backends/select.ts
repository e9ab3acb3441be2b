// Backend selection (Node-only): native when the addon is built, else reference. DDPM_BACKEND or an explicit
// name overrides the choice.
import type { Backend } from '../engine/backend.js';
import { setBackend } from '../engine/tensor.js';
import { ReferenceBackend } from './reference/index.js';
import { NativeBackend, loadAddon } from './native/index.js';

export type BackendName = 'native' | 'reference';

let warned = false;

export function createBackend(name: BackendName): Backend {
  if (name === 'reference') return new ReferenceBackend();
  const { addon, error } = loadAddon();
  if (!addon) throw new Error(`backend native: the addon is not available (${error}); install libdnnl-dev and run \`npm rebuild\``);
  return new NativeBackend(addon);
}

/** Chooses and installs the engine's backend; returns it. */
export function useBackend(name?: string): Backend {
  const want = name ?? process.env.DDPM_BACKEND;
  if (want !== undefined && want !== 'native' && want !== 'reference')
    throw new Error(`backend: unknown backend "${want}" (expected "native" or "reference")`);
  let b: Backend;
  if (want) b = createBackend(want);
  else if (loadAddon().addon) b = createBackend('native');
  else if (process.env.DDPM_REQUIRE_NATIVE === '1') {
    throw new Error(`backend: DDPM_REQUIRE_NATIVE=1 but the native addon is not available (${loadAddon().error || 'not built'}); install libdnnl-dev and run \`npm rebuild\``);
  } else {
    if (!warned) console.error('ddpm: native backend not built, using the slow reference backend (apt-get install -y libdnnl-dev, then npm rebuild)');
    warned = true;
    b = new ReferenceBackend();
  }
  setBackend(b);
  return b;
}
