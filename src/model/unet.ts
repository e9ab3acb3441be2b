// The U-Net of the paper (Appendix B; a PixelCNN++-like backbone with Wide ResNet blocks, GroupNorm, SiLU, one-head
// self-attention and a sinusoidal timestep embedding), with the parameter names and layouts of diffusers'
// UNet2DModel so that checkpoints load both ways.
import * as ops from '../engine/ops.js';
import { type Tensor, fmtShape } from '../engine/tensor.js';
import { fillRandom } from '../engine/random.js';
import { streams } from '../engine/streams.js';

/** The diffusers UNet2DModel config keys this model understands. */
export interface UNetConfig {
  sample_size: number;
  in_channels: number;
  out_channels: number;
  block_out_channels: number[];
  layers_per_block: number;
  down_block_types: string[];
  up_block_types: string[];
  norm_num_groups: number;
  norm_eps: number;
  dropout: number;
  freq_shift: number;
  flip_sin_to_cos: boolean;
  downsample_padding: number;
  attention_head_dim: number | null;
  /** diffusers' center_input_sample: the network sees 2 x - 1 */
  center_input_sample?: boolean;
}

function levelsWithAttention(n: number, attnLevels: number[]) {
  const down = Array.from({ length: n }, (_, i) => (attnLevels.includes(i) ? 'AttnDownBlock2D' : 'DownBlock2D'));
  const up = down.map((d) => (d === 'AttnDownBlock2D' ? 'AttnUpBlock2D' : 'UpBlock2D')).reverse();
  return { down_block_types: down, up_block_types: up };
}

function preset(
  size: number,
  ch: number[],
  layers: number,
  attnLevels: number[],
  dropout: number,
  inCh: number,
  groups = 32,
): UNetConfig {
  return {
    sample_size: size,
    in_channels: inCh,
    out_channels: inCh,
    block_out_channels: ch,
    layers_per_block: layers,
    ...levelsWithAttention(ch.length, attnLevels),
    norm_num_groups: groups,
    norm_eps: 1e-6,
    dropout,
    freq_shift: 1,
    flip_sin_to_cos: false,
    downsample_padding: 0,
    attention_head_dim: null,
  };
}

export const PRESETS: Record<string, () => UNetConfig> = {
  /** The paper's CIFAR-10 model: 35,746,307 parameters. */
  cifar10: () => preset(32, [128, 256, 256, 256], 2, [1], 0.1, 3),
  /** A small CIFAR-10 model (1,525,411 parameters) that trains on CPU cores in hours and ships in 3 MB at float16: the
   * paper's channel multipliers (1, 2, 2, 2) on 32 base channels, four levels down to 4x4, attention at 16x16 as in the
   *  paper's model, one residual block per level, GroupNorm with 16 groups. */
  'cifar10-small': () => preset(32, [32, 64, 64, 64], 1, [1], 0.1, 3, 16),
  /** The paper's 256x256 LSUN / CelebA-HQ model. */
  lsun256: () => preset(256, [128, 128, 256, 256, 512, 512], 2, [4], 0, 3),
  /** A small model for 28x28 digits that trains on two CPU cores within an hour. */
  mnist: () => preset(28, [32, 64, 64], 1, [2], 0.1, 1, 16),
  /** Tiny models for tests. */
  tiny: () => preset(8, [16, 32], 1, [1], 0, 1, 8),
  'tiny-rgb': () => preset(16, [16, 16, 32], 1, [1], 0.1, 3, 8),
};

export function validateConfig(c: UNetConfig, where = 'config.json'): void {
  const bad = (field: string, msg: string) => new Error(`${where}: field "${field}" ${msg}`);
  const posInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  if (!posInt(c.sample_size))
    throw bad('sample_size', `must be a positive integer, got ${JSON.stringify(c.sample_size)}`);
  if (!posInt(c.in_channels))
    throw bad('in_channels', `must be a positive integer, got ${JSON.stringify(c.in_channels)}`);
  if (!posInt(c.out_channels))
    throw bad('out_channels', `must be a positive integer, got ${JSON.stringify(c.out_channels)}`);
  if (!Array.isArray(c.block_out_channels) || !c.block_out_channels.length || !c.block_out_channels.every(posInt))
    throw bad(
      'block_out_channels',
      `must be a non-empty list of positive integers, got ${JSON.stringify(c.block_out_channels)}`,
    );
  if (!posInt(c.layers_per_block))
    throw bad('layers_per_block', `must be a positive integer, got ${JSON.stringify(c.layers_per_block)}`);
  const n = c.block_out_channels.length;
  if (
    !Array.isArray(c.down_block_types) ||
    c.down_block_types.length !== n ||
    c.down_block_types.some((t) => t !== 'DownBlock2D' && t !== 'AttnDownBlock2D')
  )
    throw bad(
      'down_block_types',
      `must list ${n} of DownBlock2D / AttnDownBlock2D, got ${JSON.stringify(c.down_block_types)}`,
    );
  if (
    !Array.isArray(c.up_block_types) ||
    c.up_block_types.length !== n ||
    c.up_block_types.some((t) => t !== 'UpBlock2D' && t !== 'AttnUpBlock2D')
  )
    throw bad('up_block_types', `must list ${n} of UpBlock2D / AttnUpBlock2D, got ${JSON.stringify(c.up_block_types)}`);
  if (!posInt(c.norm_num_groups) || c.block_out_channels.some((ch) => ch % c.norm_num_groups !== 0))
    throw bad(
      'norm_num_groups',
      `${c.norm_num_groups} must divide every entry of block_out_channels ${JSON.stringify(c.block_out_channels)}`,
    );
  if (c.attention_head_dim !== null && c.attention_head_dim !== undefined)
    throw bad(
      'attention_head_dim',
      `is ${JSON.stringify(c.attention_head_dim)} (multi-head attention; diffusers' default when the field is ` +
        `absent is 8); only null is implemented (one head as wide as the channels, as in the paper)`,
    );
  if (c.flip_sin_to_cos) throw bad('flip_sin_to_cos', "must be false (the paper's embedding)");
  if (c.downsample_padding !== 0 && c.downsample_padding !== 1) throw bad('downsample_padding', 'must be 0 or 1');
  if (!(c.dropout >= 0 && c.dropout < 1)) throw bad('dropout', `must be in [0, 1), got ${c.dropout}`);
  if (c.center_input_sample !== undefined && typeof c.center_input_sample !== 'boolean')
    throw bad('center_input_sample', `must be true or false, got ${JSON.stringify(c.center_input_sample)}`);
  if (!(typeof c.norm_eps === 'number' && c.norm_eps > 0))
    throw bad('norm_eps', `must be a positive number, got ${JSON.stringify(c.norm_eps)}`);
  if (!Number.isInteger(c.freq_shift))
    throw bad('freq_shift', `must be an integer, got ${JSON.stringify(c.freq_shift)}`);
}

