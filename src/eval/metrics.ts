// Sample-quality metrics on feature vectors (float64 throughout): the Frechet distance of FID (Heusel et al. 2017, as
// pytorch-fid computes it), the kernel inception distance KID (Binkowski et al. 2018, unbiased, cubic polynomial
// kernel), the Inception Score (Salimans et al. 2016, 10 splits) and precision / recall (Kynkaenniemi et al. 2019,
// k-nearest-neighbour balls). Which network gives the features is the caller's choice (src/eval/digitnet.ts for
// 28x28 data). Pure: no file access.
import { randomPermutation } from '../engine/random.js';
import { streams } from '../engine/streams.js';

/** Mean and covariance of n feature vectors of dimension d (the statistics FID compares; pytorch-fid's mu, sigma). */
export interface FeatureStats {
  dim: number;
  n: number;
  mu: Float64Array;
  /** d x d, row-major, unbiased (n - 1), as numpy's np.cov(rowvar=False) */
  sigma: Float64Array;
  /** the centered features (n x d), kept when n <= d: sigma's rank is then below d, and FD uses them exactly */
  centered?: Float64Array;
}

/** feats: n rows of d values. */
export function featureStats(feats: ArrayLike<number>, n: number, d: number): FeatureStats {
  if (feats.length !== n * d) throw new Error(`featureStats: ${feats.length} values are not ${n} vectors of ${d}`);
  if (n < 2) throw new Error(`featureStats: need at least 2 feature vectors, got ${n}`);
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] += feats[i * d + j];
  for (let j = 0; j < d; j++) mu[j] /= n;
  const sigma = new Float64Array(d * d);
  const c = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) c[j] = feats[i * d + j] - mu[j];
    for (let a = 0; a < d; a++) {
      const ca = c[a];
      if (ca === 0) continue;
      const row = a * d;
      for (let b = a; b < d; b++) sigma[row + b] += ca * c[b];
    }
  }
  for (let a = 0; a < d; a++)
    for (let b = a; b < d; b++) {
      const v = sigma[a * d + b] / (n - 1);
      sigma[a * d + b] = v;
      sigma[b * d + a] = v;
    }
  let centered: Float64Array | undefined;
  if (n <= d) {
    centered = new Float64Array(n * d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) centered[i * d + j] = feats[i * d + j] - mu[j];
  }
  return { dim: d, n, mu, sigma, centered };
}

/**
 * Eigenvalues of a symmetric d x d matrix (row-major; not modified): Householder reduction to tridiagonal form,
 * then the implicit QL method (EISPACK's tred1 / tql1). O(d^3) with small constants; for d = 2048 about 10^10 steps.
 */
export function symmetricEigenvalues(m: Float64Array, n: number): Float64Array {
  const a = Float64Array.from(m);
  const d = new Float64Array(n),
    e = new Float64Array(n);
  for (let i = n - 1; i > 0; i--) {
    const l = i - 1;
    let h = 0;
    if (l > 0) {
      let scale = 0;
      for (let k = 0; k <= l; k++) scale += Math.abs(a[i * n + k]);
      if (scale === 0) e[i] = a[i * n + l];
      else {
        for (let k = 0; k <= l; k++) {
          a[i * n + k] /= scale;
          h += a[i * n + k] * a[i * n + k];
        }
        let f = a[i * n + l];
        let g = f >= 0 ? -Math.sqrt(h) : Math.sqrt(h);
        e[i] = scale * g;
        h -= f * g;
        a[i * n + l] = f - g;
        f = 0;
        for (let j = 0; j <= l; j++) {
          g = 0;
          for (let k = 0; k <= j; k++) g += a[j * n + k] * a[i * n + k];
          for (let k = j + 1; k <= l; k++) g += a[k * n + j] * a[i * n + k];
          e[j] = g / h;
          f += e[j] * a[i * n + j];
        }
        const hh = f / (h + h);
        for (let j = 0; j <= l; j++) {
          f = a[i * n + j];
          e[j] = g = e[j] - hh * f;
          for (let k = 0; k <= j; k++) a[j * n + k] -= f * e[k] + g * a[i * n + k];
        }
      }
    } else e[i] = a[i * n + l];
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    let iter = 0,
      m: number;
    do {
      for (m = l; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m !== l) {
        if (iter++ === 60) throw new Error('symmetricEigenvalues: no convergence');
        let g = (d[l + 1] - d[l]) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = d[m] - d[l] + e[l] / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1,
          c = 1,
          p = 0,
          i: number;
        for (i = m - 1; i >= l; i--) {
          const f = s * e[i],
            b = c * e[i];
          e[i + 1] = r = Math.hypot(f, g);
          if (r === 0) {
            d[i + 1] -= p;
            e[m] = 0;
            break;
          }
          s = f / r;
          c = g / r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2 * c * b;
          p = s * r;
          d[i + 1] = g + p;
          g = c * r - b;
        }
        if (r === 0 && i >= l) continue;
        d[l] -= p;
        e[l] = g;
        e[m] = 0;
      }
    } while (m !== l);
  }
  return d;
}

