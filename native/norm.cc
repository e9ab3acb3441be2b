// Group norm (+SiLU) forward and backward, on NCHW (one group's values contiguous) and on the channel-blocked layouts
// (nChw16c, NHWC) that the convolutions leave activations in.
#include "norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ddpm {

namespace {

/**
 * Group norm (+SiLU) of [N, C, H, W] stored as [N][C/V][S][V] (y in the same layout): nChw16c (V = 16) or NHWC
 * (V = C). Three passes over each block: per-channel sums, per-channel squared deviations from the group means, then
 * y = x a + b per channel (V lanes).
 */
void groupNormBlocked(const GNArgs& A, int64_t V, const float* x, const float* gm, const float* bt, double eps,
                      bool silu, float* y, float* mean, float* rstd) {
  const int64_t CB = A.C / V, cg = A.C / A.G, S = A.S;
  std::vector<double> csum(A.N * A.C), csq(A.N * A.C);
  // per-channel sums of one block (or of squared deviations from m[v]), float lanes summed in double per 256 pixels
  // (four interleaved accumulators per lane, so that consecutive pixels' additions do not wait on each other)
  auto laneSums = [&](const float* xb, const float* m, double* out) {
    std::vector<double> acc(V, 0.0);
    std::vector<float> partv(4 * V), zero(V, 0.f);
    float *p0 = partv.data(), *p1 = p0 + V, *p2 = p1 + V, *p3 = p2 + V;
    const float* mm = m ? m : zero.data();
    for (int64_t s0 = 0; s0 < S; s0 += 256) {
      std::fill(partv.begin(), partv.end(), 0.f);
      const int64_t s1 = std::min(S, s0 + 256);
      int64_t s = s0;
      if (m) {
        for (; s + 4 <= s1; s += 4) {
          const float* r = xb + s * V;
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float d0 = r[v] - mm[v], d1 = r[V + v] - mm[v], d2 = r[2 * V + v] - mm[v], d3 = r[3 * V + v] - mm[v];
            p0[v] += d0 * d0;
            p1[v] += d1 * d1;
            p2[v] += d2 * d2;
            p3[v] += d3 * d3;
          }
        }
        for (; s < s1; s++)
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float d = xb[s * V + v] - mm[v];
            p0[v] += d * d;
          }
      } else {
        for (; s + 4 <= s1; s += 4) {
          const float* r = xb + s * V;
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            p0[v] += r[v];
            p1[v] += r[V + v];
            p2[v] += r[2 * V + v];
            p3[v] += r[3 * V + v];
          }
        }
        for (; s < s1; s++)
#pragma omp simd
          for (int64_t v = 0; v < V; v++) p0[v] += xb[s * V + v];
      }
      for (int64_t v = 0; v < V; v++) acc[v] += (p0[v] + p1[v]) + (p2[v] + p3[v]);
    }
    for (int64_t v = 0; v < V; v++) out[v] = acc[v];
  };
  auto groupOf = [&](int64_t nb, int64_t v) { return (nb / CB) * A.G + ((nb % CB) * V + v) / cg; };
  const double len = (double)(cg * S);
  // group statistics from the per-channel sums of groups g0 .. g1-1 (flat n * G + g)
  auto means = [&](int64_t g0, int64_t g1) {
    for (int64_t ng = g0; ng < g1; ng++) {
      double t = 0;
      for (int64_t c = 0; c < cg; c++) t += csum[(ng / A.G) * A.C + (ng % A.G) * cg + c];
      mean[ng] = (float)(t / len);
    }
  };
  auto rstds = [&](int64_t g0, int64_t g1) {
    for (int64_t ng = g0; ng < g1; ng++) {
      double t = 0;
      for (int64_t c = 0; c < cg; c++) t += csq[(ng / A.G) * A.C + (ng % A.G) * cg + c];
      rstd[ng] = (float)(1.0 / std::sqrt(t / len + eps));
    }
  };
  auto deviations = [&](int64_t nb) {
    std::vector<float> m(V);
    for (int64_t v = 0; v < V; v++) m[v] = mean[groupOf(nb, v)];
    laneSums(x + nb * S * V, m.data(), &csq[nb * V]);
  };
  auto normalize = [&](int64_t nb) {
    std::vector<float> av(V), bv(V);
    float *a = av.data(), *b = bv.data();
    for (int64_t v = 0; v < V; v++) {
      int64_t ch = (nb % CB) * V + v, ng = groupOf(nb, v);
      a[v] = rstd[ng] * gm[ch];
      b[v] = bt[ch] - mean[ng] * a[v];
    }
    const float* xb = x + nb * S * V;
    float* yb = y + nb * S * V;
    for (int64_t s = 0; s < S; s++) {
      if (silu) {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) {
          float z = xb[s * V + v] * a[v] + b[v];
          yb[s * V + v] = z * sigm(z);
        }
      } else {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) yb[s * V + v] = xb[s * V + v] * a[v] + b[v];
      }
    }
  };
  if (V % cg == 0) {
    // every group lies inside one block: all three passes per block while it is in cache
#pragma omp parallel for schedule(static)
    for (int64_t nb = 0; nb < A.N * CB; nb++) {
      int64_t g0 = groupOf(nb, 0), g1 = groupOf(nb, V - 1) + 1;
      laneSums(x + nb * S * V, nullptr, &csum[nb * V]);
      means(g0, g1);
      deviations(nb);
      rstds(g0, g1);
      normalize(nb);
    }
    return;
  }
  // groups across blocks (e.g. 96 channels in 16 groups of 6): each pass over all blocks, statistics in between
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) laneSums(x + nb * S * V, nullptr, &csum[nb * V]);
  means(0, A.N * A.G);
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) deviations(nb);
  rstds(0, A.N * A.G);
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) normalize(nb);
}

