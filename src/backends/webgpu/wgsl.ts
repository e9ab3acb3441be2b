// The WGSL building blocks of the WebGPU backend's kernels: the preamble every kernel starts with, the storage
// bindings, and the generators of element kernels (one thread per value) and row kernels (one workgroup per row,
// with workgroup reductions). Every kernel reads its parameters from binding 0, a read-only array<u32> (floats
// bit-cast), so no kernel depends on uniform-buffer alignment rules. Inputs follow as read-only storage buffers,
// outputs as read_write. Element kernels index a 2-D grid of 256-thread workgroups (more than 65,535 workgroups in
// one dimension are not allowed), so the linear index is (wid.y * nwg.x + wid.x) * 256 + lid.x.

export const WG = 256;

export const HEAD = /* wgsl */ `
@group(0) @binding(0) var<storage, read> P: array<u32>;
fn pf(i: u32) -> f32 { return bitcast<f32>(P[i]); }
fn lin(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * ${WG}u + lid.x; }
fn sigm(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }
// tanh without overflow for large |v|
fn tanhs(v: f32) -> f32 { let e = exp(-2.0 * abs(v)); return sign(v) * (1.0 - e) / (1.0 + e); }
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
// approx_standard_normal_cdf of the official DDPM code
fn ncdf(v: f32) -> f32 { return 0.5 * (1.0 + tanhs(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v))); }
`;

const ENTRY =
  `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wid: vec3u, ` +
  '@builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u)';

/** Storage bindings 1.. of a kernel: [name, access]; binding 0 is always the parameters. */
export type Bindings = [string, 'read' | 'read_write'][];

export function bindings(bs: Bindings): string {
  return bs.map(([n, a], i) => `@group(0) @binding(${i + 1}) var<storage, ${a}> ${n}: array<f32>;`).join('\n');
}

/** A kernel over n elements (P[0] = n); body sees i. */
export function elementwise(bs: Bindings, body: string, extra = ''): string {
  return (
    `${HEAD}${bindings(bs)}\n${extra}\n${ENTRY} {\n` +
    `  let i = lin(wid, nwg, lid);\n  if (i >= P[0]) { return; }\n  ${body}\n}`
  );
}

export const MAX_RANK = 6;

/** Decodes linear index `o` over shape P[base..base+rank) into a dot product with strides P[sbase..). */
export const DOT = `fn dotIdx(o: u32, rank: u32, shapeAt: u32, strideAt: u32) -> u32 {
  var r = o; var off = 0u;
  for (var d = i32(rank) - 1; d >= 0; d--) {
    let s = P[shapeAt + u32(d)]; off += (r % s) * P[strideAt + u32(d)]; r = r / s;
  }
  return off;
}`;

// ---- workgroup reductions: one 64-thread workgroup per output (fewer threads, fewer barrier rounds: software
// drivers run each barrier as a switch of every thread) ----

export const RWG = 64;

const WG_REDUCE = `var<workgroup> red: array<f32, ${RWG}>;
fn wgSum(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${RWG / 2}u; s > 0u; s = s >> 1u) { if (t < s) { red[t] += red[t + s]; } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}
fn wgMax(v: f32, t: u32) -> f32 {
  red[t] = v; workgroupBarrier();
  for (var s = ${RWG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); } workgroupBarrier();
  }
  let r = red[0]; workgroupBarrier(); return r;
}`;

/** A kernel with one workgroup per "row" (P[0] rows); body sees row and t (the thread, 0..63). */
export function perRow(bs: Bindings, body: string, extra = ''): string {
  return (
    `${HEAD}${bindings(bs)}\n${WG_REDUCE}\n${DOT}\n${extra}\n${ENTRY.replace(`${WG}`, `${RWG}`)} {\n` +
    `  let row = wid.y * nwg.x + wid.x; let t = lid.x;\n  if (row >= P[0]) { return; }\n  ${body}\n}`
  );
}
