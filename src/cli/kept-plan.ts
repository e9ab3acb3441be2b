// `eval quality --samples FILE` with a model: the kept samples' request holds the model's weights and the sampler's
// options, but not the process and step plan that the folder's scheduler_config.json decides (timestep_spacing,
// steps_offset, set_alpha_to_one, the betas). FILE.plan.json records them, so that samples drawn before that file
// changed are neither reused nor extended with batches of another plan.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GaussianDiffusion, PAPER_DIFFUSION } from '../diffusion/gaussian.js';
import { type SamplerName, type Spacing, samplerPlan } from '../diffusion/samplers.js';
import { diffusionFromScheduler } from '../io/diffusers.js';
import { readJson, writeFileAtomic } from '../io/files.js';
import { modelPath } from '../io/models.js';
import { isModelSpec } from '../eval/image-sets.js';
import type { UNetConfig } from '../model/unet.js';
import { checkGuidance } from './shared.js';

export interface KeptPlanRequest {
  images: string;
  samples?: string;
  sampler: SamplerName;
  steps?: string;
  timestepSpacing?: Spacing;
  guidance: number;
}

/**
 * For a model given to --images: refuses --guidance that its config cannot follow, and with --samples FILE refuses a
 * FILE drawn with another process or step plan (kept batches of one are discarded); records this request's plan.
 */
export function checkKeptPlan(o: KeptPlanRequest, warn: (msg: string) => void): void {
  if (!isModelSpec(o.images)) return;
  const dir = modelPath(o.images);
  const sub = (d: string, f: string) => (existsSync(join(dir, d, f)) ? join(dir, d, f) : join(dir, f));
  checkGuidance(readJson(sub('unet', 'config.json')) as unknown as UNetConfig, o.guidance);
  if (!o.samples) return;
  const schedPath = sub('scheduler', 'scheduler_config.json');
  const { config, betas } = existsSync(schedPath)
    ? diffusionFromScheduler(readJson(schedPath), schedPath)
    : { config: { ...PAPER_DIFFUSION }, betas: undefined };
  const d = new GaussianDiffusion(config, betas);
  const { plan, spacing } = samplerPlan(d, o);
  const hash = createHash('sha256')
    .update(JSON.stringify({ config, plan, T: d.numTimesteps, abar: Array.from(d.tables.alphasCumprod) }))
    .digest('hex');
  const about = `${spacing} spacing, ${plan.length} steps, ${config.schedule} schedule, ${config.prediction} model`;
  const file = o.samples,
    side = `${file}.plan.json`;
  let kept: { plan?: unknown; about?: unknown } | undefined;
  try {
    kept = existsSync(side) ? readJson(side) : undefined;
  } catch {
    kept = undefined;
  }
  const drawn = existsSync(file);
  if (kept?.plan !== undefined && kept.plan !== hash) {
    const why = `drawn with another process or step plan (${String(kept.about)}; this request: ${about})`;
    if (drawn)
      throw new Error(
        `--samples ${file}: ${why}: the model folder's scheduler_config.json changed since; remove it to draw ` +
          'again, or choose another file',
      );
    if (existsSync(`${file}.partial`) || existsSync(`${file}.partial.json`)) {
      warn(`warning: ${file}: the kept samples were ${why}; they are discarded and drawn again`);
      rmSync(`${file}.partial`, { force: true });
      rmSync(`${file}.partial.json`, { force: true });
    }
  }
  // a finished FILE keeps the record it was drawn with (none for one drawn before this check: it cannot be vouched for)
  if (!drawn) writeFileAtomic(side, JSON.stringify({ plan: hash, about }));
}
