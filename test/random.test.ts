// The counter-based generator: Random123 known-answer vectors, distribution sanity, batch independence.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import './helpers.js';
import { philox4x32_10, fillRandom, randomIntegers, randomPermutation } from '../src/engine/random.js';
import * as ops from '../src/engine/ops.js';

describe('Philox 4x32-10', () => {
  // Random123's kat_vectors: counter (4 words), key (2 words) -> output (4 words)
  const kat: [number[], number[], number[]][] = [
    [
      [0, 0, 0, 0],
      [0, 0],
      [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0xffffffff, 0xffffffff],
      [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
      [0xa4093822, 0x299f31d0],
      [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ],
  ];
  for (const [ctr, key, want] of kat)
    it(`known answer for counter ${ctr.map((v) => v.toString(16)).join(' ')}`, () => {
      assert.deepEqual([...philox4x32_10(ctr, key)], want);
    });

  it('normal output has mean ~0 and variance ~1; uniform stays in (0, 1)', () => {
    const n = 200_000;
    const z = fillRandom(new Float32Array(n), n, { seed: 3, stream: 9 }, 0, 'normal');
    const mean = z.reduce((a, b) => a + b, 0) / n;
    const v = z.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(v - 1) < 0.02, `variance ${v}`);
    const u = fillRandom(new Float32Array(n), n, { seed: 3, stream: 9 }, 0, 'uniform');
    assert.ok(u.every((x) => x > 0 && x < 1));
  });

  it('sample i gets bitwise the same noise in a batch of 1 or of 16', () => {
    const shape = [16, 3, 5, 7];
    const big = ops.randn(shape, { seed: 42, stream: 5 });
    const per = 3 * 5 * 7;
    for (const i of [0, 7, 15]) {
      const one = ops.randn([1, 3, 5, 7], { seed: 42, stream: 5 }, i);
      assert.deepEqual(one.dataSync(), big.dataSync().subarray(i * per, (i + 1) * per));
    }
  });

  it('different seeds and streams give different numbers', () => {
    const a = ops.randn([1, 8], { seed: 1, stream: 0 }).dataSync(),
      b = ops.randn([1, 8], { seed: 2, stream: 0 }).dataSync(),
      c = ops.randn([1, 8], { seed: 1, stream: 1 }).dataSync();
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('integers cover [lo, hi] uniformly; permutations are permutations', () => {
    const t = randomIntegers(100_000, 0, 9, { seed: 1, stream: 2 });
    const counts = new Array(10).fill(0);
    t.forEach((v) => counts[v]++);
    assert.ok(
      counts.every((c) => Math.abs(c - 10_000) < 500),
      `counts ${counts}`,
    );
    const p = randomPermutation(1000, { seed: 1, stream: 3 });
    assert.deepEqual(
      [...p].sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  });

  it('rejects a seed that is not a safe non-negative integer', () => {
    assert.throws(() => ops.randn([1, 4], { seed: -1, stream: 0 }), /seed must be a non-negative safe integer/);
  });
});
