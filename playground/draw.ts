// The playground's pictures: image grids on a canvas and the training loss chart (an SVG with a linear step axis and a
// log loss axis, both with ticks and labels).
import * as lib from '../src/browser.js';

/** Draws [N, C, H, W] images on [-1, 1] into a canvas as a grid, each pixel `scale` screen pixels (less where the page
 * is narrower: the canvas keeps its aspect ratio and never grows past its container). */
export function drawGrid(canvas: HTMLCanvasElement, x: Float32Array, shape: number[], cols: number, scale = 3): void {
  const [N, C, H, W] = shape;
  const rows = Math.ceil(N / cols),
    pad = 2;
  const w = cols * (W + pad) + pad,
    h = rows * (H + pad) + pad;
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * scale}px`;
  canvas.style.height = 'auto';
  canvas.style.aspectRatio = `${w} / ${h}`;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(w, h);
  img.data.fill(255);
  for (let n = 0; n < N; n++) {
    const ox = pad + (n % cols) * (W + pad),
      oy = pad + Math.floor(n / cols) * (H + pad);
    for (let y = 0; y < H; y++)
      for (let xx = 0; xx < W; xx++) {
        const o = ((oy + y) * w + ox + xx) * 4;
        for (let c = 0; c < 3; c++) {
          const v = x[((n * C + (C === 1 ? 0 : c)) * H + y) * W + xx];
          img.data[o + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
        }
      }
  }
  ctx.putImageData(img, 0, 0);
}

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [0, max]. */
export function linearTicks(max: number, count = 5): number[] {
  const raw = max / count,
    p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v));
  return out;
}

/** Ticks of a log axis over [lo, hi]: the powers of ten inside, with 2x and 5x between them when those are few. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const mults = Math.log10(hi / lo) < 1.5 ? [1, 2, 5] : [1];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of mults) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  return out;
}

const fmtLoss = (v: number) => (v >= 1 ? String(Number(v.toPrecision(3))) : v.toPrecision(1));

/**
 * The training loss against the step: the raw per-step loss in grey and its moving average in blue, step on x from 0,
 * loss on a log y axis, with tick labels and axis titles. `planned`: the x axis spans at least this many steps.
 */
export function drawLossChart(svg: SVGSVGElement, losses: number[], planned: number): void {
  const W = 400,
    H = 200,
    L = 46,
    R = 18,
    T = 10,
    B = 38;
  const xMax = Math.max(planned, losses.length, 1);
  let lo = losses.length ? Math.min(...losses) : 0.01,
    hi = losses.length ? Math.max(...losses) : 1;
  // at least a factor of 4 between the ends, centred on the data, so a flat curve still has ticks
  if (hi / lo < 4) {
    const mid = Math.sqrt(hi * lo);
    lo = mid / 2;
    hi = mid * 2;
  }
  lo = 10 ** (Math.floor(Math.log10(lo) * 4) / 4);
  hi = 10 ** (Math.ceil(Math.log10(hi) * 4) / 4);
  const sx = (s: number) => L + (s / xMax) * (W - L - R);
  const sy = (v: number) => T + (1 - Math.log(v / lo) / Math.log(hi / lo)) * (H - T - B);
  const parts: string[] = [];
  for (const s of linearTicks(xMax)) {
    const x = sx(s).toFixed(1);
    parts.push(`<line class="grid" x1="${x}" x2="${x}" y1="${T}" y2="${H - B}"/>`);
    parts.push(`<text class="tick x-tick" x="${x}" y="${H - B + 14}" text-anchor="middle">${s}</text>`);
  }
  for (const v of logTicks(lo, hi)) {
    const y = sy(v).toFixed(1);
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="tick y-tick" x="${L - 4}" y="${y}" dy="4" text-anchor="end">${fmtLoss(v)}</text>`);
  }
  parts.push(`<path class="axis" d="M${L},${T}V${H - B}H${W - R}"/>`);
  parts.push(`<text class="axis-label x-label" x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">step</text>`);
  parts.push(
    `<text class="axis-label y-label" transform="translate(12 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">` +
      'loss (log scale)</text>',
  );
  const line = (vs: number[]) =>
    vs.map((v, i) => `${i ? 'L' : 'M'}${sx(i + 1).toFixed(1)},${sy(v).toFixed(1)}`).join('');
  if (losses.length) {
    let m = losses[0];
    const avg = losses.map((v) => (m = 0.9 * m + 0.1 * v));
    parts.push(`<path class="raw" d="${line(losses)}"/>`, `<path class="avg" d="${line(avg)}"/>`);
    parts.push(
      `<text class="legend" x="${W - R}" y="${T + 10}" text-anchor="end">` +
        '<tspan class="raw-key">grey: each step</tspan> · <tspan class="avg-key">blue: moving average</tspan></text>',
    );
  } else
    parts.push(
      `<text class="empty" x="${(L + W - R) / 2}" y="${(T + H - B) / 2}" text-anchor="middle">` +
        'press Train to draw the loss</text>',
    );
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.innerHTML = parts.join('');
  svg.dataset.points = String(losses.length);
}

/** The forward chain q(x_t | x_0) on the first samples of a run: each noised to eight timesteps with one noise. */
export async function drawForward(
  canvas: HTMLCanvasElement,
  label: HTMLElement,
  diffusion: lib.GaussianDiffusion,
  x: Float32Array,
  shape: number[],
): Promise<void> {
  const [n, C, H, W] = shape,
    per = C * H * W,
    k = Math.min(n, 4),
    T = diffusion.numTimesteps;
  const ts = [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1].map((f) => Math.round(f * (T - 1)));
  const x0 = new Float32Array(k * ts.length * per);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < ts.length; j++) x0.set(x.subarray(i * per, (i + 1) * per), (i * 8 + j) * per);
  const bs = [k * ts.length, C, H, W];
  const xt = lib.noGrad(() =>
    diffusion.qSample(
      lib.ops.fromArray(x0, bs),
      Int32Array.from({ length: k * ts.length }, (_, i) => ts[i % ts.length]),
      lib.initialNoise(bs, 12345),
    ),
  );
  drawGrid(canvas, await xt.data(), bs, ts.length, 2);
  label.textContent = ts.join(', ');
}
