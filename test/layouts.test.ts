// The native backend's activation layouts and its bf16 convolutions. Forward-only graphs (sampling, evaluation) keep
// activations in the layout oneDNN computes in (nChw16c for f32, NHWC for bf16) from one kernel to the next; every
// kernel on such buffers must give the values of the plain NCHW path, and every read must be plain.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as ops from '../src/engine/ops.js';
import { Tensor, noGrad } from '../src/engine/tensor.js';
import type { NativeBackend } from '../src/backends/native/index.js';
import type { Backend } from '../src/engine/backend.js';
import { roundToBf16 } from '../src/backends/reference/index.js';
import { fillRandom, keyWords } from '../src/engine/random.js';
import { UNet, PRESETS } from '../src/model/unet.js';
import {
  NATIVE_SKIP,
  ROOT,
  assertClose,
  maxAbsDiff,
  native,
  reference,
  runWithGrads,
  withBackend,
  withBackendAsync,
} from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: a golden JSON file, read field by field in the tests
const L = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'layers.json'), 'utf8')) as any;
/** scale * sin(1.7 i + 0.3 + k): the deterministic inputs of the golden script. */
function det(shape: number[], k = 0, scale = 1, requiresGrad = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor(
    Float32Array.from({ length: n }, (_, i) => scale * Math.sin(1.7 * i + 0.3 + k)),
    shape,
    requiresGrad,
  );
}

const nb = native as NativeBackend | null;
const bf16Skip = NATIVE_SKIP || (nb && !nb.info.bf16 ? 'this CPU has no AVX512-BF16 / AMX' : false);
/** The nChw16c activation layout is what oneDNN's f32 convolutions compute in on AVX-512 CPUs; AVX2 ones use nChw8c. */
const blockedSkip =
  NATIVE_SKIP ||
  (nb && !nb.info.blockedLayout
    ? `this CPU's f32 convolutions compute in nChw8c (${nb.info.conv3x3}), not in the nChw16c layout kept between ` +
      `kernels (AVX-512)`
    : false);
/** oneDNN 2.6 has Winograd kernels for AVX-512 CPUs only. */
const winogradSkip =
  NATIVE_SKIP ||
  (nb && !nb.info.winograd ? `oneDNN has no Winograd kernels for this CPU (it runs ${nb.info.conv3x3})` : false);
/** A layout test runs in f32 where the CPU keeps nChw16c, in bf16 where it has bf16 kernels. */
const layoutSkip = (precision: 'f32' | 'bf16') => (precision === 'bf16' ? bf16Skip : blockedSkip);

/**
 * A forward-only chain touching every layout-aware kernel: conv into 32 channels, group norm + SiLU, a per-sample
 * per-channel add, SiLU, a residual add, concat with a second conv's 16 channels (48: groups across blocks),
 * group norm, upsampling, a strided conv, affine, then a layout-unaware kernel (permute). Values from host arrays.
 */
function chain(precision: ops.Precision): Tensor[] {
  const x = det([2, 3, 8, 8], 1),
    w1 = det([32, 3, 3, 3], 2, 0.3),
    b1 = det([32], 3, 0.1);
  const w2 = det([16, 32, 1, 1], 4, 0.2),
    w3 = det([8, 48, 3, 3], 5, 0.1),
    b3 = det([8], 6);
  const g32 = det([32], 7, 0.5),
    be32 = det([32], 8, 0.1),
    g48 = det([48], 9, 0.5),
    be48 = det([48], 10, 0.1),
    tb = det([2, 32, 1, 1], 11);
  return noGrad(() => {
    const h1 = ops.conv2d(x, w1, b1, { padding: 1, precision });
    const h2 = ops.groupNorm(h1, g32, be32, 8, 1e-6, true);
    const h3 = ops.add(h2, tb);
    const h4 = ops.add(h1, ops.silu(h3));
    const h5 = ops.concat([h4, ops.conv2d(h4, w2, null, { precision })]);
    const h6 = ops.upsample2x(ops.groupNorm(h5, g48, be48, 6, 1e-6, false));
    const h7 = ops.affine(ops.conv2d(h6, w3, b3, { stride: 2, padding: 1, precision }), 0.5, 0.1);
    return [h1, h2, h3, h4, h5, h6, h7, ops.permute(h5, [0, 2, 3, 1])];
  });
}

