// Optimiser kernels: OpenMP loops over the parameters, one thread team above kParallelMin values.
#include "optim.h"

#include <cmath>

namespace ddpm {

void adamStep(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1, double b2, double eps,
              double wd, int64_t step) {
  float bc1 = (float)(1 - std::pow(b1, (double)step)), bc2 = (float)(1 - std::pow(b2, (double)step));
  float fb1 = (float)b1, fb2 = (float)b2, flr = (float)lr, feps = (float)eps, decay = (float)(1 - lr * wd);
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    float mi = fb1 * m[i] + (1 - fb1) * gi;
    float vi = fb2 * v[i] + (1 - fb2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - flr * (mi / bc1) / (std::sqrt(vi / bc2) + feps);
  }
}

void emaUpdate(float* e, const float* p, int64_t n, float d) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) e[i] = d * e[i] + (1 - d) * p[i];
}

double sumSquares(const float* x, int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

void scaleInPlace(float* x, int64_t n, float s) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) x[i] *= s;
}

void addInPlace(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

}  // namespace ddpm