/**
 * The gradient of groupNormBlocked: x, dy and dx stored as [N][C/V][S][V] (nChw16c: V = 16; NHWC: V = C). Pass 1
 * sums, per channel and sample, d = dy (times SiLU' when fused) and d x_hat; the group means of their gamma-weighted
 * sums follow; pass 2 writes dx = rstd (d gamma - m1 - x_hat m2), recomputing d.
 */
void groupNormBackwardBlocked(const GNArgs& A, int64_t V, const float* x, const float* gm, const float* bt,
                              const float* mean, const float* rstd, bool silu, const float* dy, float* dx, float* dgm,
                              float* dbt) {
  const int64_t CB = A.C / V, cg = A.C / A.G, S = A.S;
  std::vector<double> pg(A.N * A.C), pb(A.N * A.C), m1(A.N * A.G), m2(A.N * A.G);
  auto groupOf = [&](int64_t nb, int64_t v) { return (nb / CB) * A.G + ((nb % CB) * V + v) / cg; };
  struct Lanes {
    std::vector<float> m, r, g, b;
  };
  auto lanes = [&](int64_t nb) {
    Lanes l{std::vector<float>(V), std::vector<float>(V), std::vector<float>(V), std::vector<float>(V)};
    for (int64_t v = 0; v < V; v++) {
      int64_t ng = groupOf(nb, v), ch = (nb % CB) * V + v;
      l.m[v] = mean[ng], l.r[v] = rstd[ng], l.g[v] = gm[ch], l.b[v] = bt[ch];
    }
    return l;
  };
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) {
    Lanes l = lanes(nb);
    const float *m = l.m.data(), *r = l.r.data(), *g = l.g.data(), *b = l.b.data();
    const float* xb = x + nb * S * V;
    const float* db = dy + nb * S * V;
    std::vector<double> ag(V, 0.0), ab(V, 0.0);
    std::vector<float> pgv(V), pbv(V);
    float *fg = pgv.data(), *fb = pbv.data();
    for (int64_t s0 = 0; s0 < S; s0 += 256) {
      std::fill(pgv.begin(), pgv.end(), 0.f);
      std::fill(pbv.begin(), pbv.end(), 0.f);
      for (int64_t s = s0; s < std::min(S, s0 + 256); s++) {
        const float *xr = xb + s * V, *dr = db + s * V;
        if (silu) {
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float xh = (xr[v] - m[v]) * r[v], z = xh * g[v] + b[v], sg = sigm(z);
            float d = dr[v] * sg * (1.f + z * (1.f - sg));
            fg[v] += d * xh;
            fb[v] += d;
          }
        } else {
#pragma omp simd
          for (int64_t v = 0; v < V; v++) {
            float xh = (xr[v] - m[v]) * r[v];
            fg[v] += dr[v] * xh;
            fb[v] += dr[v];
          }
        }
      }
      for (int64_t v = 0; v < V; v++) ag[v] += fg[v], ab[v] += fb[v];
    }
    for (int64_t v = 0; v < V; v++) pg[nb * V + v] = ag[v], pb[nb * V + v] = ab[v];
  }
  const double len = (double)(cg * S);
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    double s1 = 0, s2 = 0;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++) s1 += pb[n * A.C + c] * gm[c], s2 += pg[n * A.C + c] * gm[c];
    m1[ng] = s1 / len, m2[ng] = s2 / len;
  }
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < A.N * CB; nb++) {
    Lanes l = lanes(nb);
    const float *m = l.m.data(), *r = l.r.data(), *g = l.g.data(), *b = l.b.data();
    std::vector<float> a1(V), a2(V);
    for (int64_t v = 0; v < V; v++) a1[v] = (float)m1[groupOf(nb, v)], a2[v] = (float)m2[groupOf(nb, v)];
    const float *p1 = a1.data(), *p2 = a2.data();
    const float* xb = x + nb * S * V;
    const float* db = dy + nb * S * V;
    float* ob = dx + nb * S * V;
    for (int64_t s = 0; s < S; s++) {
      const float *xr = xb + s * V, *dr = db + s * V;
      float* orow = ob + s * V;
      if (silu) {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) {
          float xh = (xr[v] - m[v]) * r[v], z = xh * g[v] + b[v], sg = sigm(z);
          float d = dr[v] * sg * (1.f + z * (1.f - sg));
          orow[v] = r[v] * (d * g[v] - p1[v] - xh * p2[v]);
        }
      } else {
#pragma omp simd
        for (int64_t v = 0; v < V; v++) {
          float xh = (xr[v] - m[v]) * r[v];
          orow[v] = r[v] * (dr[v] * g[v] - p1[v] - xh * p2[v]);
        }
      }
    }
  }
  for (int64_t c = 0; c < A.C; c++) {
    double a = 0, b = 0;
    for (int64_t n = 0; n < A.N; n++) a += pg[n * A.C + c], b += pb[n * A.C + c];
    dgm[c] = (float)a;
    dbt[c] = (float)b;
  }
}

}  // namespace

