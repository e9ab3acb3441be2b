// The drawing pad: the visitor draws with a mouse, a finger or a pen (pointer events) at the model's resolution,
// scaled up on screen, in white ink on black as MNIST's digits are. The ink is kept per pixel on [0, 1] (a soft round
// brush, each value a multiple of 1/255 so that the pad shows exactly what the model is given); the image the model
// sees is 2 ink - 1 on [-1, 1] in every channel, -1 the background.
import { $ } from './ui.js';

/** Which part of the drawing inpainting keeps: the drawn pixels, or a half of the picture. */
export type Keep = 'drawn' | 'top' | 'bottom' | 'left' | 'right';

let size = 0;
let ink = new Float32Array(0);
/** How many strokes the pad has seen since it was cleared (the page's tests read it as data-strokes). */
let strokes = 0;

const pad = () => $<HTMLCanvasElement>('pad');
const BRUSH: Record<string, number> = { thin: 0.8, normal: 1.3, thick: 2 };

/** Shows the ink on the pad's canvas (one canvas pixel per model pixel, scaled up by CSS). */
function render(): void {
  const c = pad();
  const ctx = c.getContext('2d')!;
  const img = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    const v = Math.round(ink[i] * 255);
    img.data.set([v, v, v, 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  c.dataset.strokes = String(strokes);
  c.dataset.inked = String(ink.reduce((n, v) => n + (v > 0 ? 1 : 0), 0));
}

/** A soft round dot of the brush's radius at (x, y) in model pixels; ink only grows. */
function stamp(x: number, y: number): void {
  const r = Math.max(0.6, (size / 28) * (BRUSH[$<HTMLSelectElement>('brush').value] ?? 1.3));
  for (let py = Math.max(0, Math.floor(y - r - 1)); py < Math.min(size, Math.ceil(y + r + 1)); py++)
    for (let px = Math.max(0, Math.floor(x - r - 1)); px < Math.min(size, Math.ceil(x + r + 1)); px++) {
      const d = Math.hypot(px + 0.5 - x, py + 0.5 - y);
      const v = Math.round(Math.min(1, Math.max(0, r + 0.5 - d)) * 255) / 255;
      if (v > ink[py * size + px]) ink[py * size + px] = v;
    }
}

/** Clears the pad and sizes it for a model of this resolution (each model pixel about 280 / size screen pixels). */
export function resetPad(sampleSize: number): void {
  size = sampleSize;
  ink = new Float32Array(size * size);
  strokes = 0;
  const c = pad();
  c.width = c.height = size;
  const scale = Math.max(1, Math.round(280 / size));
  c.style.width = `${size * scale}px`;
  c.style.height = 'auto';
  c.style.aspectRatio = '1 / 1';
  render();
}

/** Wires the pointer events (mouse, touch and pen alike) and the Clear button. */
export function wirePad(): void {
  const c = pad();
  let last: [number, number] | null = null;
  const at = (e: PointerEvent): [number, number] => {
    const r = c.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * size, ((e.clientY - r.top) / r.height) * size];
  };
  c.onpointerdown = (e) => {
    if (!size || e.button > 0) return;
    e.preventDefault();
    try {
      c.setPointerCapture(e.pointerId); // the stroke goes on when the pointer leaves the pad
    } catch {
      // a pointer the browser no longer tracks (a synthetic event): the stroke still draws while it is over the pad
    }
    last = at(e);
    strokes++;
    stamp(...last);
    render();
  };
  c.onpointermove = (e) => {
    if (!last) return;
    e.preventDefault();
    const p = at(e);
    // dots a quarter of a pixel apart along the segment, so that a fast stroke has no gaps
    const n = Math.max(1, Math.ceil(Math.hypot(p[0] - last[0], p[1] - last[1]) * 4));
    for (let k = 1; k <= n; k++) stamp(last[0] + ((p[0] - last[0]) * k) / n, last[1] + ((p[1] - last[1]) * k) / n);
    last = p;
    render();
  };
  c.onpointerup = c.onpointercancel = () => {
    last = null;
  };
  $<HTMLButtonElement>('padClear').onclick = () => resetPad(size);
}

/** Whether anything is drawn. */
export const padInked = () => ink.some((v) => v > 0);

/** The drawing as a [1, C, size, size] image on [-1, 1] (white ink on a -1 background, every channel alike). */
export function padImage(C: number): Float32Array {
  const out = new Float32Array(C * size * size);
  for (let c = 0; c < C; c++) for (let i = 0; i < size * size; i++) out[c * size * size + i] = 2 * ink[i] - 1;
  return out;
}

/** The [size, size] mask of the pixels inpainting keeps (1) and fills (0). */
export function padMask(keep: Keep): Float32Array {
  const h = size / 2;
  return Float32Array.from({ length: size * size }, (_, i) => {
    const y = Math.floor(i / size) + 0.5,
      x = (i % size) + 0.5;
    const kept = {
      drawn: ink[i] > 0,
      top: y < h,
      bottom: y > h,
      left: x < h,
      right: x > h,
    }[keep];
    return kept ? 1 : 0;
  });
}