/** tr(sqrt(S A^T A / (n - 1))) for centered rows A (n x d): the eigenvalues of A S A^T / (n - 1), an n x n matrix. */
function traceSqrtLowRank(s: Float64Array, A: Float64Array, n: number, d: number): number {
  const AS = matmul(A, s, n, d, d);
  const M = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += AS[i * d + k] * A[j * d + k];
      M[i * n + j] = M[j * n + i] = v / (n - 1);
    }
  return symmetricEigenvalues(M, n).reduce((acc, v) => acc + Math.sqrt(Math.max(0, v)), 0);
}

/** Lower Cholesky factor of s + jitter I, raising the jitter from 1e-12 of the mean diagonal until it succeeds. */
function cholesky(s: Float64Array, d: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < d; i++) mean += s[i * d + i] / d;
  for (let jitter = 0; ; jitter = jitter ? jitter * 100 : 1e-12 * (mean || 1)) {
    const L = new Float64Array(d * d);
    let ok = true;
    for (let i = 0; i < d && ok; i++)
      for (let j = 0; j <= i; j++) {
        let v = s[i * d + j] + (i === j ? jitter : 0);
        for (let k = 0; k < j; k++) v -= L[i * d + k] * L[j * d + k];
        if (i === j) {
          if (!(v > 0)) {
            ok = false;
            break;
          }
          L[i * d + i] = Math.sqrt(v);
        } else L[i * d + j] = v / L[j * d + j];
      }
    if (ok) return L;
    if (jitter > mean) throw new Error('frechetDistance: a covariance matrix is not positive semi-definite');
  }
}

/**
 * Eigenvalues and eigenvectors of a symmetric d x d matrix (cyclic Jacobi rotations, to machine precision).
 * Returns values and the vectors as the columns of a row-major matrix.
 */
export function symmetricEigen(a: Float64Array, d: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(d * d);
  for (let i = 0; i < d; i++) V[i * d + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0,
      total = 0;
    for (let p = 0; p < d; p++)
      for (let q = 0; q < d; q++) {
        const v = A[p * d + q] * A[p * d + q];
        total += v;
        if (p !== q) off += v;
      }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < d - 1; p++)
      for (let q = p + 1; q < d; q++) {
        const apq = A[p * d + q];
        if (Math.abs(apq) < 1e-300) continue;
        const app = A[p * d + p],
          aqq = A[q * d + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cs = 1 / Math.sqrt(t * t + 1),
          sn = t * cs;
        for (let k = 0; k < d; k++) {
          const akp = A[k * d + p],
            akq = A[k * d + q];
          A[k * d + p] = cs * akp - sn * akq;
          A[k * d + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = A[p * d + k],
            aqk = A[q * d + k];
          A[p * d + k] = cs * apk - sn * aqk;
          A[q * d + k] = sn * apk + cs * aqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = V[k * d + p],
            vkq = V[k * d + q];
          V[k * d + p] = cs * vkp - sn * vkq;
          V[k * d + q] = sn * vkp + cs * vkq;
        }
      }
  }
  return { values: Float64Array.from({ length: d }, (_, i) => A[i * d + i]), vectors: V };
}

/** a [m, k] times b [k, n], row-major, in float64 (rows of zeros skipped cheaply). */
function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const v = a[i * k + p];
      if (v === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += v * b[p * n + j];
    }
  return out;
}

