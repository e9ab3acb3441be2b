// Faults found by trying the CLI as a new user would, each reproduced here: data loss (training over a model folder),
// a hang (/proc), crashes (stack traces), silent changes (mixed samples, --grad-clip 0, dropped alpha, no memory
// check), misleading messages (resume with another preset, NaN) and small slips (the demo's order, default folders).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { UNet, PRESETS } from '../src/model/unet.js';
import { PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { WEIGHTS_FILE, writeModelFolder } from '../src/io/checkpoint.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { parseNpy, serializeNpy } from '../src/io/npy.js';
import { NATIVE_SKIP, ROOT, assertRefused, hostWeights, writeTinyIdx } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const cli = (args: string[], o: { cwd?: string; backend?: string } = {}) =>
  spawnSync(process.execPath, [CLI, '--backend', o.backend ?? 'reference', ...args], {
    encoding: 'utf8',
    cwd: o.cwd,
    timeout: 120_000,
  });
const tiny = ['--preset', 'tiny', '--batch', '4', '--warmup', '0', '--lr', '1e-3'];
const IS_ROOT = process.getuid?.() === 0;

describe('hostile inputs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-hostile-'));
  const data = writeTinyIdx(dir, 16);

  it('train --out over a model folder without checkpoints refuses and changes nothing (data loss)', () => {
    const model = join(dir, 'model');
    writeModelFolder(
      model,
      PRESETS.tiny(),
      { ...PAPER_DIFFUSION, timesteps: 20 },
      hostWeights(new UNet(PRESETS.tiny()).init(3)),
    );
    writeFileSync(join(model, 'metrics.jsonl'), '{"step":1,"loss":0.5}\n');
    const before = readFileSync(join(model, WEIGHTS_FILE));
    const r = cli(['train', '--data', data, '--out', model, ...tiny, '--steps', '1']);
    assertRefused(
      r,
      /--out .*model: holds .*(config\.json|diffusion_pytorch_model).* but no checkpoint of a ddpm training run/,
    );
    assert.deepEqual(readFileSync(join(model, WEIGHTS_FILE)), before, 'the weights were overwritten');
    assert.equal(
      readFileSync(join(model, 'metrics.jsonl'), 'utf8'),
      '{"step":1,"loss":0.5}\n',
      'metrics.jsonl was truncated',
    );
    // a shipped model copied into a clone: the same
    const shipped = join(dir, 'mnist-copy');
    cpSync(join(ROOT, 'models', 'mnist'), shipped, { recursive: true });
    assertRefused(
      cli(['train', '--data', data, '--out', shipped, ...tiny, '--steps', '1']),
      /but no checkpoint of a ddpm training run/,
    );
    // a folder of the user's own files
    const own = join(dir, 'notes');
    mkdirSync(own);
    writeFileSync(join(own, 'notes.txt'), 'mine');
    assertRefused(cli(['train', '--data', data, '--out', own, ...tiny, '--steps', '1']), /holds notes\.txt/);
  });

  it('train --out may reuse what a run killed before its first checkpoint left, and resumes a run folder', () => {
    const out = join(dir, 'killed');
    mkdirSync(join(out, 'checkpoints'), { recursive: true });
    writeFileSync(join(out, 'metrics.jsonl'), '{"step":1,"loss":0.5}\n');
    writeFileSync(join(out, 'train.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), started: 'then' }));
    writeFileSync(join(out, 'config.json.ddpm-tmp-123-456'), '{');
    const r = cli(['train', '--data', data, '--out', out, ...tiny, '--steps', '2', '--checkpoint-every', '2']);
    assert.equal(r.status, 0, r.stderr);
    const again = cli(['train', '--data', data, '--out', out, ...tiny, '--steps', '3', '--checkpoint-every', '2']);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /resuming from step 2/);
  });

  it('sample --out /proc/... refuses at once instead of spinning (hang)', {
    skip: existsSync('/proc/self') ? false : 'no /proc here',
  }, () => {
    const t0 = Date.now();
    const r = cli(['sample', '--model', 'mnist', '-n', '1', '--steps', '1', '--out', '/proc/ddpm-no-such/x'], {
      backend: 'reference',
    });
    assertRefused(r, /--out \/proc\/ddpm-no-such\/x: the folder cannot be created/);
    assert.ok(Date.now() - t0 < 60_000, 'took too long');
  });

  it(
    'eval fid with a bad --inception file and demo --out a file or a read-only folder give one line, no stack ' +
      'trace (crashes)',
    () => {
      const bad = join(dir, 'bad.safetensors');
      writeFileSync(bad, Buffer.from('this is not a safetensors file at all'));
      assertRefused(
        cli(['eval', 'fid', '--images', 'mnist', '--inception', bad, '-n', '2']),
        /ddpm: .*bad\.safetensors/,
      );
      const empty = join(dir, 'empty.safetensors');
      writeFileSync(empty, serializeSafetensors([['x', { shape: [1], data: Float32Array.of(1) }]]));
      assertRefused(
        cli(['eval', 'is', '--images', 'mnist', '--inception', empty, '-n', '2']),
        /ddpm: .*empty\.safetensors/,
      );
      const file = join(dir, 'a-file');
      writeFileSync(file, 'x');
      assertRefused(cli(['demo', '--out', file, '--minutes', '0.1']), /--out .*a-file: the folder is not a folder/);
      if (!IS_ROOT) {
        const ro = join(dir, 'read-only');
        mkdirSync(ro);
        chmodSync(ro, 0o555);
        assertRefused(cli(['demo', '--out', join(ro, 'demo'), '--minutes', '0.1']), /read-only|cannot be created/);
      }
      assertRefused(
        cli(['demo', '--out', '/proc/ddpm-no-such', '--minutes', '0.1']),
        /--out \/proc\/ddpm-no-such: the folder cannot be created/,
      );
    },
  );

  it('eval quality --samples resumed after the request changed discards the old partial samples (silent mix)', {
    skip: NATIVE_SKIP,
  }, async () => {
    const ref = join(dir, 'ref.npy');
    writeFileSync(
      ref,
      serializeNpy(
        Float32Array.from({ length: 8 * 784 }, (_, i) => Math.sin(i)),
        [8, 1, 28, 28],
      ),
    );
    const base = [
      '--backend',
      'native',
      'eval',
      'quality',
      '--images',
      'mnist',
      '-n',
      '8',
      '--batch',
      '2',
      '--sampler',
      'ddim',
      '--steps',
      '20',
      '--ref',
      ref,
      '--kid-subsets',
      '2',
      '--kid-size',
      '4',
      '--pr-num',
      '0',
    ];
    const file = join(dir, 'kept.npy'),
      clean = join(dir, 'clean.npy');
    // samples of another request (another seed), left by a killed run
    writeFileSync(`${file}.partial`, Buffer.from(new Float32Array(2 * 784).fill(7).buffer));
    writeFileSync(`${file}.partial.json`, JSON.stringify({ key: 'another request', done: 2 }));
    // the new request is killed after its first batch ...
    const child = spawn(process.execPath, [CLI, ...base, '--seed', '0', '--samples', file], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        try {
          const m = JSON.parse(readFileSync(`${file}.partial.json`, 'utf8'));
          if (m.key !== 'another request' && m.done >= 2) {
            clearInterval(timer);
            child.kill('SIGKILL');
            resolve();
          }
        } catch {
          // being written
        }
      }, 2);
      exited.then(() => {
        clearInterval(timer);
        resolve();
      });
    });
    await exited;
    assert.match(stderr, /drawn for another request .*discarded/);
    // ... and resumed: every sample equals a clean run's
    const resumed = spawnSync(process.execPath, [CLI, ...base, '--seed', '0', '--samples', file], { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    const fresh = spawnSync(process.execPath, [CLI, ...base, '--seed', '0', '--samples', clean], { encoding: 'utf8' });
    assert.equal(fresh.status, 0, fresh.stderr);
    const a = parseNpy(new Uint8Array(readFileSync(file)), 'kept').data,
      b = parseNpy(new Uint8Array(readFileSync(clean)), 'clean').data;
    assert.ok(!a.some((v) => v === 7), "the other request's samples were mixed in");
    assert.deepEqual(Array.from(a), Array.from(b));
    assert.ok(!existsSync(`${file}.partial`) && !existsSync(`${file}.partial.json`), 'partial files left behind');
  });

  it('--grad-clip 0 says that gradients are not clipped, and they are not (silent)', () => {
    const out = join(dir, 'noclip');
    const r = cli(['train', '--data', data, '--out', out, ...tiny, '--steps', '2', '--grad-clip', '0', '--lr', '1e-2']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /--grad-clip 0: gradients are not clipped/);
    const m = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(m.every((x) => Number.isFinite(x.loss) && x.grad_norm > 0));
    // the weights moved (a zero scale would leave Adam with zero gradients and the raw weights unchanged)
    const init = hostWeights(new UNet(PRESETS.tiny()).init(0));
    const ck = readdirSync(join(out, 'checkpoints')).sort().pop()!;
    const raw = parseSafetensors(
      new Uint8Array(readFileSync(join(out, 'checkpoints', ck, 'raw_weights.safetensors'))),
      'raw',
    ).tensors;
    const name = 'conv_in.weight';
    assert.notDeepEqual(
      Array.from(raw.get(name)!.data),
      Array.from(init.get(name)!.data),
      'the weights did not change',
    );
  });

  it('PNGs with transparent pixels are read with a warning naming them (silent alpha loss)', () => {
    const pngs = join(dir, 'pngs');
    mkdirSync(pngs);
    for (const [name, alpha] of [
      ['a.png', 255],
      ['b.png', 128],
    ] as const) {
      const img = new PNG({ width: 4, height: 4 });
      img.data.fill(200);
      for (let i = 3; i < img.data.length; i += 4) img.data[i] = alpha;
      writeFileSync(join(pngs, name), PNG.sync.write(img));
    }
    const r = cli(['data', '--data', pngs]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: .*pngs: 1 of 2 PNGs have transparent pixels \(b\.png\); their alpha channel is dropped/,
    );
  });

  it('sample and eval --batch are checked against memory before any work (no estimate before)', () => {
    const s = cli(['sample', '--model', 'cifar10', '-n', '200000', '--batch', '200000', '--out', join(dir, 'huge')]);
    assertRefused(s, /-n 200000|--batch 200000: sampling at this batch needs about [\d.]+ GiB/);
    const big = join(dir, 'big');
    writeModelFolder(
      big,
      { ...PRESETS.tiny(), sample_size: 512 },
      { ...PAPER_DIFFUSION, timesteps: 20 },
      hostWeights(new UNet({ ...PRESETS.tiny(), sample_size: 512 }).init(1)),
    );
    const r = cli(['sample', '--model', big, '-n', '4000', '--batch', '4000', '--out', join(dir, 'huge3')]);
    assertRefused(
      r,
      /--batch 4000: sampling at this batch needs about [\d.]+ GiB .* and this machine allows [\d.]+ GiB/,
    );
    assert.ok(!existsSync(join(dir, 'huge3')), 'the output folder was made before the check');
    const e = cli(['eval', 'bpd', '--model', big, '--data', data, '--batch', '4000']);
    assertRefused(e, /--batch|images are 1x8x8, the model expects 1x512x512/);
  });

  it(
    'resuming with another --preset or --variance names the option, not an "unreadable" checkpoint ' + '(misleading)',
    () => {
      // RGB PNGs fit both tiny (gray) and tiny-rgb: the data does not stop the second run, the saved options do
      const pngs = join(dir, 'rgb');
      mkdirSync(pngs);
      for (let i = 0; i < 4; i++) {
        const img = new PNG({ width: 8, height: 8 });
        for (let k = 0; k < img.data.length; k++) img.data[k] = k % 4 === 3 ? 255 : (k * 37 + i * 11) % 256;
        writeFileSync(join(pngs, `${i}.png`), PNG.sync.write(img));
      }
      const out = join(dir, 'resume');
      assert.equal(
        cli(['train', '--data', pngs, '--out', out, ...tiny, '--steps', '2', '--checkpoint-every', '2']).status,
        0,
      );
      const p = cli([
        'train',
        '--data',
        pngs,
        '--out',
        out,
        ...tiny.map((a) => (a === 'tiny' ? 'tiny-rgb' : a)),
        '--steps',
        '4',
      ]);
      assertRefused(p, /resume: --preset is .* but the run in .* was started with .*; start a new --out/);
      assert.doesNotMatch(p.stderr, /unreadable|move the run's checkpoints/);
      const v = cli([
        'train',
        '--data',
        pngs,
        '--out',
        out,
        ...tiny,
        '--steps',
        '4',
        '--variance',
        'learnedrange',
        '--loss',
        'hybrid',
      ]);
      assertRefused(
        v,
        /resume: --variance is "learnedrange" but the run in .* was started with "fixedlarge"; start a new --out/,
      );
      assert.doesNotMatch(v.stderr, /unreadable/);
    },
  );

  it('a NaN right after a resume does not call the checkpoint it came from "good" (misleading)', () => {
    const out = join(dir, 'nan');
    assert.equal(
      cli(['train', '--data', data, '--out', out, ...tiny, '--steps', '2', '--checkpoint-every', '2']).status,
      0,
    );
    const ck = join(out, 'checkpoints', readdirSync(join(out, 'checkpoints')).sort().pop()!);
    const file = join(ck, 'raw_weights.safetensors');
    const t = parseSafetensors(new Uint8Array(readFileSync(file)), file).tensors;
    t.get('conv_in.weight')!.data.fill(NaN);
    writeFileSync(file, serializeSafetensors([...t.entries()]));
    const r = cli(['train', '--data', data, '--out', out, ...tiny, '--steps', '4']);
    assertRefused(
      r,
      /training stopped at step 3: loss is NaN; the newest checkpoint \(step 2\) holds the weights that gave it/,
    );
    assert.doesNotMatch(r.stderr, /last good checkpoint/);
  });

  it('train names the loss curve only when written, and default sample folders differ per model (small)', () => {
    const one = cli(['train', '--data', data, '--out', join(dir, 'one'), ...tiny, '--steps', '1']);
    assert.equal(one.status, 0, one.stderr);
    assert.doesNotMatch(one.stderr, /curve .*loss\.png/);
    assert.match(one.stderr, /no loss curve/);
    // a folder named like a shipped model: its samples do not land in the shipped model's default folder
    const cwd = mkdtempSync(join(tmpdir(), 'ddpm-cwd-'));
    cpSync(join(ROOT, 'models', 'mnist'), join(cwd, 'runs', 'mnist'), { recursive: true });
    for (const m of ['mnist', 'runs/mnist'])
      assert.equal(
        cli(['sample', '--model', m, '-n', '1', '--batch', '1', '--sampler', 'ddim', '--steps', '1'], { cwd }).status,
        0,
      );
    assert.deepEqual(readdirSync(join(cwd, 'samples')).sort(), [
      'runs_mnist-ddim-1-seed0',
      'shipped-mnist-ddim-1-seed0',
    ]);
  });

  it('eval fid / is / kid do not offer --net, which they would ignore (small)', () => {
    for (const c of ['fid', 'is', 'kid']) {
      const h = cli(['eval', c, '--help']);
      assert.equal(h.status, 0);
      assert.doesNotMatch(h.stdout, /--net/, c);
      assertRefused(
        cli(['eval', c, '--images', 'mnist', '--inception', join(dir, 'bad.safetensors'), '--net', 'fashion']),
        /--net is for `ddpm eval quality`/,
      );
    }
    assert.match(cli(['eval', 'quality', '--help']).stdout, /--net/);
  });
});
