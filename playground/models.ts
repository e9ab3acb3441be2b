// Loading diffusers model folders into the playground: the shipped ones from the server, and a folder the visitor
// drops on the page or picks with the file chooser (each file named by its path in that folder).
import type * as lib from '../src/browser.js';
import { type FolderFiles, parseFolder } from './folder.js';
import { remote } from './remote.js';

export interface Loaded {
  name: string;
  /** its parameters (the network itself lives in the model worker: remote.ts) */
  parameterCount: number;
  diffusion: lib.GaussianDiffusion;
  cfg: lib.UNetConfig;
  /** Where it came from: a shipped folder, or the files the visitor gave (their paths, for the page to name). */
  source: 'shipped' | 'files';
  warnings: string[];
}

/** Checks a folder here, then has the worker build its network; returns it once the worker has. */
async function fromFolder(
  name: string,
  source: Loaded['source'],
  files: FolderFiles,
  paths = { config: `${name}/config.json`, scheduler: `${name}/scheduler_config.json` },
): Promise<Loaded> {
  const { diffusion, cfg, warnings } = parseFolder(name, source, files, paths);
  const parameterCount = await remote.load(name, source, files, paths);
  return { name, parameterCount, diffusion, cfg, source, warnings };
}

/** JSON.parse that names the file when it fails. */
function parseJson(text: string, path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v;
  } catch (e) {
    throw new Error(`${path} is not a valid JSON object (${(e as Error).message})`);
  }
}

export async function loadShipped(name: string): Promise<Loaded> {
  const get = async (f: string) => {
    const r = await fetch(`models/${encodeURIComponent(name)}/${f}`);
    if (!r.ok) throw new Error(`models/${name}/${f}: HTTP ${r.status}${r.status === 404 ? ' (no such file)' : ''}`);
    return r;
  };
  // scheduler_config.json is optional, as in a dropped folder (the paper's schedule without it)
  const sched = await fetch(`models/${encodeURIComponent(name)}/scheduler_config.json`);
  if (!sched.ok && sched.status !== 404) throw new Error(`models/${name}/scheduler_config.json: HTTP ${sched.status}`);
  return fromFolder(name, 'shipped', {
    config: parseJson(await (await get('config.json')).text(), `models/${name}/config.json`),
    scheduler: sched.ok ? parseJson(await sched.text(), `models/${name}/scheduler_config.json`) : undefined,
    weights: new Uint8Array(await (await get('diffusion_pytorch_model.safetensors')).arrayBuffer()),
  });
}

/** The shipped model folders the server lists (models/index.json); none when the page is served without it. */
export async function shippedNames(): Promise<string[]> {
  try {
    const r = await fetch('models/index.json');
    return r.ok ? ((await r.json()) as string[]) : [];
  } catch {
    return [];
  }
}

/** A file the visitor gave, with its path inside the dropped or chosen folder ("mnist/config.json"), or its name. */
export interface GivenFile {
  file: File;
  path: string;
}

const sizeOf = (n: number) =>
  n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 ** 2).toFixed(1)} MB`;

/** "mnist/config.json (1.2 KB)": how the page names a file it read. */
export const describeFile = (g: GivenFile) => `${g.path} (${sizeOf(g.file.size)})`;

/**
 * Reads a dropped or chosen model folder's files by name: config.json and diffusion_pytorch_model.safetensors are
 * needed, scheduler_config.json is optional. Returns the model and the files it read.
 */
export async function loadGiven(given: GivenFile[]): Promise<{ loaded: Loaded; used: GivenFile[] }> {
  const by = (n: string) => given.find((g) => g.file.name === n);
  const cfg = by('config.json'),
    sched = by('scheduler_config.json'),
    w = by('diffusion_pytorch_model.safetensors');
  if (!cfg || !w) {
    const missing = [cfg ? '' : 'config.json', w ? '' : 'diffusion_pytorch_model.safetensors'].filter(Boolean);
    throw new Error(
      `a model folder needs ${missing.join(' and ')}; got ${given.map((g) => g.path).join(', ') || 'no files'}`,
    );
  }
  const dir = cfg.path.includes('/') ? cfg.path.slice(0, cfg.path.lastIndexOf('/')) : '';
  const name = dir.split('/').pop() || 'your model';
  const loaded = await fromFolder(
    name,
    'files',
    {
      config: parseJson(await cfg.file.text(), cfg.path),
      scheduler: sched ? parseJson(await sched.file.text(), sched.path) : undefined,
      weights: new Uint8Array(await w.file.arrayBuffer()),
    },
    { config: cfg.path, scheduler: sched?.path ?? `${name}/scheduler_config.json` },
  );
  return { loaded, used: [cfg, ...(sched ? [sched] : []), w] };
}

/** The files of the file chooser (a folder chosen with webkitdirectory has their paths). */
export const chosenFiles = (list: FileList | null): GivenFile[] =>
  Array.from(list ?? []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));

/** Collects the files of dropped items, descending into a dropped folder, with their paths in it. */
export async function droppedFiles(dt: DataTransfer): Promise<GivenFile[]> {
  const out: GivenFile[] = [];
  const walk = async (e: FileSystemEntry): Promise<void> => {
    if (e.isFile) {
      const file = await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej));
      out.push({ file, path: e.fullPath.replace(/^\//, '') || file.name });
    } else if (e.isDirectory) {
      const reader = (e as FileSystemDirectoryEntry).createReader();
      // readEntries answers in batches (100 in Chromium) until it answers none
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const c of batch) await walk(c);
      }
    }
  };
  const entries = Array.from(dt.items)
    .map((item) => item.webkitGetAsEntry())
    .filter((e): e is FileSystemEntry => e !== null);
  for (const e of entries) await walk(e);
  if (!entries.length) for (const file of Array.from(dt.files)) out.push({ file, path: file.name });
  return out;
}