/**
 * tr(sqrtm(S1 S2)) for symmetric positive semi-definite S1, S2: the sum of the square roots of the eigenvalues of
 * S1 S2, which are those of the symmetric L^T S2 L with S1 = L L^T (Cholesky; a tiny jitter when S1 is singular).
 */
export function traceSqrtProduct(s1: Float64Array, s2: Float64Array, d: number): number {
  const L = cholesky(s1, d);
  // T = S2 L, then M = L^T T (L lower triangular)
  const T = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let k = 0; k < d; k++) {
      const v = s2[i * d + k];
      if (v === 0) continue;
      for (let j = 0; j <= k; j++) T[i * d + j] += v * L[k * d + j];
    }
  const M = new Float64Array(d * d);
  for (let k = 0; k < d; k++)
    for (let i = 0; i <= k; i++) {
      const l = L[k * d + i];
      if (l === 0) continue;
      for (let j = 0; j < d; j++) M[i * d + j] += l * T[k * d + j];
    }
  for (let i = 0; i < d; i++)
    for (let j = i + 1; j < d; j++) M[i * d + j] = M[j * d + i] = 0.5 * (M[i * d + j] + M[j * d + i]);
  return symmetricEigenvalues(M, d).reduce((acc, v) => acc + Math.sqrt(Math.max(0, v)), 0);
}

/**
 * The Frechet distance between two Gaussians: |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)) (FID's formula,
 * as pytorch-fid's calculate_frechet_distance). When one side kept its centered features (n <= d, so its covariance
 * is singular), the trace term is computed exactly in n dimensions.
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  if (a.dim !== b.dim) throw new Error(`frechetDistance: feature dimensions differ (${a.dim} vs ${b.dim})`);
  const d = a.dim;
  let diff = 0,
    tr = 0;
  for (let j = 0; j < d; j++) {
    diff += (a.mu[j] - b.mu[j]) ** 2;
    tr += a.sigma[j * d + j] + b.sigma[j * d + j];
  }
  const low = [a, b].filter((x) => x.centered).sort((x, y) => x.n - y.n)[0];
  const cross = low
    ? traceSqrtLowRank(low === a ? b.sigma : a.sigma, low.centered!, low.n, d)
    : traceSqrtProduct(a.sigma, b.sigma, d);
  return diff + tr - 2 * cross;
}

/** Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 between row sets X (m x d) and Y (m x d). */
export function polynomialMmd(x: ArrayLike<number>, y: ArrayLike<number>, m: number, d: number): number {
  const k = (A: ArrayLike<number>, i: number, B: ArrayLike<number>, j: number) => {
    let s = 0;
    const a = i * d,
      b = j * d;
    for (let c = 0; c < d; c++) s += A[a + c] * B[b + c];
    return (s / d + 1) ** 3;
  };
  let xx = 0,
    yy = 0,
    xy = 0;
  for (let i = 0; i < m; i++) {
    for (let j = i + 1; j < m; j++) {
      xx += k(x, i, x, j);
      yy += k(y, i, y, j);
    }
    for (let j = 0; j < m; j++) xy += k(x, i, y, j);
  }
  // the off-diagonal sums count each pair twice
  return (2 * xx) / (m * (m - 1)) + (2 * yy) / (m * (m - 1)) - (2 * xy) / (m * m);
}

/**
 * KID: the unbiased polynomial MMD^2 averaged over `subsets` random subsets of `subsetSize` rows of each set (as
 * torch-fidelity and the KID paper's code do); mean, standard deviation over subsets, and standard error.
 */
