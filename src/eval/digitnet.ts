// The small feature network for sample-quality metrics on small images (scripts/train_digitnet.py trains it in
// PyTorch; its weights ship in models/): for 28x28 digits (MNIST, Fashion-MNIST) and for 32x32 RGB (CIFAR-10).
// conv 3x3 (C->32) + GroupNorm(8) + SiLU, conv 3x3 stride 2 (32->64) + GN + SiLU, conv 3x3 stride 2 (64->128) + GN +
// SiLU; the mean over positions is the 128-d feature vector; a linear layer gives 10 class logits. Runs on any
// backend. Pure: weights come in as a map of tensors.
import * as ops from '../engine/ops.js';
import { type Tensor, fmtShape, noGrad } from '../engine/tensor.js';

/** The shapes for C input channels (1: digits, 3: RGB). */
export function digitNetShapes(C: number): Record<string, number[]> {
  return {
    'conv1.weight': [32, C, 3, 3],
    'conv1.bias': [32],
    'norm1.weight': [32],
    'norm1.bias': [32],
    'conv2.weight': [64, 32, 3, 3],
    'conv2.bias': [64],
    'norm2.weight': [64],
    'norm2.bias': [64],
    'conv3.weight': [128, 64, 3, 3],
    'conv3.bias': [128],
    'norm3.weight': [128],
    'norm3.bias': [128],
    'fc.weight': [10, 128],
    'fc.bias': [10],
  };
}
export const DIGITNET_FEATURES = 128;
export const DIGITNET_CLASSES = 10;

export class DigitNet {
  private readonly p = new Map<string, Tensor>();
  /** the images it takes: channels (from conv1's weights) and height = width (the file's metadata "image_size"; 28
   *  when absent, as in the digit networks written before it existed) */
  readonly channels: number;
  readonly size: number;

  /** weights: name -> values (checked against digitNetShapes); `where` names the file in errors. */
  constructor(
    weights: Map<string, { shape: number[]; data: Float32Array }>,
    where: string,
    metadata: Record<string, string> = {},
  ) {
    const c1 = weights.get('conv1.weight');
    this.channels = c1 && c1.shape.length === 4 && (c1.shape[1] === 1 || c1.shape[1] === 3) ? c1.shape[1] : 1;
    this.size = metadata.image_size === undefined ? 28 : Number(metadata.image_size);
    if (!Number.isInteger(this.size) || this.size < 8)
      throw new Error(
        `${where}: metadata "image_size" must be an integer of at least 8, got ${JSON.stringify(metadata.image_size)}`,
      );
    for (const [name, shape] of Object.entries(digitNetShapes(this.channels))) {
      const w = weights.get(name);
      if (!w) throw new Error(`${where}: tensor "${name}" is missing (not a digit network file)`);
      if (w.shape.join(',') !== shape.join(','))
        throw new Error(`${where}: tensor "${name}" has shape ${fmtShape(w.shape)}, expected ${fmtShape(shape)}`);
      this.p.set(name, ops.fromArray(w.data, shape));
    }
  }

  /** x: [N, C, S, S] on [-1, 1] (the diffusion data scale). Returns features [N, 128] and logits [N, 10]. */
  forward(x: Tensor): { features: Tensor; logits: Tensor } {
    const [C, S] = [this.channels, this.size];
    if (x.shape.length !== 4 || x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S)
      throw new Error(`feature network: input ${fmtShape(x.shape)} is not [N, ${C}, ${S}, ${S}]`);
    const g = (k: string) => this.p.get(k)!;
    const block = (h: Tensor, i: number, stride: number) =>
      ops.groupNorm(
        ops.conv2d(h, g(`conv${i}.weight`), g(`conv${i}.bias`), { stride, padding: 1 }),
        g(`norm${i}.weight`),
        g(`norm${i}.bias`),
        8,
        1e-5,
        true,
      );
    const h = block(block(block(x, 1, 1), 2, 2), 3, 2);
    const features = ops.mean(h, [2, 3]);
    return { features, logits: ops.linear(features, g('fc.weight'), g('fc.bias')) };
  }

  /**
   * Features and class probabilities of n images ([n * C * S * S] on [-1, 1]), batch by batch, read back to the host.
   */
  async embed(
    images: Float32Array,
    n: number,
    batch = 256,
    onBatch?: (done: number) => void,
  ): Promise<{ features: Float32Array; probs: Float32Array }> {
    const features = new Float32Array(n * DIGITNET_FEATURES),
      probs = new Float32Array(n * DIGITNET_CLASSES);
    const per = this.channels * this.size * this.size;
    for (let s = 0; s < n; s += batch) {
      const b = Math.min(batch, n - s);
      const { f, p } = noGrad(() => {
        const out = this.forward(
          ops.fromArray(images.subarray(s * per, (s + b) * per), [b, this.channels, this.size, this.size]),
        );
        return { f: out.features, p: ops.softmax(out.logits) };
      });
      features.set(await f.data(), s * DIGITNET_FEATURES);
      probs.set(await p.data(), s * DIGITNET_CLASSES);
      onBatch?.(s + b);
    }
    return { features, probs };
  }
}
