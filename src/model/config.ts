// The U-Net's configuration: diffusers' UNet2DModel config keys this model understands, the presets, and the checks
// and defaults applied to a config.json (a field this model does not implement is refused by name).

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
  /**
   * Class conditioning, as diffusers' UNet2DModel: with num_class_embeds and class_embed_type null, a learned
   * embedding per class (class_embedding.weight); "timestep": the label through the sinusoidal projection and an MLP
   * like the time embedding's; "identity": the caller gives the embedding itself. Added to the time embedding.
   */
  class_embed_type?: 'timestep' | 'identity' | null;
  num_class_embeds?: number | null;
  /** the class that stands for "no class" (classifier-free guidance; a ddpm field, ignored by diffusers) */
  ddpm_null_class?: number | null;
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
  // 4096: 16x the largest image of the paper (LSUN 256); a larger one is a damaged file, not a model to allocate for
  if (!posInt(c.sample_size) || c.sample_size > 4096)
    throw bad('sample_size', `must be a whole number from 1 to 4096, got ${JSON.stringify(c.sample_size)}`);
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
  const type = c.class_embed_type ?? null,
    num = c.num_class_embeds ?? null;
  if (type !== null && type !== 'timestep' && type !== 'identity')
    throw bad('class_embed_type', `must be null, "timestep" or "identity", got ${JSON.stringify(type)}`);
  if (num !== null && !(Number.isInteger(num) && num >= 1))
    throw bad('num_class_embeds', `must be a positive integer or null, got ${JSON.stringify(num)}`);
  const nul = c.ddpm_null_class ?? null;
  if (nul !== null && !(type === null && num !== null && Number.isInteger(nul) && nul >= 0 && nul < num))
    throw bad('ddpm_null_class', `must be a class of the embedding (0..${(num ?? 0) - 1}), got ${JSON.stringify(nul)}`);
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
  'class_embed_type',
  'num_class_embeds',
  'ddpm_null_class',
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
    // the class fields only where set, so that an unconditional config reads back as it was written
    ...(raw.class_embed_type != null ? { class_embed_type: raw.class_embed_type } : {}),
    ...(raw.num_class_embeds != null ? { num_class_embeds: raw.num_class_embeds } : {}),
    ...(raw.ddpm_null_class != null ? { ddpm_null_class: raw.ddpm_null_class } : {}),
  };
}