describe('native activation layouts', { skip: NATIVE_SKIP }, () => {
  for (const precision of ['f32', 'bf16'] as const)
    it(`a forward-only chain in ${precision} keeps its layout between kernels and equals the reference backend`, {
      skip: layoutSkip(precision),
    }, async () => {
      const ours = withBackend(native!, () => chain(precision));
      const ref = withBackend(reference, () => chain(precision));
      // the layout path is taken: conv outputs, group norm, the adds, concat and upsampling stay in it
      for (const i of [0, 1, 2, 3, 4, 5]) assert.ok(nb!.isBlocked(ours[i].storage), `step ${i} left its layout`);
      for (let i = 0; i < ours.length; i++)
        assertClose(await ours[i].data(), await ref[i].data(), 2e-4, 2e-4, `step ${i}`);
      // reads are plain and a second read gives the same values
      assertClose(ours[6].dataSync(), await ours[6].data(), 0, 0, 'dataSync = data');
    });

  it('a recorded graph (training) keeps the layouts through the backward pass; every gradient = the reference ' +
    'backend', {
    skip: blockedSkip,
  }, async () => {
    // conv -> group norm + SiLU -> per-channel add -> conv -> concat -> upsample -> group norm -> strided conv, with
    // gradients to the input, every weight and the per-channel operand
    const inputs = [
      { values: Float32Array.from({ length: 2 * 3 * 8 * 8 }, (_, i) => Math.sin(1.7 * i)), shape: [2, 3, 8, 8] },
      {
        values: Float32Array.from({ length: 32 * 3 * 9 }, (_, i) => 0.3 * Math.sin(1.1 * i + 1)),
        shape: [32, 3, 3, 3],
      },
      { values: Float32Array.from({ length: 32 }, (_, i) => 1 + 0.1 * Math.cos(i)), shape: [32] },
      { values: Float32Array.from({ length: 64 }, (_, i) => Math.sin(0.7 * i)), shape: [2, 32, 1, 1] },
      {
        values: Float32Array.from({ length: 16 * 32 * 9 }, (_, i) => 0.05 * Math.sin(0.3 * i + 2)),
        shape: [16, 32, 3, 3],
      },
      { values: Float32Array.from({ length: 48 }, (_, i) => 1 + 0.05 * Math.sin(i)), shape: [48] },
      { values: Float32Array.from({ length: 8 * 48 * 9 }, (_, i) => 0.05 * Math.cos(0.2 * i)), shape: [8, 48, 3, 3] },
    ];
    const graph =
      (steps: Tensor[]) =>
      ([x, w1, g32, tb, w2, g48, w3]: Tensor[]) => {
        const zero = (n: number) => ops.fromArray(new Float32Array(n), [n]);
        const h1 = ops.conv2d(x, w1, null, { padding: 1 });
        const h2 = ops.add(ops.groupNorm(h1, g32, zero(32), 8, 1e-6, true), tb);
        const h3 = ops.concat([h2, ops.conv2d(h2, w2, null, { padding: 1 })]);
        const h4 = ops.groupNorm(ops.upsample2x(h3), g48, zero(48), 6, 1e-6, true);
        const y = ops.conv2d(h4, w3, null, { stride: 2, padding: 1 });
        steps.push(h1, h2, h3, h4);
        return y;
      };
    const seen: Tensor[] = [];
    const ours = runWithGrads(native!, inputs, graph(seen));
    for (const [i, t] of seen.entries()) assert.ok(nb!.isBlocked(t.storage), `forward step ${i} left its layout`);
    const ref = runWithGrads(reference, inputs, graph([]), ours.probe);
    assertClose(ours.y, ref.y, 2e-4, 2e-4, 'y');
    ours.grads.forEach((g, i) => assertClose(g!, ref.grads[i]!, 2e-4, 2e-4, `gradient of input ${i}`));
  });

  it("a convolution's data gradient stays in the layout", { skip: blockedSkip }, () =>
    withBackend(native!, () => {
      const x = det([1, 16, 5, 5], 1, 1, true),
        w = det([16, 16, 3, 3], 2, 0.1, true);
      const y = ops.conv2d(x, w, null, { padding: 1 });
      assert.equal(nb!.isBlocked(y.storage), true);
      const h = ops.conv2d(y, w, null, { padding: 1 });
      h.backward(det(h.shape, 3));
      assert.equal(nb!.isBlocked(x.grad!.storage), true, 'dx left the layout');
    }),
  );

  it('the tiny U-Net forward under noGrad equals the recorded forward within 1e-5', async () =>
    withBackendAsync(native!, async () => {
      const m = new UNet(PRESETS.tiny()).init(3);
      const x = det([2, 1, 8, 8], 5),
        t = [7, 801];
      const plain = await m.forward(x, t).data();
      const laid = await noGrad(() => m.forward(x, t)).data();
      assert.ok(maxAbsDiff(plain, laid) < 1e-5, `max difference ${maxAbsDiff(plain, laid)}`);
    }));

  for (const precision of ['f32', 'bf16'] as const)
    it(`weights kept in the convolution's layout (${precision}) follow every in-place change of the weight buffer`, {
      skip: precision === 'bf16' ? bf16Skip : false,
    }, async () => {
      const run = (be: Backend, edit: (w: Tensor) => void) =>
        withBackendAsync(be, async () => {
          const x = det([2, 32, 6, 6], 1),
            w = det([32, 32, 3, 3], 2, 0.1);
          const conv = () => noGrad(() => ops.conv2d(x, w, null, { padding: 1, precision }));
          const before = await conv().data();
          edit(w);
          return { before, after: await conv().data() };
        });
      const edits: [string, (w: Tensor) => void][] = [
        ['write', (w) => w.write(Float32Array.from({ length: w.size }, (_, i) => Math.cos(i) * 0.1))],
        ['in-place add', (w) => w.backend.addInPlace(w.storage, w.backend.upload(new Float32Array(w.size).fill(0.05)))],
        ['in-place scale', (w) => w.backend.scaleInPlace(w.storage, w.backend.upload(Float32Array.of(-2)))],
      ];
      for (const [what, edit] of edits) {
        const ours = await run(native!, edit),
          ref = await run(reference, edit);
        assertClose(ours.before, ref.before, 1e-4, 1e-4, `${what}: before`);
        assertClose(
          ours.after,
          ref.after,
          1e-4,
          1e-4,
          `${what}: after (a stale cached copy would give the old result)`,
        );
      }
    });

  it('write() on a buffer in a layout makes it plain', { skip: blockedSkip }, () =>
    withBackend(native!, () => {
      const y = noGrad(() => ops.conv2d(det([1, 16, 4, 4], 1), det([16, 16, 1, 1], 2), null));
      assert.ok(nb!.isBlocked(y.storage));
      const v = Float32Array.from({ length: y.size }, (_, i) => i);
      y.write(v);
      assert.equal(nb!.isBlocked(y.storage), false);
      assertClose(y.dataSync(), v, 0, 0, 'written values');
    }),
  );
});

