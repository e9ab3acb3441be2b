// The U-Net of the paper (Appendix B; a PixelCNN++-like backbone with Wide ResNet blocks, GroupNorm, SiLU, one-head
// self-attention and a sinusoidal timestep embedding), with the parameter names and layouts of diffusers'
// UNet2DModel so that checkpoints load both ways.
import * as ops from '../engine/ops.js';
import { type Tensor, fmtShape } from '../engine/tensor.js';
import { fillRandom } from '../engine/random.js';
import { streams } from '../engine/streams.js';
import { type UNetConfig, validateConfig } from './config.js';

export { PRESETS, type UNetConfig, validateConfig, withDefaults } from './config.js';

/** Sinusoidal timestep embedding: half = dim/2, freq_i = exp(-ln(10000) i / (half - shift)), [sin(t f), cos(t f)]. */
export function timestepEmbedding(t: Int32Array | Float32Array | number[], dim: number, shift: number): Tensor {
  const half = dim >> 1;
  const out = new Float32Array(t.length * dim);
  for (let b = 0; b < t.length; b++)
    for (let i = 0; i < half; i++) {
      // float32 frequencies, as diffusers computes them
      const f = Math.fround(Math.exp(Math.fround((-Math.log(10000) * i) / (half - shift))));
      const arg = Math.fround(t[b] * f);
      out[b * dim + i] = Math.sin(arg);
      out[b * dim + half + i] = Math.cos(arg);
    }
  return ops.fromArray(out, [t.length, dim]);
}

interface ParamSpec {
  name: string;
  shape: number[];
  init: 'fanavg' | 'zero' | 'one' | 'tiny';
}

export interface ForwardOptions {
  /** Dropout on when training: masks come from streams.dropout(seed, micro, site), one site per residual block. */
  dropout?: { seed: number; micro: number };
  /** the class of each sample (class_embed_type null or "timestep") */
  classLabels?: Int32Array | number[];
  /** the class embedding of each sample, [B, 4 * block_out_channels[0]] (class_embed_type "identity") */
  classEmbeds?: Tensor;
}

/** Whether a config conditions on classes (and so its forward needs class labels). */
export const isClassConditional = (c: UNetConfig): boolean =>
  c.class_embed_type === 'identity' || c.class_embed_type === 'timestep' || (c.num_class_embeds ?? null) !== null;

export class UNet {
  readonly config: UNetConfig;
  readonly params = new Map<string, Tensor>();
  private readonly specs: ParamSpec[] = [];
  private dropoutSite = 0;
  /**
   * 'bf16': the convolutions of forward() round their inputs and weights to bfloat16 and accumulate in float32
   * (sampling and evaluation on CPUs with AVX512-BF16 / AMX; forward only). Attention and the linear layers stay f32.
   */
  precision: ops.Precision = 'f32';

  constructor(config: UNetConfig) {
    validateConfig(config);
    this.config = config;
    this.declare();
    for (const s of this.specs) this.params.set(s.name, ops.zeros(s.shape, true));
  }

