// Part B of the fidelity work, each reproduced first: two trainers on one folder, SIGKILL mid-write then restart,
// a corrupt latest checkpoint, SIGINT, resume with other options, an oversized batch, bad configs and weights,
// strict inputs, and outputs that never mix runs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  chmodSync,
  cpSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UNet, PRESETS } from '../src/model/unet.js';
import { PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { writeModelFolder, WEIGHTS_FILE } from '../src/io/checkpoint.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { serializeNpy } from '../src/io/npy.js';
import { loadDataset } from '../src/data/load.js';
import { ROOT, writeTinyIdx, hostWeights } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, '--backend', 'reference', ...args], { encoding: 'utf8' });
const trainArgs = (data: string, out: string, extra: string[] = []) => [
  '--backend',
  'reference',
  'train',
  '--data',
  data,
  '--out',
  out,
  '--preset',
  'tiny',
  '--batch',
  '4',
  '--warmup',
  '2',
  '--lr',
  '1e-3',
  '--checkpoint-every',
  '4',
  '--keep',
  '3',
  ...extra,
];
const steps = (out: string) =>
  readdirSync(join(out, 'checkpoints'))
    .filter((d) => /^step-\d+$/.test(d))
    .sort();

/** Starts a trainer and resolves once its metrics log has `n` lines. */
function startTrainer(args: string[], out: string, n: number) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const reached = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = join(out, 'metrics.jsonl');
      if (existsSync(m) && readFileSync(m, 'utf8').trim().split('\n').length >= n) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
    exited.then(() => {
      clearInterval(timer);
      reject(new Error(`trainer exited early: ${stderr}`));
    });
  });
  return { child, reached, exited, stderr: () => stderr };
}

