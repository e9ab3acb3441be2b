// NumPy .npz archives (a zip of .npy files): read (stored or deflated entries) and write (stored). Node-only for
// inflate and CRC-32 (node:zlib). Used for feature statistics with `mu` and `sigma`, the layout of pytorch-fid and
// TTUR, so that published statistics files can be read.
import { crc32, inflateRawSync } from 'node:zlib';
import { parseNpy64, serializeNpy } from './npy.js';

/** Reads every array of an .npz file (float32 or float64), as float64. */
export function parseNpz(bytes: Uint8Array, file: string): Map<string, { shape: number[]; data: Float64Array }> {
  const err = (m: string) => new Error(`${file}: ${m}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // the end-of-central-directory record is within the last 65557 bytes
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--)
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) throw err('not an .npz (zip) file: no end of central directory');
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const out = new Map<string, { shape: number[]; data: Float64Array }>();
  for (let k = 0; k < count; k++) {
    if (p + 46 > bytes.length || dv.getUint32(p, true) !== 0x02014b50) throw err('corrupt central directory');
    const method = dv.getUint16(p + 10, true),
      csize = dv.getUint32(p + 20, true);
    const nlen = dv.getUint16(p + 28, true),
      xlen = dv.getUint16(p + 30, true),
      clen = dv.getUint16(p + 32, true);
    const local = dv.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nlen));
    p += 46 + nlen + xlen + clen;
    if (local + 30 > bytes.length || dv.getUint32(local, true) !== 0x04034b50)
      throw err(`corrupt local header of ${name}`);
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + csize > bytes.length) throw err(`entry ${name} is truncated`);
    const raw = bytes.subarray(start, start + csize);
    let data: Uint8Array;
    if (method === 0) data = raw;
    else if (method === 8) data = new Uint8Array(inflateRawSync(raw));
    else throw err(`entry ${name} uses compression method ${method} (only stored and deflate are supported)`);
    out.set(name.replace(/\.npy$/, ''), parseNpy64(data, `${file}:${name}`));
  }
  return out;
}

/** An .npz archive of the given arrays, stored uncompressed (what np.savez writes). */
export function serializeNpz(
  arrays: Record<string, { shape: number[]; data: Float32Array | Float64Array }>,
): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [],
    central: Uint8Array[] = [];
  let offset = 0;
  for (const [key, a] of Object.entries(arrays)) {
    const name = enc.encode(`${key}.npy`);
    const body = serializeNpy(a.data, a.shape);
    const crc = crc32(body) >>> 0;
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, body.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, body.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    parts.push(local, body);
    central.push(cd);
    offset += local.length + body.length;
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of all) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