void groupNorm(const GNArgs& A, int64_t layout, const float* x, const float* gm, const float* bt, double eps, bool silu,
               float* y, float* mean, float* rstd) {
  if (layout) {
    groupNormBlocked(A, layout == kBlocked16 ? 16 : A.C, x, gm, bt, eps, silu, y, mean, rstd);
    return;
  }
  int64_t cg = A.C / A.G, len = cg * A.S;
#pragma omp parallel for schedule(dynamic)
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    const float* xp = x + (n * A.C + g * cg) * A.S;
    float* yp = y + (n * A.C + g * cg) * A.S;
    // two-pass mean and variance, float lanes summed in double per block of 4096
    double s = 0, s2 = 0;
    for (int64_t i0 = 0; i0 < len; i0 += 4096) {
      int64_t i1 = std::min(len, i0 + 4096);
      float part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = i0; i < i1; i++) part += xp[i];
      s += part;
    }
    float m = (float)(s / len);
    for (int64_t i0 = 0; i0 < len; i0 += 4096) {
      int64_t i1 = std::min(len, i0 + 4096);
      float part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = i0; i < i1; i++) {
        float d = xp[i] - m;
        part += d * d;
      }
      s2 += part;
    }
    float r = (float)(1.0 / std::sqrt(s2 / len + eps));
    mean[ng] = m;
    rstd[ng] = r;
    for (int64_t c = 0; c < cg; c++) {
      int64_t ch = g * cg + c;
      float a = r * gm[ch], b = bt[ch] - m * a;
      const float* xc = xp + c * A.S;
      float* yc = yp + c * A.S;
      if (silu) {
#pragma omp simd
        for (int64_t i = 0; i < A.S; i++) {
          float z = xc[i] * a + b;
          yc[i] = z * sigm(z);
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < A.S; i++) yc[i] = xc[i] * a + b;
      }
    }
  }
}