describe('the run folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-run-'));
  const data = writeTinyIdx(dir);

  it('a second trainer on the same --out is refused at once; a stale lock is taken over', async () => {
    const out = join(dir, 'locked');
    const a = startTrainer(trainArgs(data, out, ['--steps', '400']), out, 2);
    await a.reached;
    const b = spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '400'])], {
      encoding: 'utf8',
      timeout: 20000,
    });
    assert.notEqual(b.status, 0);
    assert.match(b.stderr, /another trainer \(pid \d+, started .*\) is writing this run/);
    a.child.kill('SIGKILL');
    await a.exited;
    assert.ok(existsSync(join(out, 'train.lock')), 'the killed trainer left its lock');
    const c = spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '6'])], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /taking over the lock of a trainer that is gone/);
    assert.ok(!existsSync(join(out, 'train.lock')), 'the lock is released at the end');
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    assert.deepEqual(lines, [1, 2, 3, 4, 5, 6], 'every step logged once');
  });

  it(
    'leftovers of a kill during a checkpoint write are removed; a corrupt latest checkpoint falls back to the ' +
      'previous',
    () => {
      const out = join(dir, 'crash');
      assert.equal(
        spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '8'])], { encoding: 'utf8' }).status,
        0,
      );
      // what a SIGKILL in the middle of writeDirAtomic / writeFileAtomic leaves behind
      cpSync(join(out, 'checkpoints', 'step-0000008'), join(out, 'checkpoints', 'step-0000012.ddpm-tmp-4242'), {
        recursive: true,
      });
      writeFileSync(join(out, `${WEIGHTS_FILE}.ddpm-tmp-4242-1700000000000`), 'partial');
      // a user's own file with a similar name stays
      writeFileSync(join(out, 'notes.2024.old'), 'mine');
      // and a latest checkpoint whose weights are truncated
      const w = join(out, 'checkpoints', 'step-0000008', 'raw_weights.safetensors');
      writeFileSync(w, readFileSync(w).subarray(0, 100));
      const r = spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '10'])], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /removed .*step-0000012\.ddpm-tmp-4242 \(left by a killed writer\)/);
      assert.match(r.stderr, /removed .*\.ddpm-tmp-4242-1700000000000/);
      assert.equal(readFileSync(join(out, 'notes.2024.old'), 'utf8'), 'mine');
      assert.match(
        r.stderr,
        /warning: .*step-0000008 is unreadable \(.*raw_weights\.safetensors.*\); trying the previous checkpoint/,
      );
      assert.match(r.stderr, /resuming from .*step-0000004 instead/);
      assert.match(r.stderr, /resuming from step 4 of /);
      assert.ok(
        !readdirSync(out).some((f) => f.includes('.ddpm-tmp-')) &&
          !readdirSync(join(out, 'checkpoints')).some((f) => f.includes('.ddpm-tmp-')),
      );
    },
  );

  it('SIGINT writes a checkpoint and says where; the next run resumes from it', async () => {
    const out = join(dir, 'sigint');
    const a = startTrainer(trainArgs(data, out, ['--steps', '1000', '--checkpoint-every', '500']), out, 3);
    await a.reached;
    a.child.kill('SIGINT');
    const { code } = await a.exited;
    assert.equal(code, 130);
    assert.match(
      a.stderr(),
      /stopped by SIGINT at step (\d+): checkpoint written to .*checkpoints; run the same command to resume/,
    );
    const stopped = Number(/at step (\d+)/.exec(a.stderr())![1]);
    assert.deepEqual(steps(out), [`step-${String(stopped).padStart(7, '0')}`]);
    const r = spawnSync(
      process.execPath,
      [CLI, ...trainArgs(data, out, ['--steps', String(stopped + 1), '--checkpoint-every', '500'])],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`resuming from step ${stopped} of `));
  });

  it(
    'resuming with other options is refused naming the field and both values; --override allows the harmless ' + 'ones',
    () => {
      const out = join(dir, 'resume');
      assert.equal(
        spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '4'])], { encoding: 'utf8' }).status,
        0,
      );
      const lr = spawnSync(
        process.execPath,
        [CLI, ...trainArgs(data, out, ['--steps', '8']).map((a) => (a === '1e-3' ? '5e-4' : a))],
        { encoding: 'utf8' },
      );
      assert.notEqual(lr.status, 0);
      assert.match(
        lr.stderr,
        /resume: --lr is 0.0005 but the run in .* was started with 0.001; pass the same value, or --override lr to/,
      );
      const pred = spawnSync(process.execPath, [CLI, ...trainArgs(data, out, ['--steps', '8', '--prediction', 'v'])], {
        encoding: 'utf8',
      });
      assert.match(pred.stderr, /resume: --prediction is "v" but .* was started with "eps"; start a new --out/);
      const bad = spawnSync(
        process.execPath,
        [CLI, ...trainArgs(data, out, ['--steps', '8', '--override', 'prediction'])],
        { encoding: 'utf8' },
      );
      assert.match(bad.stderr, /--override: "prediction" changes the model or the process/);
      const ok = spawnSync(
        process.execPath,
        [
          CLI,
          ...trainArgs(data, out, ['--steps', '8', '--override', 'lr', '--checkpoint-every', '2']).map((a) =>
            a === '1e-3' ? '5e-4' : a,
          ),
        ],
        { encoding: 'utf8' },
      );
      assert.equal(ok.status, 0, ok.stderr);
    },
  );

  it('a batch that cannot fit in memory is refused with the estimate before anything starts', () => {
    const r = run('train', '--data', data, '--out', join(dir, 'huge'), '--preset', 'cifar10', '--batch', '100000');
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /--batch 100000: a training step of preset cifar10 needs about [\d.]+ GiB, and this machine allows [\d.]+ GiB/,
    );
    assert.ok(!existsSync(join(dir, 'huge', 'metrics.jsonl')));
  });

  it('hybrid with a fixed variance is refused with the reason', () => {
    const r = run('train', '--data', data, '--out', join(dir, 'hyb'), '--preset', 'tiny', '--loss', 'hybrid');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /loss "hybrid" needs variance "learnedrange"/);
  });

  it('the embedded digits have a held-out test split disjoint from train', () => {
    const train = loadDataset('embedded', 'train'),
      test = loadDataset('embedded', 'test');
    assert.equal(train.count + test.count, 10000);
    assert.equal(test.count, 1000);
    const key = (ds: typeof train, i: number) =>
      Buffer.from(ds.pixels.subarray(i * 784, (i + 1) * 784)).toString('base64');
    const trainSet = new Set(Array.from({ length: train.count }, (_, i) => key(train, i)));
    let shared = 0;
    for (let i = 0; i < test.count; i++) if (trainSet.has(key(test, i))) shared++;
    assert.ok(shared <= 5, `${shared} test images also in train (duplicates in the source at most)`);
  });
});