describe('precision bf16', () => {
  it('the reference backend rounds to nearest even, as oneDNN does', () => {
    const v = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -2.5, NaN, Infinity, 3.3]);
    const r = roundToBf16(v);
    assert.deepEqual(Array.from(r.subarray(0, 5)), [1, 1, 1 + 4 * 2 ** -8, 1, -2.5]);
    assert.ok(Number.isNaN(r[5]));
    assert.equal(r[6], Infinity);
    assert.equal(r[7], 3.296875); // 3.3 = 0x40533333 rounds to 0x4053 in bf16
  });

  for (const be of [reference, ...(native ? [native] : [])])
    it(
      `conv2d bf16 equals PyTorch on bf16-rounded operands (${be.name})`,
      { skip: be === native ? bf16Skip : false },
      async () =>
        withBackendAsync(be, async () => {
          const y = noGrad(() =>
            ops.conv2d(det([2, 32, 6, 6], 20), det([32, 32, 3, 3], 21, 0.1), det([32], 22), {
              padding: 1,
              precision: 'bf16',
            }),
          );
          assert.deepEqual(y.shape, L.conv_bf16.yshape);
          const v = await y.data();
          assertClose(v, L.conv_bf16.y, 1e-4, 1e-5, 'bf16 conv');
          // and it is not the f32 result (the rounding happened)
          assert.ok(maxAbsDiff(v, L.conv_bf16.y_f32) > 1e-3, 'bf16 result equals the f32 one');
        }),
    );

  it('refuses a bf16 convolution whose gradient would be taken, and unknown precisions', () =>
    withBackend(reference, () => {
      const x = det([1, 2, 3, 3], 1, 1, true),
        w = det([2, 2, 1, 1], 2);
      assert.throws(() => ops.conv2d(x, w, null, { precision: 'bf16' }), /bf16 is forward-only/);
      assert.throws(() => ops.conv2d(x, w, null, { precision: 'f16' as ops.Precision }), /unknown precision "f16"/);
    }));

  it(
    'the mnist U-Net in bf16 stays close to f32 (eps within 5e-2 absolute, mean under 5e-3)',
    { skip: bf16Skip },
    async () =>
      withBackendAsync(native!, async () => {
        const m = new UNet(PRESETS.mnist()).init(1);
        const x = det([2, 1, 28, 28], 3),
          t = [10, 900];
        const f32 = await noGrad(() => m.forward(x, t)).data();
        m.precision = 'bf16';
        const b16 = await noGrad(() => m.forward(x, t)).data();
        const d = f32.map((v, i) => Math.abs(v - b16[i]));
        const mean = d.reduce((a, b) => a + b, 0) / d.length;
        assert.ok(Math.max(...d) < 5e-2 && mean < 5e-3 && mean > 0, `max ${Math.max(...d)} mean ${mean}`);
      }),
  );
});

