// The safetensors format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the raw little-endian data. Pure (no file access): parse bytes, serialise to bytes.

export interface SafeTensor {
  shape: number[];
  data: Float32Array;
}

const DTYPE_SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Parses a safetensors file's bytes; every tensor is converted to float32. `file` names the file in errors. */
export function parseSafetensors(
  bytes: Uint8Array,
  file: string,
): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const err = (msg: string) => new Error(`${file}: ${msg}`);
  if (bytes.length < 8) throw err(`too short for a safetensors file (${bytes.length} bytes, header length needs 8)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n < 2 || n > 100_000_000 || 8 + n > bytes.length)
    throw err(`header length ${n} does not fit in a file of ${bytes.length} bytes`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw err(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw err('header must be a JSON object');
  const dataStart = 8 + n,
    dataLen = bytes.length - dataStart;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as Record<string, string>;
      continue;
    }
    const info = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) throw err(`tensor "${name}": entry must be an object`);
    const dtype = info.dtype as string;
    if (!(dtype in DTYPE_SIZE))
      throw err(
        `tensor "${name}": dtype ${JSON.stringify(info.dtype)} is not supported (expected F32, F16, BF16 or F64)`,
      );
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw err(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    const off = info.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((d) => Number.isInteger(d) && d >= 0) ||
      off[0] > off[1] ||
      off[1] > dataLen
    )
      throw err(`tensor "${name}": data_offsets ${JSON.stringify(off)} outside the ${dataLen} data bytes`);
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    const size = DTYPE_SIZE[dtype];
    if (off[1] - off[0] !== count * size)
      throw err(
        `tensor "${name}": ${off[1] - off[0]} bytes for shape ${JSON.stringify(shape)} of ${dtype} (expected ` +
          `${count * size})`,
      );
    const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart + off[0], off[1] - off[0]);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      data[i] =
        dtype === 'F32'
          ? view.getFloat32(4 * i, true)
          : dtype === 'F64'
            ? view.getFloat64(8 * i, true)
            : dtype === 'F16'
              ? f16ToF32(view.getUint16(2 * i, true))
              : new Float32Array(new Uint32Array([view.getUint16(2 * i, true) << 16]).buffer)[0];
    }
    tensors.set(name, { shape, data });
  }
  return { tensors, metadata };
}

/** float32 to IEEE half, rounding to nearest even; out-of-range values become +-Infinity. */
export function f32ToF16(x: number): number {
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  f[0] = x;
  const b = u[0],
    sign = (b >>> 16) & 0x8000,
    e = (b >>> 23) & 0xff,
    m = b & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  const E = e - 127 + 15;
  if (E >= 0x1f) return sign | 0x7c00;
  if (E <= 0) {
    if (E < -10) return sign;
    const mm = m | 0x800000,
      shift = 14 - E;
    let h = mm >>> shift;
    const rem = mm & ((1 << shift) - 1),
      half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (E << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/**
 * Serialises tensors (in the given order) with optional string metadata, as F32 (default) or F16 (half the size;
 * readers convert back to float32).
 */
export function serializeSafetensors(
  tensors: Map<string, SafeTensor> | [string, SafeTensor][],
  metadata?: Record<string, string>,
  dtype: 'F32' | 'F16' = 'F32',
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : tensors;
  const size = dtype === 'F16' ? 2 : 4;
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const [name, t] of entries) {
    const bytes = t.data.length * size;
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8); // align the data to 8 bytes
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + off);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const [, t] of entries) {
    if (dtype === 'F32') out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.length * 4), p);
    else for (let i = 0; i < t.data.length; i++) dv.setUint16(p + 2 * i, f32ToF16(t.data[i]), true);
    p += t.data.length * size;
  }
  return out;
}
