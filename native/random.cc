// Philox 4x32-10 dropout masks, vectorised over counters: the same words as the engine's fillRandom.
#include "random.h"

#include <vector>

namespace ddpm {

namespace {

/**
 * Philox 4x32-10 (src/engine/random.ts, the same rounds and key schedule) on kPhiloxLanes counters at once, in place:
 * c[word][lane], key (k0, k1); each round is a loop over the lanes, so that it vectorises.
 */
constexpr int kPhiloxLanes = 16;
inline void philox4x32_10_lanes(uint32_t c[4][kPhiloxLanes], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) k0 += 0x9e3779b9u, k1 += 0xbb67ae85u;
    for (int l = 0; l < kPhiloxLanes; l++) {
      uint64_t p0 = (uint64_t)0xd2511f53u * c[0][l], p1 = (uint64_t)0xcd9e8d57u * c[2][l];
      uint32_t c0 = (uint32_t)(p1 >> 32) ^ c[1][l] ^ k0, c2 = (uint32_t)(p0 >> 32) ^ c[3][l] ^ k1;
      c[0][l] = c0, c[1][l] = (uint32_t)p1, c[2][l] = c2, c[3][l] = (uint32_t)p0;
    }
  }
}

/**
 * The smallest 32-bit word whose uniform, (word + 0.5) / 2^32 rounded to float32 as the engine draws it, is >= p (the
 * uniform grows with the word): an element is kept exactly when its word is >= this. 2^32 (nothing kept) is not
 * reachable for p < 1 .
 */
uint32_t dropoutKeepWord(double p) {
  uint64_t lo = 0, hi = 0xffffffffull;  // the answer is in [lo, hi]
  while (lo < hi) {
    uint64_t mid = (lo + hi) / 2;
    if ((double)(float)((mid + 0.5) / 4294967296.0) >= p)
      hi = mid;
    else
      lo = mid + 1;
  }
  return (uint32_t)lo;
}
thread_local std::vector<uint32_t> tl_words;

}  // namespace

void dropoutMask(float* y, int64_t n, int64_t per, const uint32_t key[4], double p, int64_t layout, int64_t C,
                 int64_t S) {
  const float scale = (float)(1.0 / (1.0 - p));
  const int64_t samples = n / per;
  // per sample: its words in the engine's order (element j = c S + i, counter j / 4, word j % 4), kPhiloxLanes
  // counters at a time, then the mask values written in the layout's order (contiguous writes)
  const uint32_t keep = dropoutKeepWord(p);
  const int64_t counters = (per + 3) / 4;
#pragma omp parallel for schedule(static) if (n > (int64_t)kParallelMin)
  for (int64_t s = 0; s < samples; s++) {
    std::vector<uint32_t>& words = tl_words;
    words.resize((size_t)((counters + kPhiloxLanes) * 4));
    for (int64_t q = 0; q < counters; q += kPhiloxLanes) {
      uint32_t c[4][kPhiloxLanes];
      for (int l = 0; l < kPhiloxLanes; l++)
        c[0][l] = (uint32_t)(q + l), c[1][l] = (uint32_t)s, c[2][l] = key[2], c[3][l] = key[3];
      philox4x32_10_lanes(c, key[0], key[1]);
      uint32_t* o = words.data() + q * 4;
      for (int l = 0; l < kPhiloxLanes; l++)
        for (int e = 0; e < 4; e++) o[l * 4 + e] = c[e][l];
    }
    const uint32_t* wd = words.data();
    float* dst = y + s * per;
    if (layout == kBlocked16) {
      for (int64_t cb = 0; cb < C / 16; cb++)
        for (int64_t i = 0; i < S; i++)
          for (int64_t v = 0; v < 16; v++) dst[(cb * S + i) * 16 + v] = wd[(cb * 16 + v) * S + i] >= keep ? scale : 0.f;
    } else if (layout == kNHWC) {
      for (int64_t i = 0; i < S; i++)
        for (int64_t ch = 0; ch < C; ch++) dst[i * C + ch] = wd[ch * S + i] >= keep ? scale : 0.f;
    } else {
      for (int64_t j = 0; j < per; j++) dst[j] = wd[j] >= keep ? scale : 0.f;
    }
  }
}

}  // namespace ddpm
