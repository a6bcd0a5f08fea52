//===- SplitMix64.h - the one 64-bit mixing step the runtime seeds from ---*- C++ -*-===//
//
// SplitMix64 (Steele, Lea and Flood): advances STATE and returns the next
// well-mixed 64-bit value. Parameter initialisation, the training data order
// and the synthetic scenes' generator seeds all draw from it.
//
//===----------------------------------------------------------------------===//
#ifndef MM_RUNTIME_SPLITMIX64_H
#define MM_RUNTIME_SPLITMIX64_H

#include <cstdint>

namespace mm {

inline uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

} // namespace mm

#endif // MM_RUNTIME_SPLITMIX64_H
