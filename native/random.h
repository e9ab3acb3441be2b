// Dropout masks from the engine's Philox 4x32-10 stream (src/engine/random.ts), bit for bit.
#pragma once

#include <cstdint>

#include "common.h"

namespace ddpm {

/**
 * y [n values, per values a sample]: element j of sample s is 1 / (1 - p) where its uniform is >= p, else 0, the
 * uniform drawn under key = [seedLo, seedHi, streamLo, streamHi]. layout (kNCHW, or a layout of [n / per, C, S] with S
 * = H W): each value is written where that layout keeps element (s, j). 0 < p < 1.
 */
void dropoutMask(float* y, int64_t n, int64_t per, const uint32_t key[4], double p, int64_t layout, int64_t C,
                 int64_t S);

}  // namespace ddpm
