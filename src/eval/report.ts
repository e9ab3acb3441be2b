// `ddpm report RUN_DIR`: one self-contained HTML page for a training run (Node: reads the run folder). Charts are
// inline SVG, images are data URIs, so the file can be mailed or archived alone. It shows what the run folder holds:
// the loss curve (total and per quarter of the t range) and gradient norm from metrics.jsonl, the sample grids of
// samples/step-*.png, bits/dim with its terms and the rate-distortion curve from any `ddpm eval bpd --out` JSON in
// the folder, and sample quality (FD, KID, IS) from any `ddpm eval quality --out` JSON (and metrics.jsonl's
// `quality` entries written by `train --eval-every`).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

interface Series {
  label: string;
  color: string;
  points: [number, number][];
}

// Every value from the run folder reaches the page through the `html` template, which escapes whatever is not already
// built HTML; numbers are formatted from numbers only (anything else shows as "-"). A crafted metrics.jsonl or JSON
// file can change what the page says, never what it runs.

/** HTML built by the `html` template (or escaped text): inserted as it is. */
class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}
const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
type Part = Html | string | number | boolean | null | undefined | Html[];
/** Tagged template: every interpolated value is escaped unless it is Html (arrays of Html are joined). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0];
  values.forEach((v, i) => {
    out += Array.isArray(v)
      ? v.map((x) => (x instanceof Html ? x.text : esc(String(x)))).join('')
      : v instanceof Html
        ? v.text
        : esc(String(v ?? ''));
    out += strings[i + 1];
  });
  return new Html(out);
}
/** A one-row table: the headers, then the row's cells (escaped unless Html). */
function table(headers: string[], cells: Part[]): Html {
  const th = headers.map((h) => html`<th>${h}</th>`),
    td = cells.map((c) => html`<td>${c}</td>`);
  return html`<table><tr>${th}</tr><tr>${td}</tr></table>`;
}
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** A number from a run folder's file, formatted; "-" for anything that is not a finite number. */
const num = (v: unknown, f: (x: number) => string = (x) => fmt(x)) => (isNum(v) ? f(v) : '-');
const fmt = (v: number) =>
  Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(2) : v.toPrecision(3);
/** A [x, y] pair from a file, or null when either is not a finite number. */
const pair = (x: unknown, y: unknown): [number, number] | null => (isNum(x) && isNum(y) ? [x, y] : null);
const pairs = (p: ([number, number] | null)[]) => p.filter((q): q is [number, number] => q !== null);

/** A line chart as inline SVG (log y when logY; points with y <= 0 are dropped there). */
export function svgChart(
  title: string,
  series: Series[],
  o: { logY?: boolean; xLabel?: string; yLabel?: string; width?: number; height?: number } = {},
): Html {
  const W = o.width ?? 640,
    H = o.height ?? 300,
    L = 70,
    R = 20,
    Tp = 30,
    B = 40;
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  const pts = series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  if (!pts.length) return html`<p class="empty">${title}: no data</p>`;
  const xs = pts.map((p) => p[0]),
    ys = pts.map((p) => fy(p[1]));
  let x0 = Math.min(...xs),
    x1 = Math.max(...xs),
    y0 = Math.min(...ys),
    y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => H - B - ((fy(y) - y0) / (y1 - y0)) * (H - Tp - B);
  const ticks = (a: number, b: number, n: number) => Array.from({ length: n + 1 }, (_, i) => a + ((b - a) * i) / n);
  let svg =
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" ` +
    `aria-label="${esc(title)}">`;
  svg += `<text x="${W / 2}" y="18" text-anchor="middle" class="t">${esc(title)}</text>`;
  svg += `<rect x="${L}" y="${Tp}" width="${W - L - R}" height="${H - Tp - B}" fill="none" stroke="#999"/>`;
  for (const v of ticks(y0, y1, 4)) {
    const y = H - B - ((v - y0) / (y1 - y0)) * (H - Tp - B);
    svg +=
      `<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#eee"/><text x="${L - 4}" y="${y + 4}" ` +
      `text-anchor="end">${fmt(o.logY ? 10 ** v : v)}</text>`;
  }
  for (const v of ticks(x0, x1, 5)) svg += `<text x="${px(v)}" y="${H - B + 16}" text-anchor="middle">${fmt(v)}</text>`;
  if (o.xLabel) svg += `<text x="${(W + L) / 2}" y="${H - 6}" text-anchor="middle">${esc(o.xLabel)}</text>`;
  if (o.yLabel)
    svg +=
      `<text x="14" y="${(H + Tp - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ` +
      `${(H + Tp - B) / 2})">${esc(o.yLabel)}</text>`;
  series.forEach((s, k) => {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
    if (!p.length) return;
    svg +=
      `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" ` +
      `points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`;
    svg += `<text x="${L + 8}" y="${Tp + 16 + 14 * k}" fill="${s.color}">${esc(s.label)}</text>`;
  });
  return new Html(`${svg}</svg>`); // every value above is a finite number or escaped text
}

