// The optional downloader against a local HTTP server on 127.0.0.1 serving ../shared/data.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFileSync, mkdtempSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { downloadDataset, REMOTE_DATASETS } from '../src/data/download.js';
import { loadDataset } from '../src/data/load.js';
import { HAS_SHARED, SHARED } from './helpers.js';

describe('dataset downloader', { skip: HAS_SHARED ? false : '../shared/data is absent' }, () => {
  let server: Server;
  let base = '';
  let requests = 0;
  let corrupt = false;
  before(async () => {
    server = createServer((req, res) => {
      requests++;
      const f = join(SHARED, 'data', 'mnist', (req.url ?? '').replace(/^\/+/, ''));
      if (!/^[\w.-]+$/.test((req.url ?? '').slice(1)) || !existsSync(f)) {
        res.statusCode = 404;
        res.end();
        return;
      }
      const bytes = readFileSync(f);
      if (corrupt) bytes[bytes.length - 20] ^= 0xff;
      res.end(bytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  after(() => server.close());

  it('downloads, verifies sha256 and caches', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'ddpm-cache-'));
    const dir = await downloadDataset('mnist', { cacheDir: cache, baseUrl: base });
    assert.equal(requests, Object.keys(REMOTE_DATASETS.mnist.files).length);
    assert.equal(loadDataset(dir, 'test').count, 10000);
    await downloadDataset('mnist', { cacheDir: cache, baseUrl: base });
    assert.equal(requests, 4, 'the second call is served from the cache');
  });

  it('a corrupted download is rejected and not saved', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'ddpm-cache-'));
    corrupt = true;
    try {
      await assert.rejects(
        downloadDataset('mnist', { cacheDir: cache, baseUrl: base }),
        /(sha256 [0-9a-f]+ does not match|corrupt gzip data)/,
      );
      assert.ok(!existsSync(join(cache, 'mnist', 'train-images-idx3-ubyte.gz')));
    } finally {
      corrupt = false;
    }
  });

  it('a cached file that was damaged is fetched again', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'ddpm-cache-'));
    const dir = await downloadDataset('mnist', { cacheDir: cache, baseUrl: base });
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte.gz'), 'junk');
    const before = requests;
    await downloadDataset('mnist', { cacheDir: cache, baseUrl: base });
    assert.equal(requests, before + 1);
  });

  it('HTTP errors and unknown names are clear', async () => {
    await assert.rejects(downloadDataset('nope'), /unknown dataset "nope"/);
    await assert.rejects(
      downloadDataset('mnist', { cacheDir: mkdtempSync(join(tmpdir(), 'c-')), baseUrl: `${base}missing/` }),
      /HTTP 404/,
    );
  });
});
