//===- Flags.cpp - command-line values the tools share --------------------===//

#include "mm/Flags.h"

#include "mm/Error.h"

#include <exception>

namespace mm {

long long parseIntFlag(const std::string &flag, const std::string &value, long long lo, long long hi) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(value, &used, 10);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != value.size() || x < lo || x > hi)
    throw Error(flag + ": '" + value + "' is not a whole number " +
                (hi == LLONG_MAX ? ">= " + std::to_string(lo)
                                 : "from " + std::to_string(lo) + " to " + std::to_string(hi)));
  return x;
}

} // namespace mm
