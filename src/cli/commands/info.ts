// `ddpm info`: the engine (backend, kernels, presets), or a model folder (its network, process and training state).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { getBackend } from '../../engine/tensor.js';
import { PRESETS, UNet } from '../../model/unet.js';
import { loadModel } from '../../io/checkpoint.js';
import { modelPath } from '../../io/models.js';
import { checkpointDirs } from '../../training/train.js';
import { NativeBackend } from '../../backends/native/index.js';
import { VERSION } from '../version.js';

export interface InfoOptions {
  model?: string;
}

export function register(program: Command): void {
  program
    .command('info')
    .description('describe a model folder, or the engine when no model is given')
    .option('--model <dir>', 'diffusers model folder')
    .action(infoCommand);
}

export function infoCommand(o: InfoOptions): void {
  const b = getBackend() as { name: string; info?: object };
  console.log(`ddpm     ${VERSION}`);
  console.log(`backend  ${b.name}${b.info ? ` ${JSON.stringify(b.info)}` : ''}`);
  if (b instanceof NativeBackend) {
    const i = b.info;
    console.log(
      `conv 3x3 ${i.conv3x3} ` +
        `(${i.convAlgorithm}${i.winograd ? '' : '; oneDNN has Winograd kernels for AVX-512 CPUs only'}); ` +
        `activations between kernels ${i.blockedLayout ? 'nChw16c' : 'NCHW (this CPU computes in nChw8c)'}`,
    );
  }
  if (o.model === undefined) {
    console.log(
      `presets  ${Object.keys(PRESETS)
        .map((k) => `${k} (${new UNet(PRESETS[k]()).parameterCount.toLocaleString()} params)`)
        .join(', ')}`,
    );
    return;
  }
  const dir = modelPath(o.model);
  const { model, folder } = loadModel(dir);
  for (const w of folder.warnings) console.error(w);
  const c = folder.unetConfig,
    d = folder.diffusion.config;
  console.log(`model    ${o.model}`);
  console.log(
    `unet     ${c.in_channels}x${c.sample_size}x${c.sample_size}, channels ${JSON.stringify(c.block_out_channels)}, ` +
      `${c.layers_per_block} blocks/level, ${model.parameterCount.toLocaleString()} parameters in ` +
      `${model.params.size} tensors`,
  );
  console.log(
    `process  T=${d.timesteps} ${d.schedule} beta ${d.betaStart}..${d.betaEnd}, predicts ${d.prediction}, variance ` +
      `${d.variance}, loss ${d.loss}, clip ${d.clipSample}`,
  );
  const betas = folder.diffusion.betas;
  if (betas)
    console.log(
      `betas    trained_betas: ${betas.length} values, ${betas[0].toExponential(4)} .. ` +
        `${betas[betas.length - 1].toExponential(4)} (used instead of the named schedule)`,
    );
  const ck = checkpointDirs(dir).pop();
  const stateFile = ck ? join(ck.dir, 'trainer_state.json') : join(dir, 'trainer_state.json');
  if (existsSync(stateFile)) {
    let st: { step?: unknown; options?: Record<string, unknown> };
    try {
      st = JSON.parse(readFileSync(stateFile, 'utf8'));
    } catch (e) {
      throw new Error(`${stateFile}: invalid JSON (${(e as Error).message})`);
    }
    console.log(`training step ${String(st.step)}${ck ? ` (latest checkpoint ${ck.dir})` : ''}`);
    if (st.options) console.log(`options  ${JSON.stringify(st.options)}`);
  }
}
