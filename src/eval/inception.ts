// Inception-v3 as pytorch-fid uses it for FID (its FIDInceptionA/C/E_1/E_2 blocks, i.e. the 2015 TensorFlow graph's
// quirks): average pools that do not count padding, and a max pool in the last block's pool branch. Input: images on
// [-1, 1], resized to 299 x 299 bilinearly (align_corners = false) as pytorch-fid does; output: the 2048-d pool3
// features (and the 1008 logits of the 2015 classifier when its fc layer is present, for the Inception Score).
// Weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth turned into safetensors (docs/metrics.md), with
// torchvision's names (Conv2d_1a_3x3.conv.weight, Conv2d_1a_3x3.bn.running_mean, Mixed_5b.branch1x1..., fc.weight).
// Batch norms (eps 0.001) are folded into the convolutions at load. Pure: weights come in as a map.
import * as ops from '../engine/ops.js';
import { type Tensor, fmtShape, noGrad } from '../engine/tensor.js';

export const INCEPTION_FEATURES = 2048;

type Weights = Map<string, { shape: number[]; data: Float32Array }>;

/** [N, C, H, W] resized to [N, C, outH, outW] as PyTorch's bilinear interpolation with align_corners = false. */
export function resizeBilinear(x: Float32Array, shape: number[], outH: number, outW: number): Float32Array {
  const [N, C, H, W] = shape;
  const out = new Float32Array(N * C * outH * outW);
  const axis = (o: number, inSize: number, outSize: number) => {
    const src = Math.max(0, ((o + 0.5) * inSize) / outSize - 0.5);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    return { i0, i1: Math.min(i0 + 1, inSize - 1), l: src - i0 };
  };
  const ys = Array.from({ length: outH }, (_, o) => axis(o, H, outH)),
    xs = Array.from({ length: outW }, (_, o) => axis(o, W, outW));
  for (let p = 0; p < N * C; p++)
    for (let oh = 0; oh < outH; oh++) {
      const { i0: y0, i1: y1, l: ly } = ys[oh];
      for (let ow = 0; ow < outW; ow++) {
        const { i0: x0, i1: x1, l: lx } = xs[ow];
        const a = x[(p * H + y0) * W + x0],
          b = x[(p * H + y0) * W + x1],
          c = x[(p * H + y1) * W + x0],
          d = x[(p * H + y1) * W + x1];
        out[(p * outH + oh) * outW + ow] = (1 - ly) * ((1 - lx) * a + lx * b) + ly * ((1 - lx) * c + lx * d);
      }
    }
  return out;
}

interface ConvSpec {
  name: string;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride?: number;
  pad?: [number, number];
}