describe('model folders and inputs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-inputs-'));
  const model = join(dir, 'model');
  writeModelFolder(
    model,
    PRESETS.tiny(),
    { ...PAPER_DIFFUSION, timesteps: 20, betaEnd: 0.5, clipSample: false },
    hostWeights(new UNet(PRESETS.tiny()).init(3)),
  );

  const variant = (name: string, edit: (cfg: Record<string, unknown>, sched: Record<string, unknown>) => void) => {
    const d = join(dir, name);
    cpSync(model, d, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')),
      sched = JSON.parse(readFileSync(join(d, 'scheduler_config.json'), 'utf8'));
    edit(cfg, sched);
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    writeFileSync(join(d, 'scheduler_config.json'), JSON.stringify(sched));
    return d;
  };

  it('config fields this model does not implement are refused, naming the field', () => {
    const cases: [string, (c: Record<string, unknown>, s: Record<string, unknown>) => void, RegExp][] = [
      ['gelu', (c) => (c.act_fn = 'gelu'), /field "act_fn" is "gelu"; only "silu" is implemented/],
      ['fourier', (c) => (c.time_embedding_type = 'fourier'), /field "time_embedding_type" is "fourier"/],
      ['heads', (c) => delete c.attention_head_dim, /field "attention_head_dim" is 8 .*diffusers' default/],
      ['nosize', (c) => delete c.sample_size, /required field "sample_size" is missing/],
      [
        'sched',
        (_, s) => (s.beta_schedule = 'squaredcos_cap_v2'),
        /field "beta_schedule" is "squaredcos_cap_v2" but "ddpm_schedule" is "linear"/,
      ],
      ['thresh', (_, s) => (s.thresholding = true), /field "thresholding" is true; only false is implemented/],
    ];
    for (const [name, edit, re] of cases) {
      const r = run('info', '--model', variant(name, edit));
      assert.notEqual(r.status, 0, name);
      assert.match(r.stderr, re, name);
    }
  });

  it('center_input_sample is implemented (the network sees 2x - 1); unknown fields are warned about', () => {
    const d = variant('centered', (c) => {
      c.center_input_sample = true;
      c.some_new_field = 1;
    });
    const x = Float32Array.from({ length: 64 }, (_, i) => (Math.sin(i) + 1) / 2);
    writeFileSync(join(dir, 'x01.npy'), serializeNpy(x, [1, 1, 8, 8]));
    writeFileSync(
      join(dir, 'x11.npy'),
      serializeNpy(
        x.map((v) => 2 * v - 1),
        [1, 1, 8, 8],
      ),
    );
    const a = run('predict', '--model', d, '--input', join(dir, 'x01.npy'), '--t', '5', '--output', join(dir, 'a.npy'));
    assert.equal(a.status, 0, a.stderr);
    assert.match(a.stderr, /warning: .*config.json: unknown field\(s\) some_new_field ignored/);
    const b = run(
      'predict',
      '--model',
      model,
      '--input',
      join(dir, 'x11.npy'),
      '--t',
      '5',
      '--output',
      join(dir, 'b.npy'),
    );
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(readFileSync(join(dir, 'a.npy')), readFileSync(join(dir, 'b.npy')));
  });

  it('weights holding NaN are refused at load with the tensor named', () => {
    const d = variant('nan', () => {});
    const w = parseSafetensors(new Uint8Array(readFileSync(join(d, WEIGHTS_FILE))), 'w').tensors;
    w.get('conv_in.weight')!.data[3] = NaN;
    writeFileSync(join(d, WEIGHTS_FILE), serializeSafetensors(w));
    const r = run('sample', '--model', d, '-n', '1', '--out', join(dir, 'nan-out'));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /tensor "conv_in.weight" holds NaN at index 3/);
    assert.ok(!existsSync(join(dir, 'nan-out', 'grid.png')));
  });

  it("sample follows the folder's clip_sample unless --clip / --no-clip say otherwise", () => {
    const off = run('sample', '--model', model, '-n', '1', '--steps', '4', '--out', join(dir, 's1'));
    assert.match(off.stderr, /clip off/);
    const on = run('sample', '--model', model, '-n', '1', '--steps', '4', '--clip', '--out', join(dir, 's2'));
    assert.match(on.stderr, /clip on/);
    const clipped = variant('clipped', (_, s) => (s.clip_sample = true));
    assert.match(
      run('sample', '--model', clipped, '-n', '1', '--steps', '4', '--out', join(dir, 's3')).stderr,
      /clip on/,
    );
    assert.match(
      run('sample', '--model', clipped, '-n', '1', '--steps', '4', '--no-clip', '--out', join(dir, 's4')).stderr,
      /clip off/,
    );
    // the ODE solvers do not clip unless asked, as diffusers' DPM-Solver / PNDM schedulers
    assert.match(
      run('sample', '--model', clipped, '-n', '1', '--steps', '4', '--sampler', 'dpm2m', '--out', join(dir, 's5'))
        .stderr,
      /dpm2m, 4 steps, clip off/,
    );
    assert.match(
      run(
        'sample',
        '--model',
        clipped,
        '-n',
        '1',
        '--steps',
        '4',
        '--sampler',
        'heun',
        '--clip',
        '--out',
        join(dir, 's6'),
      ).stderr,
      /clip on/,
    );
  });

  it('inputs are parsed strictly and checked before the work', () => {
    const x = serializeNpy(new Float32Array(64), [1, 1, 8, 8]);
    writeFileSync(join(dir, 'x.npy'), x);
    for (const [t, re] of [
      ['', /--t: expected an integer/],
      ['5,', /--t: expected an integer/],
      ['20', /--t: 20 is outside the model's timesteps \[0, 19\]/],
    ] as const) {
      const r = run(
        'predict',
        '--model',
        model,
        '--input',
        join(dir, 'x.npy'),
        '--t',
        t,
        '--output',
        join(dir, 'y.npy'),
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
    }
    assert.match(run('sample', '--model', model, '--steps', '5,').stderr, /--steps must be a step count/);
    assert.match(run('sample', '--model', model, '--batch', '').stderr, /--batch must be an integer >= 1, got ""/);
    assert.match(
      run('sample', '--model', model, '-n', '1', '--steps', '4', '--eta', '0.5', '--out', join(dir, 'eta')).stderr,
      /warning: --eta applies to the ddim sampler only/,
    );
    assert.match(
      run('sample', '--model', model, '-n', '1000000000').stderr,
      /-n 1000000000: 1000000000 samples of 1x8x8 need [\d.]+ GiB/,
    );
    const data = writeTinyIdx(dir, 8);
    const lr0 = run(
      'train',
      '--data',
      data,
      '--out',
      join(dir, 'lr0'),
      '--preset',
      'tiny',
      '--steps',
      '1',
      '--batch',
      '16',
      '--lr',
      '0',
    );
    assert.equal(lr0.status, 0, lr0.stderr);
    assert.match(lr0.stderr, /warning: --lr 0: the weights will never change/);
    assert.match(lr0.stderr, /warning: --batch 16 is larger than the 8 images/);
    if (process.getuid?.() !== 0) {
      const ro = join(dir, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o500);
      assert.match(run('sample', '--model', model, '--out', join(ro, 'x')).stderr, /--out .*: the folder is read-only/);
    }
    assert.match(
      run('sample', '--model', model, '--out', join(dir, 'x.npy', 'sub')).stderr,
      /--out .*: the folder is not a folder \(a file is in the way\)/,
    );
  });

  it('--version, info with the run step and trained_betas, data with file sizes', () => {
    const v = run('--version');
    assert.equal(v.status, 0);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    const jsd = join(dir, 'jsd');
    writeModelFolder(
      jsd,
      PRESETS.tiny(),
      { ...PAPER_DIFFUSION, schedule: 'jsd', timesteps: 10 },
      hostWeights(new UNet(PRESETS.tiny())),
    );
    assert.match(run('info', '--model', jsd).stdout, /betas +trained_betas: 10 values/);
    const data = writeTinyIdx(dir, 8);
    const out = join(dir, 'inforun');
    assert.equal(
      run('train', '--data', data, '--out', out, '--preset', 'tiny', '--steps', '2', '--batch', '2').status,
      0,
    );
    const info = run('info', '--model', out).stdout;
    assert.match(info, /training step 2 \(latest checkpoint/);
    const opts = /options +(.*)/.exec(info)![1];
    assert.doesNotThrow(() => JSON.parse(opts), 'the options line is whole JSON');
    assert.match(run('data', '--data', data).stdout, /files: .*train-images-idx3-ubyte \(528 bytes\)/);
  });
});
