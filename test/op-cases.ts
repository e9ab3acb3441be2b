// The op cases every backend is checked on against the reference backend: forward and backward, odd shapes.
import * as ops from '../src/engine/ops.js';
import type { Tensor } from '../src/engine/tensor.js';
import { randValues } from './helpers.js';

export interface OpCase {
  name: string;
  shapes: number[][];
  fn: (xs: Tensor[]) => Tensor;
  positive?: boolean;
  atol?: number;
}

export const OP_CASES: OpCase[] = [
  {
    name: 'conv2d 3x3 s1 p1 bias',
    shapes: [[2, 5, 7, 9], [6, 5, 3, 3], [6]],
    fn: ([x, w, b]) => ops.conv2d(x, w, b, { padding: 1 }),
  },
  {
    name: 'conv2d 3x3 s2 asymmetric pad',
    shapes: [[3, 4, 9, 8], [5, 4, 3, 3], [5]],
    fn: ([x, w, b]) => ops.conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1] }),
  },
  {
    name: 'conv2d 1x1 no bias',
    shapes: [
      [2, 7, 5, 5],
      [3, 7, 1, 1],
    ],
    fn: ([x, w]) => ops.conv2d(x, w, null),
  },
  {
    name: 'conv2d 3x3 s2 p1',
    shapes: [[1, 3, 11, 11], [4, 3, 3, 3], [4]],
    fn: ([x, w, b]) => ops.conv2d(x, w, b, { stride: 2, padding: 1 }),
  },
  { name: 'linear', shapes: [[7, 13], [5, 13], [5]], fn: ([x, w, b]) => ops.linear(x, w, b) },
  {
    name: 'batched matmul',
    shapes: [
      [3, 4, 6],
      [3, 6, 5],
    ],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: 'batched matmul transposed',
    shapes: [
      [3, 6, 4],
      [3, 5, 6],
    ],
    fn: ([a, b]) => ops.matmul(a, b, true, true),
  },
  { name: 'group norm', shapes: [[3, 8, 5, 3], [8], [8]], fn: ([x, g, b]) => ops.groupNorm(x, g, b, 4, 1e-6) },
  {
    name: 'group norm + silu',
    shapes: [[2, 6, 7, 7], [6], [6]],
    fn: ([x, g, b]) => ops.groupNorm(x, g, b, 3, 1e-6, true),
  },
  { name: 'silu', shapes: [[3, 17]], fn: ([x]) => ops.silu(x) },
  { name: 'softmax', shapes: [[4, 3, 19]], fn: ([x]) => ops.softmax(x) },
  {
    name: 'add broadcast',
    shapes: [
      [2, 3, 4, 5],
      [2, 3, 1, 1],
    ],
    fn: ([a, b]) => ops.add(a, b),
  },
  {
    name: 'sub broadcast',
    shapes: [
      [1, 3, 4, 1],
      [2, 1, 1, 5],
    ],
    fn: ([a, b]) => ops.sub(a, b),
  },
  { name: 'mul broadcast', shapes: [[2, 3, 4, 5], [5]], fn: ([a, b]) => ops.mul(a, b) },
  {
    name: 'div broadcast',
    shapes: [
      [2, 3, 4, 5],
      [2, 1, 4, 1],
    ],
    fn: ([a, b]) => ops.div(a, b),
    positive: true,
  },
  {
    name: 'concat',
    shapes: [
      [2, 3, 4, 5],
      [2, 2, 4, 5],
      [2, 1, 4, 5],
    ],
    fn: (xs) => ops.concat(xs),
  },
  { name: 'slice channels', shapes: [[2, 7, 3, 2]], fn: ([x]) => ops.sliceChannels(x, 2, 4) },
  { name: 'upsample2x', shapes: [[2, 3, 5, 7]], fn: ([x]) => ops.upsample2x(x) },
  { name: 'permute', shapes: [[2, 3, 4, 5]], fn: ([x]) => ops.permute(x, [0, 2, 3, 1]) },
  { name: 'sum axes', shapes: [[3, 4, 5]], fn: ([x]) => ops.sum(x, [0, 2], true) },
  { name: 'mean all', shapes: [[3, 4, 5]], fn: ([x]) => ops.mean(x) },
  { name: 'exp', shapes: [[4, 9]], fn: ([x]) => ops.exp(x) },
  { name: 'log', shapes: [[4, 9]], fn: ([x]) => ops.log(x), positive: true },
  { name: 'sqrt', shapes: [[4, 9]], fn: ([x]) => ops.sqrt(x), positive: true },
  { name: 'square', shapes: [[4, 9]], fn: ([x]) => ops.square(x) },
  { name: 'tanh', shapes: [[4, 9]], fn: ([x]) => ops.tanh(x) },
  { name: 'affine + reshape', shapes: [[4, 9]], fn: ([x]) => ops.reshape(ops.affine(x, 2.5, -1), [6, 6]) },
  { name: 'normal cdf', shapes: [[5, 7]], fn: ([x]) => ops.normalCdf(x) },
  { name: 'clamp', shapes: [[6, 7]], fn: ([x]) => ops.clamp(x, -0.5, 0.7) },
  { name: 'clamp below only', shapes: [[6, 7]], fn: ([x]) => ops.clamp(x, -0.2, Infinity) },
  {
    name: 'conv2d 3x3 more channels than a GEMM tile',
    shapes: [[2, 70, 9, 9], [67, 70, 3, 3], [67]],
    fn: ([x, w, b]) => ops.conv2d(x, w, b, { padding: 1 }),
  },
  {
    name: 'matmul larger than a GEMM tile',
    shapes: [
      [2, 70, 130],
      [2, 130, 67],
    ],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  { name: 'softmax rows longer than a workgroup', shapes: [[3, 300]], fn: ([x]) => ops.softmax(x) },
  {
    name: 'group norm groups longer than a workgroup',
    shapes: [[2, 4, 20, 20], [4], [4]],
    fn: ([x, g, b]) => ops.groupNorm(x, g, b, 2, 1e-6, true),
  },
  { name: 'full sum of a large tensor (split across threads)', shapes: [[70000]], fn: ([x]) => ops.sum(x) },
];

/** Seeded inputs for a case (positive where the op needs them). */
export function caseInputs(c: OpCase): { values: Float32Array; shape: number[] }[] {
  return c.shapes.map((s) => {
    const v = randValues(s.reduce((a, b) => a * b, 1));
    if (c.positive) for (let i = 0; i < v.length; i++) v[i] = Math.abs(v[i]) + 0.5;
    return { values: v, shape: s };
  });
}
