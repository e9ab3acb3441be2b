// NumPy .npy files (version 1.0/2.0, little-endian float32 or float64, C order): read and write. Pure.

export function parseNpy(bytes: Uint8Array, file: string): { shape: number[]; data: Float32Array } {
  const r = parseNpy64(bytes, file);
  return { shape: r.shape, data: Float32Array.from(r.data) };
}

/** As parseNpy, keeping float64 values exact (statistics files). */
export function parseNpy64(bytes: Uint8Array, file: string): { shape: number[]; data: Float64Array } {
  const err = (m: string) => new Error(`${file}: ${m}`);
  if (bytes.length < 10 || bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== 'NUMPY')
    throw err('not a .npy file (bad magic)');
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const hstart = major === 1 ? 10 : 12;
  if (hstart + hlen > bytes.length) throw err('truncated header');
  const header = new TextDecoder().decode(bytes.subarray(hstart, hstart + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeStr === undefined) throw err(`cannot read the header ${JSON.stringify(header)}`);
  if (fortran) throw err('fortran_order arrays are not supported (save with C order)');
  if (descr !== '<f4' && descr !== '<f8')
    throw err(`dtype ${descr} is not supported (expected float32 <f4 or float64 <f8)`);
  const shape = shapeStr
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const size = descr === '<f4' ? 4 : 8;
  const start = hstart + hlen;
  if (bytes.length - start < count * size)
    throw err(
      `truncated data: shape (${shape.join(', ')}) needs ${count * size} bytes, file has ${bytes.length - start}`,
    );
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++)
    data[i] = size === 4 ? dv.getFloat32(start + 4 * i, true) : dv.getFloat64(start + 8 * i, true);
  return { shape, data };
}

/** A .npy file of float32 (Float32Array) or float64 (Float64Array) values in C order. */
export function serializeNpy(data: Float32Array | Float64Array, shape: number[]): Uint8Array {
  const size = data instanceof Float64Array ? 8 : 4;
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f${size}', 'fortran_order': False, 'shape': ${shp}, }`;
  header += `${' '.repeat(63 - ((header.length + 10) % 64))}\n`;
  const out = new Uint8Array(10 + header.length + data.length * size);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.length * size), 10 + header.length);
  return out;
}
