// pytorch-fid's Inception-v3 on the engine against an independent PyTorch implementation (scripts/torch_inception.py)
// with formula weights; its pooling and bilinear resize against PyTorch's (scripts/make_goldens.py).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeSafetensors } from '../src/io/safetensors.js';
import { serializeNpy } from '../src/io/npy.js';
import * as ops from '../src/engine/ops.js';
import { InceptionV3, inceptionConvs, resizeBilinear } from '../src/eval/inception.js';
import { NATIVE_SKIP, ROOT, assertClose, native, reference, withBackend } from './helpers.js';

const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'inception.json'), 'utf8'));
const P = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'pooling.json'), 'utf8'));

/** The formula weights of scripts/torch_inception.py. */
function formulaWeights() {
  const shapes = new Map<string, number[]>();
  for (const s of inceptionConvs()) {
    shapes.set(`${s.name}.conv.weight`, [s.cout, s.cin, s.kh, s.kw]);
    for (const k of ['weight', 'bias', 'running_mean', 'running_var']) shapes.set(`${s.name}.bn.${k}`, [s.cout]);
  }
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  [...shapes.keys()].sort().forEach((name, j) => {
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1),
      fanIn = n / shape[0];
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = Math.sin(1.7 * i + 0.3 + j);
      data[i] = name.endsWith('conv.weight')
        ? (s * 2) / Math.sqrt(fanIn)
        : name.endsWith('bn.weight')
          ? 1 + 0.1 * s
          : name.endsWith('running_var')
            ? 1 + 0.5 * s * s
            : 0.1 * s;
    }
    out.set(name, { shape, data });
  });
  return out;
}

describe('Inception-v3 (FID variant)', () => {
  const weights = formulaWeights();
  const x = Float32Array.from({ length: 2 * 3 * 75 * 75 }, (_, i) => Math.sin(1.7 * i + 0.3 + 77) * 0.8);
  for (const be of [reference, ...(native ? [native] : [])])
    it(`pool3 features equal the independent PyTorch implementation within 1e-3 (${be.name})`, () =>
      withBackend(be, () => {
        const net = new InceptionV3(weights, 'formula weights');
        const f = net.forward(ops.fromArray(x, [2, 3, 75, 75])).features;
        assertClose(f.dataSync(), G.features, 1e-3, 1e-3, 'features');
      }));

  for (const be of [reference, ...(native ? [native] : [])])
    it(`max and average pooling (with and without padding counted) equal PyTorch (${be.name})`, () =>
      withBackend(be, () => {
        const t = ops.fromArray(Float32Array.from(P.x), P.xshape);
        assertClose(ops.pool2d('max', t, 3, 2).dataSync(), P.max_k3_s2, 1e-6, 1e-6, 'max k3 s2');
        assertClose(ops.pool2d('max', t, 3, 1, 1).dataSync(), P.max_k3_s1_p1, 1e-6, 1e-6, 'max k3 s1 p1');
        assertClose(
          ops.pool2d('avg', t, 3, 1, 1, false).dataSync(),
          P.avg_k3_s1_p1_nopad,
          1e-6,
          1e-6,
          'avg, padding not counted',
        );
        assertClose(
          ops.pool2d('avg', t, 3, 1, 1, true).dataSync(),
          P.avg_k3_s1_p1_pad,
          1e-6,
          1e-6,
          'avg, padding counted',
        );
      }));

  it('bilinear resize equals F.interpolate(align_corners=False), up and down', () => {
    const x = Float32Array.from(P.x);
    assertClose(resizeBilinear(x, P.xshape, 13, 11), P.bilinear_13x11, 1e-6, 1e-6, 'up to 13x11');
    assertClose(resizeBilinear(x, P.xshape, 5, 4), P.bilinear_5x4, 1e-6, 1e-6, 'down to 5x4');
  });
});

describe('ddpm eval fid', { skip: NATIVE_SKIP }, () => {
  it('computes FID, KID and IS on Inception features of 32x32 RGB images resized to 299', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-fid-'));
    const w = formulaWeights();
    w.set('fc.weight', {
      shape: [8, 2048],
      data: Float32Array.from({ length: 8 * 2048 }, (_, i) => Math.sin(i * 0.37)),
    });
    w.set('fc.bias', { shape: [8], data: new Float32Array(8) });
    writeFileSync(join(dir, 'inception.safetensors'), serializeSafetensors(w));
    const x = Float32Array.from({ length: 6 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.01) * Math.cos(i * 0.003));
    writeFileSync(join(dir, 'x.npy'), serializeNpy(x, [6, 3, 32, 32]));
    const r = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist', 'src', 'cli', 'main.js'),
        'eval',
        'fid',
        '--images',
        join(dir, 'x.npy'),
        '--ref',
        join(dir, 'x.npy'),
        '--inception',
        join(dir, 'inception.safetensors'),
        '--kid-subsets',
        '2',
        '--kid-size',
        '6',
        '--pr-num',
        '6',
        '--out',
        join(dir, 'r.json'),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /network +Inception-v3/);
    const res = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
    assert.ok(Math.abs(res.fd) < 1e-3, `FID of a set against itself ${res.fd}`);
    assert.ok(res.is.mean >= 1, JSON.stringify(res.is));
    const bad = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist', 'src', 'cli', 'main.js'),
        'eval',
        'fid',
        '--images',
        join(dir, 'x.npy'),
        '--inception',
        join(dir, 'x.npy'),
      ],
      { encoding: 'utf8' },
    );
    assert.notEqual(bad.status, 0);
  });
});