void groupNormBackward(const GNArgs& A, int64_t layout, const float* x, const float* gm, const float* bt,
                       const float* mean, const float* rstd, bool silu, const float* dy, float* dx, float* dgm,
                       float* dbt) {
  if (layout) {
    groupNormBackwardBlocked(A, layout == kBlocked16 ? 16 : A.C, x, gm, bt, mean, rstd, silu, dy, dx, dgm, dbt);
    return;
  }
  int64_t cg = A.C / A.G;
  std::vector<double> pg(A.N * A.C), pb(A.N * A.C);  // per-sample partial sums of dgamma, dbeta
#pragma omp parallel for schedule(dynamic)
  for (int64_t ng = 0; ng < A.N * A.G; ng++) {
    int64_t n = ng / A.G, g = ng % A.G;
    float m = mean[ng], r = rstd[ng];
    int64_t off = (n * A.C + g * cg) * A.S;
    double s1 = 0, s2 = 0;
    std::vector<float> dzv(cg * A.S);
    float* dz = dzv.data();
    const float* xg = x + off;
    const float* dyg = dy + off;
    for (int64_t c = 0; c < cg; c++) {
      int64_t ch = g * cg + c;
      float gmc = gm[ch], btc = bt[ch];
      float dgs = 0, dbs = 0;
      const float* xc = xg + c * A.S;
      const float* dyc = dyg + c * A.S;
      float* dzc = dz + c * A.S;
      // the SiLU branch is hoisted out of the loops so that both vectorise
      if (silu) {
#pragma omp simd reduction(+ : dgs, dbs)
        for (int64_t i = 0; i < A.S; i++) {
          float xh = (xc[i] - m) * r;
          float z = xh * gmc + btc, sg = sigm(z);
          float d = dyc[i] * sg * (1.f + z * (1.f - sg));
          dzc[i] = d;
          dgs += d * xh;
          dbs += d;
        }
      } else {
#pragma omp simd reduction(+ : dgs, dbs)
        for (int64_t i = 0; i < A.S; i++) {
          float xh = (xc[i] - m) * r;
          float d = dyc[i];
          dzc[i] = d;
          dgs += d * xh;
          dbs += d;
        }
      }
      pg[n * A.C + ch] = dgs;
      pb[n * A.C + ch] = dbs;
      s1 += (double)dbs * gmc;
      s2 += (double)dgs * gmc;
    }
    double len = (double)(cg * A.S);
    float m1 = (float)(s1 / len), m2 = (float)(s2 / len);
    float* dxg = dx + off;
    for (int64_t c = 0; c < cg; c++) {
      float gmc = gm[g * cg + c];
      const float* xc = xg + c * A.S;
      const float* dzc = dz + c * A.S;
      float* dxc = dxg + c * A.S;
#pragma omp simd
      for (int64_t i = 0; i < A.S; i++) {
        float xh = (xc[i] - m) * r;
        dxc[i] = r * (dzc[i] * gmc - m1 - xh * m2);
      }
    }
  }
  for (int64_t c = 0; c < A.C; c++) {
    double a = 0, b = 0;
    for (int64_t n = 0; n < A.N; n++) {
      a += pg[n * A.C + c];
      b += pb[n * A.C + c];
    }
    dgm[c] = (float)a;
    dbt[c] = (float)b;
  }
}

}  // namespace ddpm
