// Sample-quality metrics against numpy / scipy goldens (scripts/make_goldens.py): FID's Frechet distance with
// scipy's sqrtm, the unbiased polynomial MMD of KID, the Inception Score with 10 splits, k-NN precision and recall.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  featureStats,
  frechetDistance,
  inceptionScore,
  kernelInceptionDistance,
  polynomialMmd,
  precisionRecall,
  symmetricEigen,
  symmetricEigenvalues,
  traceSqrtProduct,
} from '../src/eval/metrics.js';
import { ROOT } from './helpers.js';

const G = JSON.parse(readFileSync(join(ROOT, 'test', 'goldens', 'metrics.json'), 'utf8'));
const rel = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol * Math.abs(b), `${what}: ${a} vs ${b}`);

describe('sample-quality metrics', () => {
  const d = G.d as number,
    real = Float64Array.from(G.real),
    fake = Float64Array.from(G.fake);
  const nr = real.length / d,
    nf = fake.length / d;

  it('feature statistics equal numpy mean and np.cov(rowvar=False)', () => {
    const s = featureStats(real, nr, d);
    s.mu.forEach((v, i) => rel(v, G.mu_real[i], 1e-12, `mu[${i}]`));
    s.sigma.forEach((v, i) => assert.ok(Math.abs(v - G.sigma_real[i]) < 1e-12, `sigma[${i}]`));
  });

  it("Frechet distance equals pytorch-fid's formula with scipy sqrtm within 1e-6 relative", () => {
    rel(frechetDistance(featureStats(real, nr, d), featureStats(fake, nf, d)), G.fd, 1e-6, 'FD');
    const st = featureStats(real, nr, d);
    const trace = st.sigma.reduce((a, v, i) => a + (i % (d + 1) === 0 ? v : 0), 0);
    assert.ok(Math.abs(frechetDistance(st, st)) < 1e-6 * trace, 'FD of a set with itself is 0 (to round-off)');
  });

  it("with fewer samples than dimensions (singular covariances) FD still equals scipy's within 1e-6 relative", () => {
    const r2 = Float64Array.from(G.real2),
      f2 = Float64Array.from(G.fake2);
    const a = featureStats(r2, 20, 40),
      b = featureStats(f2, 25, 40);
    assert.ok(a.centered && b.centered, 'the exact low-rank path is taken');
    rel(frechetDistance(a, b), G.fd_low, 1e-6, 'FD, n < d');
  });

  it("eigenvalues by Householder + QL equal Jacobi's; the Cholesky trace equals the eigenvector one", () => {
    const n = 30;
    const m = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) m[i * n + j] = m[j * n + i] = Math.sin(i * 1.3 + j * 0.7) + (i === j ? 3 : 0);
    const a = [...symmetricEigenvalues(m, n)].sort((x, y) => x - y),
      b = [...symmetricEigen(m, n).values].sort((x, y) => x - y);
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-10, `${v} vs ${b[i]}`));
    const s1 = featureStats(real, nr, d).sigma,
      s2 = featureStats(fake, nf, d).sigma;
    const e = symmetricEigen(s1, d);
    const root = new Float64Array(d * d);
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++)
        for (let k = 0; k < d; k++)
          root[i * d + j] += e.vectors[i * d + k] * Math.sqrt(Math.max(0, e.values[k])) * e.vectors[j * d + k];
    const M = new Float64Array(d * d),
      tmp = new Float64Array(d * d);
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) tmp[i * d + j] += root[i * d + k] * s2[k * d + j];
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) M[i * d + j] += tmp[i * d + k] * root[k * d + j];
    const viaRoot = symmetricEigen(M, d).values.reduce((acc, v) => acc + Math.sqrt(Math.max(0, v)), 0);
    rel(traceSqrtProduct(s1, s2, d), viaRoot, 1e-8, 'tr sqrt(S1 S2)');
  });

  it('symmetric eigendecomposition reconstructs the matrix', () => {
    const s = featureStats(real, nr, d).sigma;
    const { values, vectors } = symmetricEigen(s, d);
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) {
        let v = 0;
        for (let k = 0; k < d; k++) v += vectors[i * d + k] * values[k] * vectors[j * d + k];
        assert.ok(Math.abs(v - s[i * d + j]) < 1e-10);
      }
  });

  it('KID: unbiased polynomial MMD equals numpy within 1e-6 relative; subsets average it', () => {
    rel(polynomialMmd(real.subarray(0, 50 * d), fake, 50, d), G.mmd, 1e-6, 'MMD^2');
    const k = kernelInceptionDistance(real, nr, fake, nf, d, 20, 50);
    assert.ok(Number.isFinite(k.mean) && k.std >= 0 && Math.abs(k.stderr - k.std / Math.sqrt(20)) < 1e-15);
    assert.deepEqual(kernelInceptionDistance(real, nr, fake, nf, d, 20, 50), k, 'the same seed draws the same subsets');
  });

  it('Inception Score (10 splits) equals numpy within 1e-6 relative', () => {
    const r = inceptionScore(Float64Array.from(G.probs), 40, 10, 10);
    rel(r.mean, G.is_mean, 1e-6, 'IS mean');
    rel(r.std, G.is_std, 1e-6, 'IS std');
  });

  it('precision and recall (k = 3) equal numpy', () => {
    const r = precisionRecall(real, nr, fake, nf, d, 3);
    assert.equal(r.precision, G.precision);
    assert.equal(r.recall, G.recall);
  });
});