/** Every BasicConv2d (conv without bias + batch norm + ReLU) of the network, in torchvision's order. */
export function inceptionConvs(): ConvSpec[] {
  const c = (
    name: string,
    cin: number,
    cout: number,
    kh: number,
    kw = kh,
    stride = 1,
    pad: [number, number] = [0, 0],
  ): ConvSpec => ({ name, cin, cout, kh, kw, stride, pad });
  const specs: ConvSpec[] = [
    c('Conv2d_1a_3x3', 3, 32, 3, 3, 2),
    c('Conv2d_2a_3x3', 32, 32, 3),
    c('Conv2d_2b_3x3', 32, 64, 3, 3, 1, [1, 1]),
    c('Conv2d_3b_1x1', 64, 80, 1),
    c('Conv2d_4a_3x3', 80, 192, 3),
  ];
  const A = (n: string, cin: number, pool: number) =>
    specs.push(
      c(`${n}.branch1x1`, cin, 64, 1),
      c(`${n}.branch5x5_1`, cin, 48, 1),
      c(`${n}.branch5x5_2`, 48, 64, 5, 5, 1, [2, 2]),
      c(`${n}.branch3x3dbl_1`, cin, 64, 1),
      c(`${n}.branch3x3dbl_2`, 64, 96, 3, 3, 1, [1, 1]),
      c(`${n}.branch3x3dbl_3`, 96, 96, 3, 3, 1, [1, 1]),
      c(`${n}.branch_pool`, cin, pool, 1),
    );
  A('Mixed_5b', 192, 32);
  A('Mixed_5c', 256, 64);
  A('Mixed_5d', 288, 64);
  specs.push(
    c('Mixed_6a.branch3x3', 288, 384, 3, 3, 2),
    c('Mixed_6a.branch3x3dbl_1', 288, 64, 1),
    c('Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3, 1, [1, 1]),
    c('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3, 2),
  );
  const C = (n: string, c7: number) =>
    specs.push(
      c(`${n}.branch1x1`, 768, 192, 1),
      c(`${n}.branch7x7_1`, 768, c7, 1),
      c(`${n}.branch7x7_2`, c7, c7, 1, 7, 1, [0, 3]),
      c(`${n}.branch7x7_3`, c7, 192, 7, 1, 1, [3, 0]),
      c(`${n}.branch7x7dbl_1`, 768, c7, 1),
      c(`${n}.branch7x7dbl_2`, c7, c7, 7, 1, 1, [3, 0]),
      c(`${n}.branch7x7dbl_3`, c7, c7, 1, 7, 1, [0, 3]),
      c(`${n}.branch7x7dbl_4`, c7, c7, 7, 1, 1, [3, 0]),
      c(`${n}.branch7x7dbl_5`, c7, 192, 1, 7, 1, [0, 3]),
      c(`${n}.branch_pool`, 768, 192, 1),
    );
  C('Mixed_6b', 128);
  C('Mixed_6c', 160);
  C('Mixed_6d', 160);
  C('Mixed_6e', 192);
  specs.push(
    c('Mixed_7a.branch3x3_1', 768, 192, 1),
    c('Mixed_7a.branch3x3_2', 192, 320, 3, 3, 2),
    c('Mixed_7a.branch7x7x3_1', 768, 192, 1),
    c('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7, 1, [0, 3]),
    c('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1, 1, [3, 0]),
    c('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3, 2),
  );
  const E = (n: string, cin: number) =>
    specs.push(
      c(`${n}.branch1x1`, cin, 320, 1),
      c(`${n}.branch3x3_1`, cin, 384, 1),
      c(`${n}.branch3x3_2a`, 384, 384, 1, 3, 1, [0, 1]),
      c(`${n}.branch3x3_2b`, 384, 384, 3, 1, 1, [1, 0]),
      c(`${n}.branch3x3dbl_1`, cin, 448, 1),
      c(`${n}.branch3x3dbl_2`, 448, 384, 3, 3, 1, [1, 1]),
      c(`${n}.branch3x3dbl_3a`, 384, 384, 1, 3, 1, [0, 1]),
      c(`${n}.branch3x3dbl_3b`, 384, 384, 3, 1, 1, [1, 0]),
      c(`${n}.branch_pool`, cin, 192, 1),
    );
  E('Mixed_7b', 1280);
  E('Mixed_7c', 2048);
  return specs;
}

export class InceptionV3 {
  private readonly w = new Map<string, { weight: Tensor; bias: Tensor; spec: ConvSpec }>();
  private readonly fc: { weight: Tensor; bias: Tensor } | null = null;

  /** weights by torchvision name; `where` names the file in errors. The fc layer is optional. */
  constructor(weights: Weights, where: string) {
    const get = (name: string, shape: number[]) => {
      const t = weights.get(name);
      if (!t) throw new Error(`${where}: tensor "${name}" is missing (not pytorch-fid's Inception-v3)`);
      if (t.shape.join(',') !== shape.join(','))
        throw new Error(`${where}: tensor "${name}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
      return t.data;
    };
    for (const s of inceptionConvs()) {
      const w = get(`${s.name}.conv.weight`, [s.cout, s.cin, s.kh, s.kw]);
      const g = get(`${s.name}.bn.weight`, [s.cout]),
        b = get(`${s.name}.bn.bias`, [s.cout]);
      const mean = get(`${s.name}.bn.running_mean`, [s.cout]),
        v = get(`${s.name}.bn.running_var`, [s.cout]);
      // fold the batch norm (eps 0.001, as the 2015 graph): w' = w g / sqrt(v + eps), b' = beta - mean g / sqrt(v +
      // eps)
      const per = s.cin * s.kh * s.kw;
      const wf = new Float32Array(w.length),
        bf = new Float32Array(s.cout);
      for (let o = 0; o < s.cout; o++) {
        const scale = g[o] / Math.sqrt(v[o] + 0.001);
        for (let i = 0; i < per; i++) wf[o * per + i] = w[o * per + i] * scale;
        bf[o] = b[o] - mean[o] * scale;
      }
      this.w.set(s.name, {
        weight: ops.fromArray(wf, [s.cout, s.cin, s.kh, s.kw]),
        bias: ops.fromArray(bf, [s.cout]),
        spec: s,
      });
    }
    if (weights.has('fc.weight')) {
      const fw = weights.get('fc.weight')!;
      if (fw.shape.length !== 2 || fw.shape[1] !== INCEPTION_FEATURES)
        throw new Error(`${where}: tensor "fc.weight" has shape ${fmtShape(fw.shape)}, expected [classes, 2048]`);
      this.fc = {
        weight: ops.fromArray(fw.data, fw.shape),
        bias: ops.fromArray(get('fc.bias', [fw.shape[0]]), [fw.shape[0]]),
      };
    }
  }

  private conv(name: string, x: Tensor): Tensor {
    const { weight, bias, spec } = this.w.get(name)!;
    const [ph, pw] = spec.pad ?? [0, 0];
    const y = ops.conv2d(x, weight, bias, { stride: spec.stride ?? 1, padding: [ph, ph, pw, pw] });
    return ops.clamp(y, 0, Infinity); // ReLU
  }

  /** x: [N, 3, H, W] already at the network's resolution (299 x 299 for FID), values on [-1, 1]. */
  forward(x: Tensor): { features: Tensor; logits: Tensor | null } {
    if (x.shape.length !== 4 || x.shape[1] !== 3 || x.shape[2] < 75 || x.shape[3] < 75)
      throw new Error(`inception: input ${fmtShape(x.shape)} is not [N, 3, >=75, >=75]`);
    const cv = (n: string, h: Tensor) => this.conv(n, h);
    const avg = (h: Tensor) => ops.pool2d('avg', h, 3, 1, 1, false); // pytorch-fid: count_include_pad=False
    let h = cv('Conv2d_2b_3x3', cv('Conv2d_2a_3x3', cv('Conv2d_1a_3x3', x)));
    h = ops.pool2d('max', h, 3, 2);
    h = ops.pool2d('max', cv('Conv2d_4a_3x3', cv('Conv2d_3b_1x1', h)), 3, 2);
    for (const n of ['Mixed_5b', 'Mixed_5c', 'Mixed_5d'])
      h = ops.concat([
        cv(`${n}.branch1x1`, h),
        cv(`${n}.branch5x5_2`, cv(`${n}.branch5x5_1`, h)),
        cv(`${n}.branch3x3dbl_3`, cv(`${n}.branch3x3dbl_2`, cv(`${n}.branch3x3dbl_1`, h))),
        cv(`${n}.branch_pool`, avg(h)),
      ]);
    h = ops.concat([
      cv('Mixed_6a.branch3x3', h),
      cv('Mixed_6a.branch3x3dbl_3', cv('Mixed_6a.branch3x3dbl_2', cv('Mixed_6a.branch3x3dbl_1', h))),
      ops.pool2d('max', h, 3, 2),
    ]);
    for (const n of ['Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e']) {
      let d = cv(`${n}.branch7x7dbl_1`, h);
      for (const k of [2, 3, 4, 5]) d = cv(`${n}.branch7x7dbl_${k}`, d);
      h = ops.concat([
        cv(`${n}.branch1x1`, h),
        cv(`${n}.branch7x7_3`, cv(`${n}.branch7x7_2`, cv(`${n}.branch7x7_1`, h))),
        d,
        cv(`${n}.branch_pool`, avg(h)),
      ]);
    }
    let b7 = cv('Mixed_7a.branch7x7x3_1', h);
    for (const k of [2, 3, 4]) b7 = cv(`Mixed_7a.branch7x7x3_${k}`, b7);
    h = ops.concat([cv('Mixed_7a.branch3x3_2', cv('Mixed_7a.branch3x3_1', h)), b7, ops.pool2d('max', h, 3, 2)]);
    for (const n of ['Mixed_7b', 'Mixed_7c']) {
      const b3 = cv(`${n}.branch3x3_1`, h);
      const d = cv(`${n}.branch3x3dbl_2`, cv(`${n}.branch3x3dbl_1`, h));
      // FIDInceptionE_1 averages without padding; FIDInceptionE_2 takes the max (a bug of the 2015 graph kept for FID)
      const pool = n === 'Mixed_7b' ? avg(h) : ops.pool2d('max', h, 3, 1, 1);
      h = ops.concat([
        cv(`${n}.branch1x1`, h),
        ops.concat([cv(`${n}.branch3x3_2a`, b3), cv(`${n}.branch3x3_2b`, b3)]),
        ops.concat([cv(`${n}.branch3x3dbl_3a`, d), cv(`${n}.branch3x3dbl_3b`, d)]),
        cv(`${n}.branch_pool`, pool),
      ]);
    }
    const features = ops.mean(h, [2, 3]);
    return { features, logits: this.fc ? ops.linear(features, this.fc.weight, this.fc.bias) : null };
  }

  /**
   * pool3 features (and softmax probabilities when the fc layer is loaded) of n images [n, 3, H, W] on [-1, 1]: each
   * batch is resized to size x size (299 for FID) bilinearly, as pytorch-fid does, then run; read back to the host.
   */
  async embed(
    images: Float32Array,
    n: number,
    hw: [number, number],
    batch = 16,
    size = 299,
    onBatch?: (done: number) => void,
  ): Promise<{ features: Float32Array; probs: Float32Array | null }> {
    const [H, W] = hw,
      per = 3 * H * W;
    const features = new Float32Array(n * INCEPTION_FEATURES);
    let probs: Float32Array | null = null;
    for (let s = 0; s < n; s += batch) {
      const b = Math.min(batch, n - s);
      const x =
        H === size && W === size
          ? images.slice(s * per, (s + b) * per)
          : resizeBilinear(images.subarray(s * per, (s + b) * per), [b, 3, H, W], size, size);
      const out = noGrad(() => {
        const o = this.forward(ops.fromArray(x, [b, 3, size, size]));
        return { features: o.features, probs: o.logits ? ops.softmax(o.logits) : null };
      });
      features.set(await out.features.data(), s * INCEPTION_FEATURES);
      if (out.probs) {
        const k = out.probs.shape[1];
        probs ??= new Float32Array(n * k);
        probs.set(await out.probs.data(), s * k);
      }
      onBatch?.(s + b);
    }
    return { features, probs };
  }
}