describe('native convolution algorithm', { skip: NATIVE_SKIP }, () => {
  const p = (stride: number, pad: number) => ({ stride, padTop: pad, padBottom: pad, padLeft: pad, padRight: pad });
  it('Winograd runs the float32 3x3 stride-1 convolutions of >= 16 channels on maps of >= 7x7, direct the rest, and ' +
    'everything when asked', {
    skip: winogradSkip,
  }, () => {
    const impl = (x: number[], w: number[], q = p(1, 1)) => nb!.convImplementations(x, w, q);
    try {
      for (const k of ['forward', 'backwardData', 'backwardWeights'] as const) {
        assert.match(impl([2, 32, 8, 8], [16, 32, 3, 3])[k], /wino/, `32 channels at 8x8, ${k}`);
        assert.match(impl([2, 16, 7, 7], [16, 16, 3, 3])[k], /wino/, `16 channels at 7x7, ${k}`);
        assert.doesNotMatch(impl([2, 3, 16, 16], [32, 3, 3, 3])[k], /wino/, `3 input channels, ${k}`);
        assert.doesNotMatch(impl([2, 64, 4, 4], [64, 64, 3, 3])[k], /wino/, `4x4 maps, ${k}`);
        assert.doesNotMatch(impl([2, 32, 16, 16], [32, 32, 3, 3], p(2, 1))[k], /wino/, `stride 2, ${k}`);
        assert.doesNotMatch(impl([2, 32, 16, 16], [32, 32, 1, 1], p(1, 0))[k], /wino/, `1x1, ${k}`);
      }
      nb!.setConvAlgorithm('direct');
      assert.equal(nb!.info.convAlgorithm, 'direct');
      assert.doesNotMatch(impl([2, 32, 8, 8], [16, 32, 3, 3]).forward, /wino/);
      assert.throws(() => nb!.setConvAlgorithm('fft' as never), /winograd or direct, got "fft"/);
    } finally {
      nb!.setConvAlgorithm('winograd');
    }
  });

  it(
    "both algorithms give the reference backend's output and gradients (Winograd within 1e-4, its rounding ~10x " +
      "direct's; the same kernels where the CPU has no Winograd)",
    () => {
      const inputs = [
        {
          values: Float32Array.from({ length: 2 * 48 * 12 * 12 }, (_, i) => Math.sin(1.3 * i)),
          shape: [2, 48, 12, 12],
        },
        {
          values: Float32Array.from({ length: 32 * 48 * 9 }, (_, i) => 0.05 * Math.sin(0.7 * i + 1)),
          shape: [32, 48, 3, 3],
        },
        { values: Float32Array.from({ length: 32 }, (_, i) => 0.1 * Math.cos(i)), shape: [32] },
      ];
      const graph = ([x, w, b]: Tensor[]) => ops.conv2d(x, w, b, { padding: 1 });
      const ref = runWithGrads(reference, inputs, graph);
      const errors: Record<string, number> = {};
      try {
        for (const a of ['winograd', 'direct'] as const) {
          nb!.setConvAlgorithm(a);
          const ours = runWithGrads(native!, inputs, graph, ref.probe);
          assertClose(ours.y, ref.y, 1e-4, 1e-4, `${a}: y`);
          ours.grads.forEach((g, i) => assertClose(g!, ref.grads[i]!, 1e-4, 1e-4, `${a}: gradient of input ${i}`));
          errors[a] = maxAbsDiff(ours.y, ref.y);
        }
      } finally {
        nb!.setConvAlgorithm('winograd');
      }
      // the two really are different algorithms where the CPU has both; elsewhere asking for Winograd runs the direct
      // kernels
      if (nb!.info.winograd)
        assert.ok(errors.winograd > errors.direct, `max error: Winograd ${errors.winograd}, direct ${errors.direct}`);
      else
        assert.equal(
          errors.winograd,
          errors.direct,
          'without Winograd kernels both requests run the same direct kernels',
        );
    },
  );

  it('info names the kernels that really run: Winograd only where oneDNN has it for this CPU', () => {
    const wino = /wino/.test(nb!.info.conv3x3);
    assert.equal(nb!.info.winograd, wino, nb!.info.conv3x3);
    assert.equal(nb!.info.convAlgorithm, wino ? 'winograd' : 'direct');
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'dist/src/cli/main.js'), '--conv-algorithm', 'winograd', 'info'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, wino ? /"convAlgorithm":"winograd"/ : /"convAlgorithm":"direct"/);
    assert.match(r.stdout, /conv 3x3\s+\S+/);
    if (!wino) assert.match(r.stderr, /Winograd kernels only for AVX-512 CPUs; this one runs direct ones/);
  });

  it('the AVX2 level passes the native tests on this CPU too (ONEDNN_MAX_CPU_ISA=AVX2 and the x86-64-v3 build)', {
    skip:
      NATIVE_SKIP ||
      (process.env.ONEDNN_MAX_CPU_ISA
        ? 'already running under ONEDNN_MAX_CPU_ISA'
        : !nb!.info.winograd
          ? 'this CPU runs the AVX2 level already (the main run tests it)'
          : false),
  }, () => {
    const env = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', DDPM_NATIVE_BUILD: 'v3' };
    const info = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), 'info'], { encoding: 'utf8', env });
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /"convAlgorithm":"direct"/);
    assert.match(info.stdout, /"blockedLayout":false/);
    const files = ['layouts', 'native', 'engine-parity'].map((f) => join(ROOT, 'dist', 'test', `${f}.test.js`));
    const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
      encoding: 'utf8',
      env,
      timeout: 300_000,
    });
    assert.equal(
      r.status,
      0,
      `under ONEDNN_MAX_CPU_ISA=AVX2:\n${r.stdout
        .split('\n')
        .filter((l) => /not ok|Error|expected/.test(l))
        .join('\n')}`,
    );
  });

  it('--conv-algorithm sets it; other backends warn that they have no choice', () => {
    const cli = join(ROOT, 'dist/src/cli/main.js');
    const r = spawnSync(process.execPath, [cli, '--conv-algorithm', 'direct', 'info'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /"convAlgorithm":"direct"/);
    const env = spawnSync(process.execPath, [cli, 'info'], {
      encoding: 'utf8',
      env: { ...process.env, DDPM_CONV_ALGORITHM: 'fft' },
    });
    assert.notEqual(env.status, 0);
    assert.match(env.stderr, /DDPM_CONV_ALGORITHM: expected winograd or direct, got "fft"/);
    const ref = spawnSync(process.execPath, [cli, '--backend', 'reference', '--conv-algorithm', 'direct', 'info'], {
      encoding: 'utf8',
    });
    assert.equal(ref.status, 0, ref.stderr);
    assert.match(ref.stderr, /warning: --conv-algorithm direct: only the native backend has a choice/);
  });
});

