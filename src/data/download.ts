// Optional downloader for public datasets (Node-only), with sha256 checks and a cache. Nothing downloads unless a
// user asks (`ddpm data --download NAME`); the checksums are of the uncompressed files, so a mirror that re-compresses
// the same bytes still verifies.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { writeFileAtomic } from '../io/files.js';

export interface RemoteDataset {
  baseUrl: string;
  /** file name -> sha256 of its uncompressed content */
  files: Record<string, string>;
}

export const REMOTE_DATASETS: Record<string, RemoteDataset> = {
  mnist: {
    baseUrl: 'https://ossci-datasets.s3.amazonaws.com/mnist/',
    files: {
      'train-images-idx3-ubyte.gz': 'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
      'train-labels-idx1-ubyte.gz': '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
      't10k-images-idx3-ubyte.gz': '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
      't10k-labels-idx1-ubyte.gz': 'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
    },
  },
};

export const DEFAULT_CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ddpm');

function contentSha256(bytes: Uint8Array): string {
  const raw = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
  return createHash('sha256').update(raw).digest('hex');
}

export interface DownloadOptions {
  cacheDir?: string;
  /** Override the dataset's base URL (a mirror, or a local server in tests). */
  baseUrl?: string;
  log?: (msg: string) => void;
}

/** Downloads (or finds in the cache) every file of a dataset; returns the folder that holds them. */
export async function downloadDataset(name: string, o: DownloadOptions = {}): Promise<string> {
  const ds = REMOTE_DATASETS[name];
  if (!ds) throw new Error(`download: unknown dataset "${name}" (known: ${Object.keys(REMOTE_DATASETS).join(', ')})`);
  const dir = join(o.cacheDir ?? DEFAULT_CACHE, name);
  const base = o.baseUrl ?? ds.baseUrl;
  for (const [file, sha] of Object.entries(ds.files)) {
    const path = join(dir, file);
    if (existsSync(path) && contentSha256(readFileSync(path)) === sha) continue;
    const url = new URL(file, base.endsWith('/') ? base : `${base}/`).toString();
    o.log?.(`downloading ${url}`);
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(600_000) });
    } catch (e) {
      throw new Error(`download ${url}: ${(e as Error).message}`);
    }
    if (!res.ok) throw new Error(`download ${url}: HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    let got: string;
    try {
      got = contentSha256(bytes);
    } catch (e) {
      throw new Error(`download ${url}: corrupt gzip data (${(e as Error).message})`);
    }
    if (got !== sha)
      throw new Error(`download ${url}: sha256 ${got} does not match the expected ${sha}; the file was not saved`);
    writeFileAtomic(path, bytes);
  }
  return dir;
}