function movingAverage(points: [number, number][], k: number): [number, number][] {
  const out: [number, number][] = [];
  let acc = 0;
  const q: number[] = [];
  for (const [x, y] of points) {
    q.push(y);
    acc += y;
    if (q.length > k) acc -= q.shift()!;
    out.push([x, acc / q.length]);
  }
  return out;
}

/** Keeps at most n points (every k-th), so that long runs stay light. */
const thin = (p: [number, number][], n = 1500) =>
  p.length <= n ? p : p.filter((_, i) => i % Math.ceil(p.length / n) === 0 || i === p.length - 1);

function readJsonFiles(dir: string): { file: string; value: Record<string, unknown> }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && !['config.json', 'scheduler_config.json', 'model_index.json'].includes(f))
    .flatMap((f) => {
      try {
        const value = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>;
        return value && typeof value === 'object' && !Array.isArray(value) ? [{ file: f, value }] : [];
      } catch {
        return []; // not ours (or a folder named *.json): the report shows what it can read
      }
    });
}

interface StepLine {
  step?: unknown;
  loss?: unknown;
  loss_q?: unknown;
  grad_norm?: unknown;
  time_s?: unknown;
  quality?: { fd?: unknown };
}

/** The report's HTML for the run folder dir. */
export function runReport(dir: string): string {
  if (!existsSync(dir)) throw new Error(`${dir}: run folder not found`);
  const metricsPath = join(dir, 'metrics.jsonl');
  let text = '';
  try {
    text = existsSync(metricsPath) ? readFileSync(metricsPath, 'utf8') : '';
  } catch (e) {
    throw new Error(`${metricsPath}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const lines = text.split('\n').filter(Boolean);
  const steps = lines.flatMap((l, i) => {
    try {
      const v = JSON.parse(l) as StepLine;
      return v && typeof v === 'object' ? [v] : [];
    } catch {
      throw new Error(`${metricsPath}: line ${i + 1} is not valid JSON`);
    }
  });
  const sections: Html[] = [];
  const title = `ddpm run ${basename(dir)}`;
  // options of the newest checkpoint
  const ckRoot = join(dir, 'checkpoints');
  const ck = existsSync(ckRoot)
    ? readdirSync(ckRoot)
        .filter((d) => /^step-\d+$/.test(d))
        .sort()
        .pop()
    : undefined;
  const last = steps[steps.length - 1];
  const minutes = last ? num(last.time_s, (x) => (x / 60).toFixed(1)) : '';
  let summary = last
    ? html`<p>${num(last.step, (x) => x.toLocaleString())} steps logged, ${minutes} minutes in the last session.</p>`
    : html`<p>no metrics.jsonl.</p>`;
  if (ck && existsSync(join(ckRoot, ck, 'trainer_state.json'))) {
    let options: unknown = '(unreadable trainer_state.json)';
    try {
      options = JSON.parse(readFileSync(join(ckRoot, ck, 'trainer_state.json'), 'utf8')).options ?? {};
    } catch {
      // shown as unreadable
    }
    const pre = html`<pre>${JSON.stringify(options, null, 2)}</pre>`;
    summary = html`${summary}<details><summary>options (${ck})</summary>${pre}</details>`;
  }
  sections.push(html`<h1>${title}</h1>${summary}`);

  if (steps.length) {
    const loss = pairs(steps.map((m) => pair(m.step, m.loss)));
    const w = Math.max(1, Math.min(100, Math.floor(steps.length / 20)));
    sections.push(
      html`<h2>Training loss</h2>${svgChart(
        'loss per step (grey) and its moving average (blue)',
        [
          { label: 'per step', color: '#bbb', points: thin(loss) },
          { label: `moving average (${w} steps)`, color: '#1450c8', points: thin(movingAverage(loss, w)) },
        ],
        { logY: true, xLabel: 'step', yLabel: 'loss' },
      )}`,
    );
    const colors = ['#c81e1e', '#e08214', '#1a9850', '#1450c8'];
    const quarter = [0, 1, 2, 3].map((q) => ({
      label: `t in quarter ${q + 1} of [0, T)`,
      color: colors[q],
      points: thin(
        movingAverage(pairs(steps.map((m) => pair(m.step, Array.isArray(m.loss_q) ? m.loss_q[q] : null))), w),
      ),
    }));
    sections.push(
      svgChart('L_simple by quarter of the t range (moving average)', quarter, {
        logY: true,
        xLabel: 'step',
        yLabel: 'mse',
      }),
    );
    const gn = pairs(steps.map((m) => pair(m.step, m.grad_norm)));
    if (gn.length)
      sections.push(
        svgChart(
          'gradient norm (before clipping)',
          [{ label: 'grad norm', color: '#7b3294', points: thin(movingAverage(gn, w)) }],
          { logY: true, xLabel: 'step' },
        ),
      );
    const q = pairs(steps.map((m) => pair(m.step, m.quality?.fd)));
    if (q.length)
      sections.push(
        html`<h2>Sample quality during training</h2>${svgChart(
          'FD on the digit network',
          [{ label: 'FD', color: '#c81e1e', points: q }],
          { xLabel: 'step' },
        )}`,
      );
  }

  const sampleDir = join(dir, 'samples');
  const grids = existsSync(sampleDir)
    ? readdirSync(sampleDir)
        .filter((f) => /^step-\d+\.png$/.test(f))
        .sort()
    : [];
  if (grids.length) {
    const shown =
      grids.length <= 12
        ? grids
        : grids.filter((_, i) => i % Math.ceil(grids.length / 12) === 0 || i === grids.length - 1);
    const figures = shown.map((f) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(sampleDir, f));
      } catch (e) {
        throw new Error(
          `${join(sampleDir, f)}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        );
      }
      const src = `data:image/png;base64,${bytes.toString('base64')}`;
      const caption = html`<figcaption>step ${Number(/\d+/.exec(f)![0]).toLocaleString()}</figcaption>`;
      return html`<figure><img alt="${f}" src="${src}">${caption}</figure>`;
    });
    sections.push(html`<h2>Samples over training</h2><div class="grid">${figures}</div>`);
  }

  for (const { file, value } of readJsonFiles(dir)) {
    if (isNum(value.total) && Array.isArray(value.terms)) {
      const terms = pairs((value.terms as { t?: unknown; bpd?: unknown }[]).map((x) => pair(x?.t, x?.bpd)));
      const rd = Array.isArray(value.rateDistortion)
        ? pairs((value.rateDistortion as { rate?: unknown; rmse?: unknown }[]).map((x) => pair(x?.rate, x?.rmse))).sort(
            (a, b) => a[0] - b[0],
          )
        : [];
      const clip = typeof value.clip === 'boolean' ? String(value.clip) : '?';
      const f4 = (x: number) => x.toFixed(4);
      const facts = table(
        ['total', 'prior L_T', 'decoder L_0', 'KL sum', 'images', 'x0 clipped'],
        [
          num(value.total, f4),
          num(value.prior, (x) => x.toExponential(2)),
          num(value.decoder, f4),
          num(value.kl, f4),
        ].concat([num(value.images, String), clip]),
      );
      const perT = svgChart('bound term per t (bits/dim)', [{ label: 'L_t', color: '#1450c8', points: terms }], {
        logY: true,
        xLabel: 't',
      });
      const rdChart = svgChart(
        'rate-distortion of the reverse chain (paper Fig. 5)',
        [{ label: 'RMSE (0-255) against rate', color: '#c81e1e', points: rd }],
        { xLabel: 'rate (bits/dim)', yLabel: 'RMSE' },
      );
      sections.push(html`<h2>Bits/dim (${file})</h2>${facts}${perT}${rdChart}`);
    } else if (isNum(value.fd)) {
      const k = (value.kid ?? {}) as { mean?: unknown; stderr?: unknown },
        is = (value.is ?? {}) as { mean?: unknown; std?: unknown };
      const kid = isNum(k.mean)
        ? html`${num(k.mean, (x) => x.toExponential(2))} &plusmn; ${num(k.stderr, (x) => x.toExponential(1))}`
        : '-';
      const iss = isNum(is.mean)
        ? html`${num(is.mean, (x) => x.toFixed(2))} &plusmn; ${num(is.std, (x) => x.toFixed(2))}`
        : '-';
      const facts = table(
        ['images', 'reference', 'FD', 'KID', 'IS'],
        [String(value.images), String(value.reference), num(value.fd, (x) => x.toFixed(3)), kid, iss],
      );
      sections.push(html`<h2>Sample quality (${file})</h2>${facts}`);
    }
  }
  const css =
    'body{font:14px system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}svg{display:block;margin:1em ' +
    '0}svg text{font-size:11px;fill:#444}svg ' +
    'text.t{font-size:13px;fill:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px ' +
    '8px}.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}img{image-rendering:pixelated;width:180px}';
  const head = html`<head><meta charset="utf-8"><title>${title}</title><style>${new Html(css)}</style></head>`;
  return `${html`<!doctype html><html lang="en">${head}<body>${sections}</body></html>`}\n`;
}
