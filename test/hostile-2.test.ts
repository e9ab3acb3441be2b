// The second round of faults found by trying the CLI as a hostile new user, each reproduced here: runs at T <= 20
// that nothing could load, user files taken for crash leftovers and deleted, --samples overwriting a user's file,
// --overwrite removing an input, the demo over a user's folder, report creating a mistyped folder or replacing the
// run's log, .npy images off [-1, 1] or NaN or empty, a bad playground --port.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UNet, PRESETS } from '../src/model/unet.js';
import { PAPER_DIFFUSION } from '../src/diffusion/gaussian.js';
import { writeModelFolder } from '../src/io/checkpoint.js';
import { serializeNpy } from '../src/io/npy.js';
import { NATIVE_SKIP, ROOT, assertRefused, hostWeights, writeTinyIdx } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const cli = (args: string[], backend = 'reference') =>
  spawnSync(process.execPath, [CLI, '--backend', backend, ...args], { encoding: 'utf8', timeout: 120_000 });
const tiny = ['--preset', 'tiny', '--batch', '4', '--warmup', '0', '--steps', '1'];

describe('hostile inputs, second round', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-hostile2-'));
  const data = writeTinyIdx(dir, 8);
  const model = join(dir, 'model');
  writeModelFolder(
    model,
    PRESETS.tiny(),
    { ...PAPER_DIFFUSION, timesteps: 20 },
    hostWeights(new UNet(PRESETS.tiny()).init(1)),
  );

  it('train --timesteps 20 (the scaled linear range reaches beta 1) is refused up front, naming the option', () => {
    for (const extra of [[], ['--schedule', 'cosine']]) {
      const out = join(dir, `t20${extra.length}`);
      assertRefused(
        cli(['train', '--data', data, '--out', out, ...tiny, '--timesteps', '20', ...extra]),
        /--timesteps 20 --schedule \w+: not a usable process/,
      );
      assert.ok(!existsSync(out), 'a folder was left behind');
    }
    assert.equal(cli(['train', '--data', data, '--out', join(dir, 't21'), ...tiny, '--timesteps', '21']).status, 0);
  });

  it(
    "a user file named like a leftover (x.2024.old, y.1.tmp) is the user's: the folder is refused and the file " +
      'kept',
    () => {
      const out = join(dir, 'mine');
      mkdirSync(join(out, 'backup.1.tmp'), { recursive: true });
      writeFileSync(join(out, 'thesis.2024.old'), 'precious');
      assertRefused(
        cli(['train', '--data', data, '--out', out, ...tiny]),
        /holds .*thesis\.2024\.old.* but no checkpoint/,
      );
      assert.equal(readFileSync(join(out, 'thesis.2024.old'), 'utf8'), 'precious');
      assert.ok(existsSync(join(out, 'backup.1.tmp')));
    },
  );

  it('eval quality --samples refuses a file it did not draw, and reuses one it drew for the same request', {
    skip: NATIVE_SKIP,
  }, () => {
    const ref = join(dir, 'ref.npy');
    writeFileSync(
      ref,
      serializeNpy(
        Float32Array.from({ length: 8 * 784 }, (_, i) => Math.sin(i)),
        [8, 1, 28, 28],
      ),
    );
    const mine = join(dir, 'mine.npy');
    writeFileSync(mine, serializeNpy(new Float32Array(3 * 784), [3, 1, 28, 28]));
    const args = [
      'eval',
      'quality',
      '--images',
      'mnist',
      '-n',
      '4',
      '--batch',
      '4',
      '--sampler',
      'ddim',
      '--steps',
      '2',
    ];
    const more = ['--ref', ref, '--kid-subsets', '2', '--kid-size', '4', '--pr-num', '0'];
    assertRefused(
      cli([...args, ...more, '--samples', mine], 'native'),
      /--samples .*mine\.npy: the file exists and was not drawn for this request/,
    );
    assert.equal(readFileSync(mine).length, serializeNpy(new Float32Array(3 * 784), [3, 1, 28, 28]).length);
    const kept = join(dir, 'kept.npy');
    const first = cli([...args, ...more, '--samples', kept], 'native');
    assert.equal(first.status, 0, first.stderr);
    const again = cli([...args, ...more, '--samples', kept], 'native');
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /kept\.npy: drawn before for this request; reusing it/);
    assertRefused(cli([...args, ...more, '--samples', kept, '--seed', '1'], 'native'), /not drawn for this request/);
  });

  it('edit --overwrite refuses to replace its own input; images off [-1, 1], NaN or none are refused by name', () => {
    const out = join(dir, 'dl');
    mkdirSync(out);
    const input = join(out, 'samples.npy');
    writeFileSync(input, serializeNpy(new Float32Array(2 * 64), [2, 1, 8, 8]));
    assertRefused(
      cli(['edit', '--model', model, '--image', input, '--out', out, '--overwrite']),
      /would replace samples\.npy, an input of this run/,
    );
    assert.ok(existsSync(input));
    const bytes = join(dir, 'bytes.npy');
    writeFileSync(bytes, serializeNpy(new Float32Array(2 * 64).fill(255), [2, 1, 8, 8]));
    assertRefused(
      cli(['edit', '--model', model, '--image', bytes, '--out', join(dir, 'e1')]),
      /bytes\.npy: values span \[255, 255\]; images must be on \[-1, 1\]/,
    );
    const nan = join(dir, 'nan.npy');
    writeFileSync(
      nan,
      serializeNpy(
        Float32Array.from({ length: 128 }, (_, i) => (i === 5 ? NaN : 0)),
        [2, 1, 8, 8],
      ),
    );
    assertRefused(
      cli(['inpaint', '--model', model, '--image', nan, '--mask', nan, '--out', join(dir, 'e2')]),
      /nan\.npy: value 5 is NaN/,
    );
    const empty = join(dir, 'empty.npy');
    writeFileSync(empty, serializeNpy(new Float32Array(0), [0, 1, 8, 8]));
    assertRefused(
      cli(['edit', '--model', model, '--image', empty, '--out', join(dir, 'e3')]),
      /empty\.npy: holds no images/,
    );
  });

  it('demo refuses a folder holding files it did not make; report refuses a missing run and a non-HTML --out', () => {
    const out = join(dir, 'user');
    mkdirSync(join(out, 'samples'), { recursive: true });
    writeFileSync(join(out, 'samples', 'grid.png'), 'mine');
    assertRefused(
      cli(['demo', '--out', out, '--minutes', '0.1']),
      /--out .*user: holds files that the demo did not make/,
    );
    assert.equal(readFileSync(join(out, 'samples', 'grid.png'), 'utf8'), 'mine');
    assertRefused(cli(['report', join(dir, 'no-such-run')]), /no-such-run: run folder not found/);
    assert.ok(!existsSync(join(dir, 'no-such-run')));
    const run = join(dir, 't21');
    const log = readFileSync(join(run, 'metrics.jsonl'), 'utf8');
    assertRefused(cli(['report', run, '--out', join(run, 'metrics.jsonl')]), /exists and is not an HTML page/);
    assert.equal(readFileSync(join(run, 'metrics.jsonl'), 'utf8'), log);
  });

  it('the playground server refuses a bad --port in one line', () => {
    for (const port of ['abc', '99999', '-1']) {
      const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'playground.mjs'), '--port', port], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      assertRefused(r, /playground: --port must be an integer in \[0, 65535\]/);
    }
  });

  it(
    'a schedule whose alphabar reaches 0 (jsd) refuses the samplers that need an x0 estimate there; odd report and ' +
      'info paths',
    () => {
      const run = join(dir, 'jsd');
      assert.equal(
        cli(['train', '--data', data, '--out', run, ...tiny, '--schedule', 'jsd', '--timesteps', '50']).status,
        0,
      );
      assertRefused(
        cli(['sample', '--model', run, '-n', '1', '--sampler', 'ddim', '--steps', '5', '--out', join(dir, 'j1')]),
        /alphabar is 0 at t = 49 \(the jsd schedule\), so the ddim sampler has no x0 estimate/,
      );
      const bad = join(dir, 'badrun');
      mkdirSync(join(bad, 'metrics.jsonl'), { recursive: true });
      assertRefused(cli(['report', bad]), /metrics\.jsonl: cannot read \(EISDIR\)/);
      assertRefused(cli(['info', '--model', '']), /model folder not found/);
    },
  );
});
