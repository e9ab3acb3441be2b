// Bad input gets one clear Error naming the op, file or field; the native addon validates before touching memory.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { Tensor, setCheckNumerics } from '../src/engine/tensor.js';
import { loadAddon } from '../src/backends/native/index.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { parseCifar, parseIdxImages } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/load.js';
import { loadModel, writeModelFolder } from '../src/io/checkpoint.js';
import { PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import { parseNpy } from '../src/io/npy.js';
import { NATIVE_SKIP, native, withBackend, reference } from './helpers.js';

describe('shape errors name the op and both shapes', () => {
  for (const be of [reference, ...(native ? [native] : [])])
    it(`on ${be.name}`, () =>
      withBackend(be, () => {
        assert.throws(
          () => ops.add(ops.zeros([2, 3]), ops.zeros([4, 3])),
          /add: shapes \[2,3\] and \[4,3\] cannot be broadcast/,
        );
        assert.throws(
          () => ops.matmul(ops.zeros([2, 3]), ops.zeros([4, 5])),
          /matmul: shapes \[2,3\] and \[4,5\] do not match/,
        );
        assert.throws(
          () => ops.conv2d(ops.zeros([1, 3, 8, 8]), ops.zeros([4, 2, 3, 3]), null),
          /conv2d: input \[1,3,8,8\] and weight \[4,2,3,3\]/,
        );
        assert.throws(
          () => ops.groupNorm(ops.zeros([1, 6, 2, 2]), ops.zeros([6]), ops.zeros([6]), 4, 1e-6),
          /groupNorm: 6 channels of \[1,6,2,2\] do not split into 4 groups/,
        );
        assert.throws(
          () => ops.concat([ops.zeros([1, 2, 4, 4]), ops.zeros([1, 2, 3, 4])]),
          /concat: shapes \[1,2,4,4\] and \[1,2,3,4\]/,
        );
        assert.throws(() => ops.reshape(ops.zeros([2, 3]), [4, 2]), /reshape: cannot view \[2,3\] as \[4,2\]/);
        assert.throws(() => new Tensor(new Float32Array(5), [2, 3]), /shape \[2,3\] needs 6 values, storage has 5/);
        assert.throws(
          () => new Tensor(new Int32Array(6) as unknown as Float32Array, [2, 3]),
          /storage must be a backend buffer/,
        );
      }));
});

describe('check-numerics mode names the first op that produced NaN or Inf', () => {
  it('log of a negative number', () => {
    setCheckNumerics(true);
    try {
      const x = ops.tensor([1, -1, 2], [3]);
      assert.throws(() => ops.affine(ops.log(x), 2, 0), /check numerics: log produced NaN at index 1 of output \[3\]/);
    } finally {
      setCheckNumerics(false);
    }
  });
});

describe('the native addon validates every argument and never crashes', { skip: NATIVE_SKIP }, () => {
  const a = loadAddon().addon!;
  const f = (n: number) => new Float32Array(n);
  it('wrong sizes, wrong types, short and detached buffers, bad shapes throw Errors', () => {
    const cases: [string, () => unknown, RegExp][] = [
      [
        'short input',
        () => a.conv2dForward(f(10), [1, 1, 4, 4], f(9), [1, 1, 3, 3], null, [1, 1, 1, 1, 1], f(16)),
        /conv2dForward: input has 10 values, expected 16/,
      ],
      [
        'short output',
        () => a.conv2dForward(f(16), [1, 1, 4, 4], f(9), [1, 1, 3, 3], null, [1, 1, 1, 1, 1], f(3)),
        /output has 3 values, expected 16/,
      ],
      [
        'channel mismatch',
        () => a.conv2dForward(f(32), [1, 2, 4, 4], f(9), [1, 1, 3, 3], null, [1, 1, 1, 1, 1], f(16)),
        /disagree on channels/,
      ],
      [
        'kernel larger than input',
        () => a.conv2dForward(f(4), [1, 1, 2, 2], f(9), [1, 1, 3, 3], null, [1, 0, 0, 0, 0], f(1)),
        /smaller than kernel/,
      ],
      [
        'zero stride',
        () => a.conv2dBackward(f(16), [1, 1, 4, 4], f(16), f(9), [1, 1, 3, 3], [0, 1, 1, 1, 1], null, f(9), null),
        /stride must be >= 1/,
      ],
      ['not a Float32Array', () => a.matmul([1, 2], f(2), 1, 1, 2, 1, false, false, f(1)), /a must be a Float32Array/],
      ['Float64Array', () => a.unary(0, new Float64Array(3), f(3)), /input must be a Float32Array/],
      ['negative dimension', () => a.binary(0, f(1), [-1], f(1), [1], [1], f(1)), /invalid dimension/],
      ['NaN dimension', () => a.reduceSum(f(4), [NaN, 4], [1, 4], f(4)), /invalid dimension/],
      ['huge matmul', () => a.matmul(f(4), f(4), 1, 2 ** 29, 2 ** 29, 2, false, false, f(4)), /sizes are too large/],
      [
        'short matmul operand',
        () => a.matmul(f(4), f(6), 1, 2, 3, 2, false, false, f(4)),
        /a has 4 values, expected 6/,
      ],
      [
        'overflowing matmul sizes',
        () => a.matmul(f(0), f(0), 2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, false, false, f(0)),
        /sizes are too large/,
      ],
      ['overflowing softmax sizes', () => a.softmax(f(0), 2 ** 40, 2 ** 24, f(0)), /sizes are too large/],
      [
        'overflowing shape',
        () => a.binary(0, f(0), [1e9, 1e9, 1e9], f(0), [1e9, 1e9, 1e9], [1e9, 1e9, 1e9], f(0)),
        /too many elements/,
      ],
      ['missing arguments', () => a.groupNorm(), /must be an array of dimensions|must be a Float32Array/],
      [
        'bad groups',
        () => a.groupNorm(f(12), [1, 3, 2, 2], f(3), f(3), 2, 1e-6, false, f(12), f(2), f(2)),
        /3 channels do not split into 2 groups/,
      ],
      ['bad permutation', () => a.permute(f(6), [2, 3], [0, 0], f(6)), /invalid permutation/],
      [
        'concat shape mismatch',
        () =>
          a.concat(
            [f(4), f(6)],
            [
              [1, 1, 2, 2],
              [1, 1, 2, 3],
            ],
            f(10),
          ),
        /differ outside axis 1/,
      ],
      ['slice out of range', () => a.sliceChannels(f(8), [1, 2, 2, 2], 1, 2, f(8)), /channel count must be an integer/],
      [
        'adam step 0',
        () => a.adamStep(f(2), f(2), f(2), f(2), 1e-3, 0.9, 0.999, 1e-8, 0, 0),
        /step must be an integer/,
      ],
      ['ema size mismatch', () => a.emaUpdate(f(3), f(4), 0.9), /param has 4 values, expected 3/],
    ];
    for (const [what, fn, re] of cases) assert.throws(fn, re, what);
    const buf = new ArrayBuffer(64);
    const view = new Float32Array(buf);
    structuredClone(buf, { transfer: [buf] }); // detaches buf
    assert.throws(() => a.unary(0, view, f(16)), /native unary: (input is detached|out has 16 values, expected 0)/);
  });
  it('NaN values flow through without crashing', () => {
    const x = Float32Array.from([NaN, 1, Infinity, -Infinity]),
      y = f(4);
    a.unary(5, x, y);
    assert.ok(Number.isNaN(y[0]));
    a.softmax(x, 1, 4, y);
    a.groupNorm(x, [1, 1, 2, 2], Float32Array.from([1]), Float32Array.from([0]), 1, 1e-6, true, y, f(1), f(1));
  });
});

describe('files: one clear error naming the file and field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-bad-'));
  it('corrupt safetensors headers', () => {
    assert.throws(() => parseSafetensors(new Uint8Array(4), 'w.safetensors'), /w.safetensors: too short/);
    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setBigUint64(0, 1000n, true);
    assert.throws(
      () => parseSafetensors(bad, 'w.safetensors'),
      /w.safetensors: header length 1000 does not fit in a file of 16 bytes/,
    );
    const good = serializeSafetensors([['a', { shape: [2, 2], data: new Float32Array(4) }]]);
    assert.throws(
      () => parseSafetensors(good.slice(0, good.length - 4), 'w.safetensors'),
      /tensor "a": data_offsets \[0,16\] outside the 12 data bytes/,
    );
    const hdr = (h: object) => {
      const j = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(8 + j.length + 16);
      new DataView(out.buffer).setBigUint64(0, BigInt(j.length), true);
      out.set(j, 8);
      return out;
    };
    assert.throws(
      () => parseSafetensors(hdr({ a: { dtype: 'I8', shape: [1], data_offsets: [0, 1] } }), 'w'),
      /tensor "a": dtype "I8" is not supported/,
    );
    assert.throws(
      () => parseSafetensors(hdr({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }), 'w'),
      /tensor "a": 16 bytes for shape \[3\] of F32 \(expected 12\)/,
    );
    const notJson = hdr({});
    notJson[8] = 0x7b;
    notJson[9] = 0x7b;
    assert.throws(() => parseSafetensors(notJson, 'w'), /w: header is not valid JSON/);
  });
  it('truncated or wrong-magic dataset files', () => {
    assert.throws(() => parseIdxImages(new Uint8Array(10), 'imgs'), /imgs: truncated IDX header/);
    const b = new Uint8Array(16 + 5);
    new DataView(b.buffer).setUint32(0, 0x803);
    new DataView(b.buffer).setUint32(4, 2);
    new DataView(b.buffer).setUint32(8, 28);
    new DataView(b.buffer).setUint32(12, 28);
    assert.throws(() => parseIdxImages(b, 'imgs'), /imgs: truncated: header says 2 images of 28x28/);
    new DataView(b.buffer).setUint32(0, 0x801);
    assert.throws(() => parseIdxImages(b, 'imgs'), /imgs: magic number 0x801 is not an IDX image file/);
    assert.throws(
      () => parseCifar(new Uint8Array(3000), 'c.bin'),
      /c.bin: 3000 bytes is not a whole number of CIFAR-10 records/,
    );
    const gz = join(dir, 'train-images-idx3-ubyte.gz');
    writeFileSync(gz, Uint8Array.from([0x1f, 0x8b, 8, 0, 1, 2, 3]));
    assert.throws(() => loadDataset(dir), /train-images-idx3-ubyte.gz: corrupt or truncated gzip data/);
    assert.throws(() => loadDataset(join(dir, 'nope')), /nope: no such file or folder/);
  });
  it('a tensor shape that disagrees with config.json', () => {
    const m = new UNet(PRESETS.tiny());
    const w = new Map([...m.params.entries()].map(([k, p]) => [k, { shape: p.shape, data: p.dataSync() }]));
    w.set('conv_in.weight', { shape: [16, 1, 3, 1], data: new Float32Array(48) });
    const md = join(dir, 'model');
    writeModelFolder(md, PRESETS.tiny(), PAPER_DIFFUSION, w);
    assert.throws(
      () => loadModel(md),
      /safetensors: tensor "conv_in.weight" has shape \[16,1,3,1\], but config.json implies \[16,1,3,3\]/,
    );
  });
  it('invalid config fields', () => {
    const md = join(dir, 'model2');
    mkdirSync(md, { recursive: true });
    writeFileSync(join(md, 'config.json'), JSON.stringify({ ...PRESETS.tiny(), norm_num_groups: 5 }));
    assert.throws(
      () => loadModel(md),
      /config.json: field "norm_num_groups" 5 must divide every entry of block_out_channels/,
    );
    writeFileSync(join(md, 'config.json'), '{"sample_size": 8,');
    assert.throws(() => loadModel(md), /config.json: invalid JSON/);
  });
  it('npy files', () => {
    assert.throws(() => parseNpy(new Uint8Array(20), 'x.npy'), /x.npy: not a .npy file/);
  });
});
