// Pictures (Node-only): sample grids, denoising strips and line plots as PNG.
import { PNG } from 'pngjs';
import { writeFileAtomic } from './files.js';

export interface RGBAImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Model output on [-1, 1] to bytes: clip(round((x + 1) * 127.5), 0, 255). */
function toByte(x: number): number {
  return Math.min(255, Math.max(0, Math.round((x + 1) * 127.5)));
}

/** Lays out images [N, C, H, W] (values on [-1, 1], C = 1 or 3) in a grid with a 2-pixel border. */
export function imageGrid(x: Float32Array, shape: number[], cols: number): RGBAImage {
  const [N, C, H, W] = shape;
  const rows = Math.ceil(N / cols),
    pad = 2;
  const width = cols * (W + pad) + pad,
    height = rows * (H + pad) + pad;
  const data = new Uint8Array(width * height * 4).fill(255);
  for (let n = 0; n < N; n++) {
    const gx = pad + (n % cols) * (W + pad),
      gy = pad + Math.floor(n / cols) * (H + pad);
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        const o = ((gy + h) * width + gx + w) * 4;
        for (let c = 0; c < 3; c++) data[o + c] = toByte(x[((n * C + (C === 1 ? 0 : c)) * H + h) * W + w]);
        data[o + 3] = 255;
      }
  }
  return { width, height, data };
}

/** colorType: 6 RGBA (default), 2 RGB, 0 grayscale (from the red channel). */
export function encodePng(img: RGBAImage, colorType: 0 | 2 | 6 = 6): Buffer {
  const png = new PNG({ width: img.width, height: img.height });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  return PNG.sync.write(png, colorType === 6 ? {} : { colorType, inputHasAlpha: true });
}

export function writePng(path: string, img: RGBAImage, colorType: 0 | 2 | 6 = 6): void {
  writeFileAtomic(path, encodePng(img, colorType));
}

/**
 * Writes one image per PNG, the i-th of x [N, C, H, W] to pathFor(i): exactly H x W pixels, no border, 8-bit
 * grayscale for C = 1 and RGB for C = 3, so that the files read back as data.
 */
export function writeImages(x: Float32Array, shape: number[], pathFor: (i: number) => string): void {
  const [N, C, H, W] = shape;
  const per = C * H * W;
  for (let n = 0; n < N; n++) {
    const data = new Uint8Array(H * W * 4);
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) data[p * 4 + c] = toByte(x[n * per + (C === 1 ? 0 : c) * H * W + p]);
      data[p * 4 + 3] = 255;
    }
    writePng(pathFor(n), { width: W, height: H, data }, C === 1 ? 0 : 2);
  }
}

// A 3x5 pixel font for tick labels: each glyph is 5 rows of 3 bits.
const GLYPHS: Record<string, number[]> = {
  '0': [7, 5, 5, 5, 7],
  '1': [2, 6, 2, 2, 7],
  '2': [7, 1, 7, 4, 7],
  '3': [7, 1, 7, 1, 7],
  '4': [5, 5, 7, 1, 1],
  '5': [7, 4, 7, 1, 7],
  '6': [7, 4, 7, 5, 7],
  '7': [7, 1, 1, 1, 1],
  '8': [7, 5, 7, 5, 7],
  '9': [7, 5, 7, 1, 7],
  '.': [0, 0, 0, 0, 2],
  '-': [0, 0, 7, 0, 0],
  e: [0, 7, 7, 4, 7],
  k: [4, 5, 6, 5, 5],
};

function drawText(img: RGBAImage, text: string, x: number, y: number, scale = 2): void {
  for (const ch of text) {
    const g = GLYPHS[ch];
    if (g)
      for (let r = 0; r < 5; r++)
        for (let c = 0; c < 3; c++)
          if (g[r] & (4 >> c))
            for (let dy = 0; dy < scale; dy++)
              for (let dx = 0; dx < scale; dx++) {
                const px = x + c * scale + dx,
                  py = y + r * scale + dy;
                if (px >= 0 && py >= 0 && px < img.width && py < img.height)
                  img.data.set([60, 60, 60, 255], (py * img.width + px) * 4);
              }
    x += 4 * scale;
  }
}

function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a >= 10000) return `${+(v / 1000).toFixed(a >= 100000 ? 0 : 1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 0.01 || v === 0) return String(+v.toPrecision(3));
  return v.toExponential(1).replace('e-', 'e-');
}

/** A line plot of one or more series on shared axes (log-scale y optional), with grid lines. */
export function linePlot(
  series: { points: [number, number][]; color: [number, number, number] }[],
  width = 640,
  height = 360,
  logY = false,
): RGBAImage {
  const data = new Uint8Array(width * height * 4).fill(255);
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!logY || y > 0));
  const fy = (y: number) => (logY ? Math.log10(y) : y);
  const xs = all.map((p) => p[0]),
    ys = all.map((p) => fy(p[1]));
  const x0 = Math.min(...xs),
    x1 = Math.max(...xs),
    y0 = Math.min(...ys),
    y1 = Math.max(...ys);
  const m = 30,
    left = 64;
  const px = (x: number) => left + ((x - x0) / (x1 - x0 || 1)) * (width - left - m);
  const py = (y: number) => height - m - ((fy(y) - y0) / (y1 - y0 || 1)) * (height - 2 * m);
  const set = (x: number, y: number, c: [number, number, number]) => {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const o = (y * width + x) * 4;
    data[o] = c[0];
    data[o + 1] = c[1];
    data[o + 2] = c[2];
    data[o + 3] = 255;
  };
  const img = { width, height, data };
  for (let k = 0; k <= 4; k++) {
    const gy = m + (k * (height - 2 * m)) / 4,
      gx = left + (k * (width - left - m)) / 4;
    for (let x = left; x <= width - m; x++) set(x, gy, [225, 225, 225]);
    for (let y = m; y <= height - m; y++) set(gx, y, [225, 225, 225]);
    const yv = y1 - (k * (y1 - y0)) / 4;
    drawText(img, tickLabel(logY ? 10 ** yv : yv), 4, gy - 5);
    const xl = tickLabel(x0 + (k * (x1 - x0)) / 4);
    drawText(img, xl, gx - xl.length * 4, height - m + 8);
  }
  for (let x = left; x <= width - m; x++) set(x, height - m, [0, 0, 0]);
  for (let y = m; y <= height - m; y++) set(left, y, [0, 0, 0]);
  for (const s of series) {
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!logY || y > 0));
    for (let i = 1; i < pts.length; i++) {
      const ax = px(pts[i - 1][0]),
        ay = py(pts[i - 1][1]),
        bx = px(pts[i][0]),
        by = py(pts[i][1]);
      const n = Math.max(Math.abs(bx - ax), Math.abs(by - ay), 1);
      for (let k = 0; k <= n; k++) set(ax + ((bx - ax) * k) / n, ay + ((by - ay) * k) / n, s.color);
    }
  }
  return { width, height, data };
}