describe('--precision (CLI)', () => {
  it('bf16 is refused for training, with the reason', () => {
    const r = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist/src/cli/main.js'),
        '--precision',
        'bf16',
        'train',
        '--data',
        'embedded',
        '--out',
        join(ROOT, 'no-such-run'),
      ],
      { encoding: 'utf8' },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--precision bf16: training runs in float32/);
    assert.equal(existsSync(join(ROOT, 'no-such-run')), false);
  });
  it('an unknown precision is refused', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), '--precision', 'f16', 'info'], {
      encoding: 'utf8',
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--precision.*f16.*f32, bf16/s);
  });
});

describe('dropout masks drawn by the native backend', { skip: NATIVE_SKIP }, () => {
  it("equal the engine's host masks bit for bit (odd sizes, several keys and probabilities)", () => {
    for (const [shape, p, seed, stream] of [
      [[3, 5, 7, 3], 0.1, 0, 6],
      [[2, 32, 9, 9], 0.5, 12345, 2 ** 40 + 17],
      [[1, 1, 1, 5], 0.3, 2 ** 33 + 1, 99],
      // key words above 1e9 (a seed of 4e9): refused as "an invalid dimension" before
      [[2, 3, 4, 4], 0.2, 4_000_000_000, 3_000_000_001],
    ] as [number[], number, number, number][]) {
      const n = shape.reduce((a, b) => a * b, 1),
        per = n / shape[0];
      const host = new Float32Array(n);
      fillRandom(host, per, { seed, stream }, 0, 'uniform');
      for (let i = 0; i < n; i++) host[i] = host[i] >= p ? 1 / (1 - p) : 0;
      const ours = native!.readSync(native!.dropoutMask!(n, per, keyWords({ seed, stream }), p));
      assert.deepEqual(Array.from(ours), Array.from(host), `shape ${shape} p ${p}`);
      const kept = host.filter((v) => v > 0).length / n;
      assert.ok(Math.abs(kept - (1 - p)) < 0.15, `kept ${kept}`);
    }
  });
  for (const precision of ['f32', 'bf16'] as const)
    it(`ops.dropout gives the same values on native and reference, for plain inputs and inputs in a layout ` +
      `(${precision})`, {
      skip: layoutSkip(precision),
    }, () => {
      const key = { seed: 7, stream: 123 };
      const x = det([4, 16, 6, 6], 3),
        w = det([32, 16, 3, 3], 4, 0.1);
      const run = () => {
        const h = noGrad(() => ops.conv2d(x, w, null, { padding: 1, precision }));
        return [ops.dropout(x, 0.25, key), ops.dropout(h, 0.25, key)];
      };
      const ours = withBackend(native!, run),
        ref = withBackend(reference, run);
      assert.ok(nb!.isBlocked(ours[1].storage), 'the dropped-out conv output left its layout');
      assert.deepEqual(Array.from(ours[0].dataSync()), Array.from(ref[0].dataSync()), 'plain');
      assertClose(ours[1].dataSync(), ref[1].dataSync(), 1e-4, 1e-4, 'in a layout');
    });
});
