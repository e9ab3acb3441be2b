// The registry of random streams: no two purposes (or two indices of one purpose) ever share a stream, so no
// (key, counter) word of the generator is used twice.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PURPOSE, streams, streamId } from '../src/engine/streams.js';
import { ROOT } from './helpers.js';

describe('random streams', () => {
  it('every purpose over many steps, micro-batches and sites gets its own stream ids', () => {
    const seen = new Map<number, string>();
    const add = (what: string, s: number) => {
      assert.ok(Number.isSafeInteger(s) && s >= 0, `${what}: ${s}`);
      const prev = seen.get(s);
      assert.equal(prev, undefined, `${what} reuses the stream of ${prev}`);
      seen.set(s, what);
    };
    const seed = 0;
    for (let m = 0; m < 600; m++) {
      add(`flips ${m}`, streams.flips(seed, m).stream);
      add(`timesteps ${m}`, streams.timesteps(seed, m).stream);
      add(`trainNoise ${m}`, streams.trainNoise(seed, m).stream);
      add(`dataOrder ${m}`, streams.dataOrder(seed, m).stream);
      add(`init ${m}`, streams.init(seed, m).stream);
      for (let site = 0; site < 40; site++) add(`dropout ${m}/${site}`, streams.dropout(seed, m, site).stream);
    }
    // the collision the old layout had: dropout of micro-batch m at site 160 vs the noise of micro-batch 256 m + 160
    for (const m of [1, 2, 3])
      assert.notEqual(streams.dropout(seed, m, 160).stream, streams.trainNoise(seed, 256 * m + 160).stream);
    add('samplerInit', streams.samplerInit(seed).stream);
    for (let step = 0; step < 1000; step++) {
      for (let sub = 0; sub < 4; sub++)
        add(`samplerNoise ${step}/${sub}`, streams.samplerNoise(seed, step, sub).stream);
      add(`bpdNoise ${step}`, streams.bpdNoise(seed, step).stream);
      add(`interpolate ${step}`, streams.interpolate(seed, step).stream);
    }
    // far indices stay inside their purpose's range
    add('dropout far', streams.dropout(seed, 2 ** 36 - 1, 4095).stream);
    add('trainNoise far', streams.trainNoise(seed, 2 ** 48 - 1).stream);
    assert.ok(streams.trainNoise(seed, 2 ** 48 - 1).stream < streamId('dropout', 0));
  });

  it('an index outside its purpose range is refused, never wrapped into another purpose', () => {
    assert.throws(() => streams.dropout(0, 0, 4096), /dropout site 4096 is outside \[0, 4096\)/);
    assert.throws(() => streams.dropout(0, 2 ** 36, 0), /dropout micro-batch/);
    assert.throws(() => streams.samplerNoise(0, 1, 1024), /sampler sub-step/);
    assert.throws(() => streams.trainNoise(0, 2 ** 48), /trainNoise index/);
    assert.throws(() => streams.trainNoise(0, -1), /trainNoise index/);
  });

  it('purpose codes are distinct and fit in 5 bits', () => {
    const codes = Object.values(PURPOSE);
    assert.equal(new Set(codes).size, codes.length);
    assert.ok(codes.every((c) => c > 0 && c < 32));
  });

  it('no source file outside the registry builds a stream id by hand', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true }))
        e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') && files.push(join(d, e.name));
    };
    walk(join(ROOT, 'src'));
    for (const f of files) {
      if (f.endsWith('streams.ts') || f.endsWith('random.ts')) continue;
      assert.doesNotMatch(readFileSync(f, 'utf8'), /stream:\s*[^,}]/, `${f} builds a stream id itself`);
    }
  });
});