export function kernelInceptionDistance(
  real: ArrayLike<number>,
  nReal: number,
  fake: ArrayLike<number>,
  nFake: number,
  d: number,
  subsets = 100,
  subsetSize = 1000,
  seed = 0,
) {
  const m = Math.min(subsetSize, nReal, nFake);
  if (m < 2) throw new Error(`KID: need at least 2 feature vectors in each set, got ${nReal} and ${nFake}`);
  const pick = (src: ArrayLike<number>, n: number, s: number, which: number) => {
    const perm = randomPermutation(n, streams.metrics(seed, 2 * s + which));
    const out = new Float64Array(m * d);
    for (let i = 0; i < m; i++) for (let c = 0; c < d; c++) out[i * d + c] = src[perm[i] * d + c];
    return out;
  };
  const values: number[] = [];
  for (let s = 0; s < subsets; s++) values.push(polynomialMmd(pick(real, nReal, s, 0), pick(fake, nFake, s, 1), m, d));
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return { mean, std, stderr: std / Math.sqrt(values.length), subsets, subsetSize: m };
}

/** Inception Score from class probabilities (n rows of k): exp(E_x KL(p(y|x) || p(y))) per split; mean and std. */
export function inceptionScore(probs: ArrayLike<number>, n: number, k: number, splits = 10) {
  if (n < splits) throw new Error(`inceptionScore: ${n} samples cannot make ${splits} splits`);
  const scores: number[] = [];
  for (let s = 0; s < splits; s++) {
    const a = Math.floor((s * n) / splits),
      b = Math.floor(((s + 1) * n) / splits);
    const py = new Float64Array(k);
    for (let i = a; i < b; i++) for (let c = 0; c < k; c++) py[c] += probs[i * k + c] / (b - a);
    let kl = 0;
    for (let i = a; i < b; i++)
      for (let c = 0; c < k; c++) {
        const p = probs[i * k + c];
        if (p > 0) kl += p * (Math.log(p) - Math.log(py[c]));
      }
    scores.push(Math.exp(kl / (b - a)));
  }
  const mean = scores.reduce((x, y) => x + y, 0) / splits;
  return { mean, std: Math.sqrt(scores.reduce((x, y) => x + (y - mean) ** 2, 0) / splits) };
}

/** Squared distances from each row of A (na x d) to each row of B (nb x d). */
function sqDistances(A: ArrayLike<number>, na: number, B: ArrayLike<number>, nb: number, d: number): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++)
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) {
        const t = A[i * d + c] - B[j * d + c];
        s += t * t;
      }
      out[i * nb + j] = s;
    }
  return out;
}

/** Squared distance of each row to its k-th nearest other row. */
function kthRadii(D: Float64Array, n: number, k: number): Float64Array {
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = Array.from(D.subarray(i * n, (i + 1) * n)).sort((a, b) => a - b);
    r[i] = row[Math.min(k, n - 1)]; // row[0] is the point itself
  }
  return r;
}

/**
 * Improved precision and recall (Kynkaenniemi et al. 2019): precision is the share of fake samples inside some real
 * sample's k-NN ball (radius: distance to its k-th nearest real neighbour); recall swaps the roles.
 */
export function precisionRecall(
  real: ArrayLike<number>,
  nReal: number,
  fake: ArrayLike<number>,
  nFake: number,
  d: number,
  k = 3,
) {
  const rr = kthRadii(sqDistances(real, nReal, real, nReal, d), nReal, k);
  const rf = kthRadii(sqDistances(fake, nFake, fake, nFake, d), nFake, k);
  const fr = sqDistances(fake, nFake, real, nReal, d);
  let inside = 0;
  for (let i = 0; i < nFake; i++) {
    for (let j = 0; j < nReal; j++)
      if (fr[i * nReal + j] <= rr[j]) {
        inside++;
        break;
      }
  }
  let covered = 0;
  for (let j = 0; j < nReal; j++) {
    for (let i = 0; i < nFake; i++)
      if (fr[i * nReal + j] <= rf[i]) {
        covered++;
        break;
      }
  }
  return { precision: inside / nFake, recall: covered / nReal, k };
}
