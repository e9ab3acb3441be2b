// Training end to end on a tiny model: exact resume after SIGKILL, checkpoints, NaN stop, metrics.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NATIVE_SKIP, ROOT, writeTinyIdx } from './helpers.js';
import { trainOptionsFrom } from '../src/training/options.js';
import { train } from '../src/training/train.js';
import { loadDataset } from '../src/data/load.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

const losses = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .map((m) => [m.step, m.loss]);

function trainArgs(data: string, out: string, backend: string, extra: string[] = []) {
  return [
    CLI,
    '--backend',
    backend,
    'train',
    '--data',
    data,
    '--out',
    out,
    '--preset',
    'tiny',
    '--steps',
    '12',
    '--batch',
    '4',
    '--warmup',
    '2',
    '--lr',
    '1e-3',
    '--checkpoint-every',
    '4',
    '--keep',
    '2',
    '--dropout',
    '0.1',
    ...extra,
  ];
}

describe('training', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-train-'));
  const data = writeTinyIdx(dir);

  for (const backend of ['reference', 'native'])
    it(`SIGKILL and resume give the same loss sequence as an uninterrupted run (${backend})`, {
      skip: backend === 'native' && NATIVE_SKIP,
    }, async () => {
      const a = join(dir, `a-${backend}`),
        b = join(dir, `b-${backend}`);
      const r = spawnSync(process.execPath, trainArgs(data, a, backend), { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      // run b, kill it with SIGKILL once it has passed its first checkpoint
      const child = spawn(process.execPath, trainArgs(data, b, backend), { stdio: 'ignore' });
      await new Promise<void>((resolve, reject) => {
        const timer = setInterval(() => {
          const m = join(b, 'metrics.jsonl');
          if (existsSync(m) && readFileSync(m, 'utf8').trim().split('\n').length >= 6) {
            clearInterval(timer);
            child.kill('SIGKILL');
          }
        }, 5);
        child.on('exit', (code, sig) => {
          clearInterval(timer);
          if (sig === 'SIGKILL' || code === 0) resolve();
          else reject(new Error(`child exited with ${code}`));
        });
      });
      const partial = losses(b);
      assert.ok(partial.length < 12, `run was killed after ${partial.length} steps`);
      const r2 = spawnSync(process.execPath, trainArgs(data, b, backend), { encoding: 'utf8' });
      assert.equal(r2.status, 0, r2.stderr);
      assert.deepEqual(losses(b), losses(a));
      assert.equal(
        readFileSync(join(b, 'diffusion_pytorch_model.safetensors')).compare(
          readFileSync(join(a, 'diffusion_pytorch_model.safetensors')),
        ),
        0,
        'final EMA weights differ',
      );
      // the last K checkpoints are kept
      assert.deepEqual(readdirSync(join(a, 'checkpoints')).sort(), ['step-0000008', 'step-0000012']);
      assert.ok(existsSync(join(a, 'loss.png')));
    });

  it('NaN loss stops with a clear message naming the checkpoint that holds the weights that gave it', async () => {
    const out = join(dir, 'nan');
    const opts = trainOptionsFrom({
      out,
      preset: 'tiny',
      steps: 20,
      batch: 4,
      lr: 1e30,
      warmup: 0,
      gradClip: 1e30,
      ema: 0.9999,
      accumulate: 1,
      checkpointEvery: 1,
      keep: 2,
      sampleEvery: 0,
      sampleSteps: 10,
      seed: 0,
    });
    await assert.rejects(
      () => train(opts, loadDataset(data)),
      /training stopped at step \d+: (loss|gradient norm) is (NaN|Infinity).*newest checkpoint \(step \d+\) holds/,
    );
    const ckpts = readdirSync(join(out, 'checkpoints'));
    assert.ok(ckpts.length >= 1, 'a checkpoint remains');
    const m = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(
      m.every((x) => Number.isFinite(x.loss)),
      'only finite losses were logged',
    );
  });

  it('invalid CLI values get one clear error', () => {
    const r = spawnSync(process.execPath, [CLI, 'train', '--data', data, '--out', join(dir, 'x'), '--steps', '-3'], {
      encoding: 'utf8',
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--steps must be an integer >= 1, got "-3"/);
    const r2 = spawnSync(process.execPath, [CLI, 'sample', '--model', join(dir, 'missing')], { encoding: 'utf8' });
    assert.notEqual(r2.status, 0);
    assert.match(r2.stderr, /missing: model folder not found/);
    const r3 = spawnSync(process.execPath, [CLI, 'sample', '--model', 'x', '--sampler', 'lms'], { encoding: 'utf8' });
    const choices = 'ancestral, ddim, langevin, pc, dpm2m, dpm3m, plms, heun, euler, euler-a';
    assert.ok(r3.stderr.includes(`argument 'lms' is invalid. Allowed choices are ${choices}`), r3.stderr);
  });
});