  get parameterCount(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  /**
   * The official initialisation: variance scaling (fan_avg, uniform, scale 1); ~0 (scale 1e-10) for the last conv of
   * each block, attention output and the final conv.
   */
  init(seed: number): this {
    this.specs.forEach((s, i) => {
      const p = this.params.get(s.name)!;
      const v = new Float32Array(p.size);
      if (s.init === 'one') v.fill(1);
      else if (s.init !== 'zero') {
        const scale = s.init === 'tiny' ? 1e-10 : 1;
        const recept = s.shape.length === 4 ? s.shape[2] * s.shape[3] : 1;
        const fanIn = s.shape[1] * recept,
          fanOut = s.shape[0] * recept;
        const limit = Math.sqrt((3 * scale) / ((fanIn + fanOut) / 2));
        fillRandom(v, p.size, streams.init(seed, i), 0, 'uniform');
        for (let k = 0; k < p.size; k++) v[k] = (2 * v[k] - 1) * limit;
      }
      p.write(v);
    });
    return this;
  }

  private add(name: string, shape: number[], init: ParamSpec['init']) {
    this.specs.push({ name, shape, init });
  }
  private conv(name: string, cin: number, cout: number, k: number, init: ParamSpec['init'] = 'fanavg') {
    this.add(`${name}.weight`, [cout, cin, k, k], init);
    this.add(`${name}.bias`, [cout], 'zero');
  }
  private lin(name: string, cin: number, cout: number, init: ParamSpec['init'] = 'fanavg') {
    this.add(`${name}.weight`, [cout, cin], init);
    this.add(`${name}.bias`, [cout], 'zero');
  }
  private norm(name: string, c: number) {
    this.add(`${name}.weight`, [c], 'one');
    this.add(`${name}.bias`, [c], 'zero');
  }
  private resnet(name: string, cin: number, cout: number, temb: number) {
    this.norm(`${name}.norm1`, cin);
    this.conv(`${name}.conv1`, cin, cout, 3);
    this.lin(`${name}.time_emb_proj`, temb, cout);
    this.norm(`${name}.norm2`, cout);
    this.conv(`${name}.conv2`, cout, cout, 3, 'tiny');
    if (cin !== cout) this.conv(`${name}.conv_shortcut`, cin, cout, 1);
  }
  private attention(name: string, c: number) {
    this.norm(`${name}.group_norm`, c);
    this.lin(`${name}.to_q`, c, c);
    this.lin(`${name}.to_k`, c, c);
    this.lin(`${name}.to_v`, c, c);
    this.lin(`${name}.to_out.0`, c, c, 'tiny');
  }

  /** The parameter list, in the order of diffusers' UNet2DModel. */
  private declare() {
    const c = this.config,
      ch = c.block_out_channels,
      L = c.layers_per_block,
      temb = ch[0] * 4;
    this.conv('conv_in', c.in_channels, ch[0], 3);
    this.lin('time_embedding.linear_1', ch[0], temb);
    this.lin('time_embedding.linear_2', temb, temb);
    // the class embedding starts at zero: a conditional model begins as the unconditional one
    if (c.class_embed_type === 'timestep') {
      this.lin('class_embedding.linear_1', ch[0], temb);
      this.lin('class_embedding.linear_2', temb, temb, 'zero');
    } else if (c.class_embed_type !== 'identity' && c.num_class_embeds)
      this.add('class_embedding.weight', [c.num_class_embeds, temb], 'zero');
    let out = ch[0];
    ch.forEach((co, i) => {
      const cin = out;
      out = co;
      for (let j = 0; j < L; j++) {
        this.resnet(`down_blocks.${i}.resnets.${j}`, j === 0 ? cin : co, co, temb);
        if (c.down_block_types[i] === 'AttnDownBlock2D') this.attention(`down_blocks.${i}.attentions.${j}`, co);
      }
      if (i < ch.length - 1) this.conv(`down_blocks.${i}.downsamplers.0.conv`, co, co, 3);
    });
    const last = ch[ch.length - 1];
    this.resnet('mid_block.resnets.0', last, last, temb);
    this.attention('mid_block.attentions.0', last);
    this.resnet('mid_block.resnets.1', last, last, temb);
    const rev = [...ch].reverse();
    let prevOut = rev[0];
    rev.forEach((co, i) => {
      const cin = rev[Math.min(i + 1, rev.length - 1)];
      for (let j = 0; j <= L; j++) {
        const skip = j === L ? cin : co;
        const rin = j === 0 ? prevOut : co;
        this.resnet(`up_blocks.${i}.resnets.${j}`, rin + skip, co, temb);
        if (c.up_block_types[i] === 'AttnUpBlock2D') this.attention(`up_blocks.${i}.attentions.${j}`, co);
      }
      if (i < rev.length - 1) this.conv(`up_blocks.${i}.upsamplers.0.conv`, co, co, 3);
      prevOut = co;
    });
    this.norm('conv_norm_out', ch[0]);
    this.conv('conv_out', ch[0], c.out_channels, 3, 'tiny');
  }

  private p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`unet: missing parameter ${name}`);
    return t;
  }

  private gn(name: string, x: Tensor, silu: boolean): Tensor {
    return ops.groupNorm(
      x,
      this.p(`${name}.weight`),
      this.p(`${name}.bias`),
      this.config.norm_num_groups,
      this.config.norm_eps,
      silu,
    );
  }

  private convF(name: string, x: Tensor, opts: ops.Conv2dOptions = { padding: 1 }): Tensor {
    // conv_in stays f32 in bf16 mode: rounding x_t itself to 8 bits of mantissa would swamp eps at small t, where
    // x_t carries it scaled by sqrt(1 - alphabar_t) ~ 0.01 (and the layer is cheap: 1 or 3 input channels)
    const precision = name === 'conv_in' ? 'f32' : this.precision;
    return ops.conv2d(x, this.p(`${name}.weight`), this.p(`${name}.bias`), { ...opts, precision });
  }

  private resnetF(name: string, x: Tensor, tembAct: Tensor, o: ForwardOptions): Tensor {
    let h = this.gn(`${name}.norm1`, x, true);
    h = this.convF(`${name}.conv1`, h);
    const tproj = ops.linear(tembAct, this.p(`${name}.time_emb_proj.weight`), this.p(`${name}.time_emb_proj.bias`));
    h = ops.add(h, ops.reshape(tproj, [tproj.shape[0], tproj.shape[1], 1, 1]));
    h = this.gn(`${name}.norm2`, h, true);
    const site = this.dropoutSite++;
    if (o.dropout && this.config.dropout > 0)
      h = ops.dropout(h, this.config.dropout, streams.dropout(o.dropout.seed, o.dropout.micro, site));
    h = this.convF(`${name}.conv2`, h);
    const skip = this.params.has(`${name}.conv_shortcut.weight`)
      ? this.convF(`${name}.conv_shortcut`, x, { padding: 0 })
      : x;
    return ops.add(skip, h);
  }

  private attentionF(name: string, x: Tensor): Tensor {
    const [B, C, H, W] = x.shape;
    const h = this.gn(`${name}.group_norm`, x, false);
    const seq = ops.permute(ops.reshape(h, [B, C, H * W]), [0, 2, 1]); // [B, HW, C]
    const lin = (n: string, v: Tensor) => ops.linear(v, this.p(`${n}.weight`), this.p(`${n}.bias`));
    const q = lin(`${name}.to_q`, seq),
      k = lin(`${name}.to_k`, seq),
      v = lin(`${name}.to_v`, seq);
    const w = ops.softmax(ops.mul(ops.matmul(q, k, false, true), 1 / Math.sqrt(C)));
    const a = lin(`${name}.to_out.0`, ops.matmul(w, v));
    return ops.add(x, ops.reshape(ops.permute(a, [0, 2, 1]), [B, C, H, W]));
  }

  /** The class embedding of the batch (null for an unconditional model), as diffusers' UNet2DModel adds it. */
  private classEmbedding(B: number, temb: number, o: ForwardOptions): Tensor | null {
    const c = this.config;
    if (!isClassConditional(c)) {
      if (o.classLabels || o.classEmbeds)
        throw new Error('unet: class labels given to a model without class conditioning');
      return null;
    }
    if (c.class_embed_type === 'identity') {
      const e = o.classEmbeds;
      if (e?.shape.length !== 2 || e.shape[0] !== B || e.shape[1] !== temb)
        throw new Error(`unet: class_embed_type "identity" needs class embeddings [${B}, ${temb}]`);
      return e;
    }
    const y = o.classLabels;
    if (!y || y.length !== B) throw new Error(`unet: this model is class-conditional; give ${B} class labels`);
    if (c.class_embed_type === 'timestep') {
      const h = ops.linear(
        timestepEmbedding(y, c.block_out_channels[0], c.freq_shift),
        this.p('class_embedding.linear_1.weight'),
        this.p('class_embedding.linear_1.bias'),
      );
      return ops.linear(
        ops.silu(h),
        this.p('class_embedding.linear_2.weight'),
        this.p('class_embedding.linear_2.bias'),
      );
    }
    const K = c.num_class_embeds!;
    const onehot = new Float32Array(B * K);
    for (let b = 0; b < B; b++) {
      const k = y[b];
      if (!(Number.isInteger(k) && k >= 0 && k < K)) throw new Error(`unet: class label ${k} is outside [0, ${K - 1}]`);
      onehot[b * K + k] = 1;
    }
    return ops.matmul(ops.fromArray(onehot, [B, K]), this.p('class_embedding.weight'));
  }

  /** eps_theta(x_t, t): x [B, in_channels, H, W], t integer timesteps. */
  forward(x: Tensor, t: Int32Array | Float32Array | number[], o: ForwardOptions = {}): Tensor {
    const c = this.config,
      ch = c.block_out_channels,
      L = c.layers_per_block;
    if (x.shape.length !== 4 || x.shape[1] !== c.in_channels)
      throw new Error(
        `unet: input ${fmtShape(x.shape)} does not match in_channels ${c.in_channels} (expected ` +
          `[B,${c.in_channels},H,W])`,
      );
    const factor = 2 ** (ch.length - 1);
    if (x.shape[2] % factor || x.shape[3] % factor)
      throw new Error(`unet: input size ${x.shape[2]}x${x.shape[3]} must be divisible by ${factor}`);
    if (t.length !== x.shape[0]) throw new Error(`unet: ${t.length} timesteps for a batch of ${x.shape[0]}`);
    this.dropoutSite = 0;
    let temb = timestepEmbedding(t, ch[0], c.freq_shift);
    temb = ops.linear(temb, this.p('time_embedding.linear_1.weight'), this.p('time_embedding.linear_1.bias'));
    temb = ops.linear(ops.silu(temb), this.p('time_embedding.linear_2.weight'), this.p('time_embedding.linear_2.bias'));
    const cemb = this.classEmbedding(x.shape[0], temb.shape[1], o);
    if (cemb) temb = ops.add(temb, cemb);
    const tembAct = ops.silu(temb);

    // diffusers' center_input_sample: inputs given on [0, 1] are moved to [-1, 1]
    let h = this.convF('conv_in', c.center_input_sample ? ops.affine(x, 2, -1) : x);
    const skips: Tensor[] = [h];
    ch.forEach((_, i) => {
      for (let j = 0; j < L; j++) {
        h = this.resnetF(`down_blocks.${i}.resnets.${j}`, h, tembAct, o);
        if (c.down_block_types[i] === 'AttnDownBlock2D') h = this.attentionF(`down_blocks.${i}.attentions.${j}`, h);
        skips.push(h);
      }
      if (i < ch.length - 1) {
        const pad: [number, number, number, number] = c.downsample_padding === 0 ? [0, 1, 0, 1] : [1, 1, 1, 1];
        h = this.convF(`down_blocks.${i}.downsamplers.0.conv`, h, { stride: 2, padding: pad });
        skips.push(h);
      }
    });
    h = this.resnetF('mid_block.resnets.0', h, tembAct, o);
    h = this.attentionF('mid_block.attentions.0', h);
    h = this.resnetF('mid_block.resnets.1', h, tembAct, o);
    ch.forEach((_, i) => {
      for (let j = 0; j <= L; j++) {
        h = ops.concat([h, skips.pop()!]);
        h = this.resnetF(`up_blocks.${i}.resnets.${j}`, h, tembAct, o);
        if (c.up_block_types[i] === 'AttnUpBlock2D') h = this.attentionF(`up_blocks.${i}.attentions.${j}`, h);
      }
      if (i < ch.length - 1) h = this.convF(`up_blocks.${i}.upsamplers.0.conv`, ops.upsample2x(h));
    });
    h = this.gn('conv_norm_out', h, true);
    return this.convF('conv_out', h);
  }
}

export { samplingMemoryBytes, trainingMemoryBytes } from './memory.js';