/**
 * Fields of diffusers' UNet2DModel config that this model has no choice for: the value (or default) it implements.
 * Any other value is refused with the field's name (it would change the network, and silently ignoring it would
 * load a different model).
 */
const FIXED_FIELDS: Record<string, unknown> = {
  act_fn: 'silu',
  time_embedding_type: 'positional',
  mid_block_scale_factor: 1,
  resnet_time_scale_shift: 'default',
  add_attention: true,
  class_embed_type: null,
  num_class_embeds: null,
  downsample_type: 'conv',
  upsample_type: 'conv',
  attn_norm_num_groups: null,
};
/** Fields read by withDefaults, and those diffusers writes that do not change the network. */
const KNOWN_FIELDS = new Set([
  'sample_size',
  'in_channels',
  'out_channels',
  'block_out_channels',
  'layers_per_block',
  'down_block_types',
  'up_block_types',
  'norm_num_groups',
  'norm_eps',
  'dropout',
  'freq_shift',
  'flip_sin_to_cos',
  'downsample_padding',
  'attention_head_dim',
  'center_input_sample',
  'num_train_timesteps',
]);

/**
 * Fills in diffusers' defaults (UNet2DModel, diffusers 0.21) for keys a config.json may leave out; refuses fields whose
 * value this model does not implement; returns the names of unknown fields (the caller warns about them).
 */
export function withDefaults(
  raw: Partial<UNetConfig> & Record<string, unknown>,
  where = 'config.json',
  unknown: string[] = [],
): UNetConfig {
  if (raw.sample_size === undefined || raw.sample_size === null)
    throw new Error(`${where}: required field "sample_size" is missing`);
  for (const [k, want] of Object.entries(FIXED_FIELDS))
    if (k in raw && raw[k] !== want && !(want === null && raw[k] === undefined))
      throw new Error(
        `${where}: field "${k}" is ${JSON.stringify(raw[k])}; only ${JSON.stringify(want)} is implemented (the ` +
          `paper's U-Net)`,
      );
  for (const k of Object.keys(raw))
    if (!k.startsWith('_') && !KNOWN_FIELDS.has(k) && !(k in FIXED_FIELDS)) unknown.push(k);
  return {
    sample_size: raw.sample_size as number,
    in_channels: raw.in_channels ?? 3,
    out_channels: raw.out_channels ?? 3,
    block_out_channels: raw.block_out_channels ?? [224, 448, 672, 896],
    layers_per_block: raw.layers_per_block ?? 2,
    down_block_types: raw.down_block_types ?? ['DownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D'],
    up_block_types: raw.up_block_types ?? ['AttnUpBlock2D', 'AttnUpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'],
    norm_num_groups: raw.norm_num_groups ?? 32,
    norm_eps: raw.norm_eps ?? 1e-5,
    dropout: raw.dropout ?? 0,
    freq_shift: raw.freq_shift ?? 0,
    flip_sin_to_cos: raw.flip_sin_to_cos ?? true,
    downsample_padding: raw.downsample_padding ?? 1,
    // diffusers' default is 8 heads' width; the paper's one-head attention needs an explicit null
    attention_head_dim: 'attention_head_dim' in raw ? (raw.attention_head_dim ?? null) : 8,
    center_input_sample: raw.center_input_sample ?? false,
  };
}

/** Sinusoidal timestep embedding: half = dim/2, freq_i = exp(-ln(10000) i / (half - shift)), [sin(t f), cos(t f)]. */
export function timestepEmbedding(t: Int32Array | number[], dim: number, shift: number): Tensor {
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
}

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

  /** eps_theta(x_t, t): x [B, in_channels, H, W], t integer timesteps. */
  forward(x: Tensor, t: Int32Array | number[], o: ForwardOptions = {}): Tensor {
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
