//===- Flags.h - command-line values the tools share ------------*- C++ -*-===//
//
// The one parser of whole-number flag values for mmrun and mmdata, so every
// tool words a bad value the same way.
//
//===----------------------------------------------------------------------===//
#ifndef MM_FLAGS_H
#define MM_FLAGS_H

#include <climits>
#include <string>

namespace mm {

/// VALUE of FLAG as a whole number in [LO, HI]; throws mm::Error
/// "FLAG: 'VALUE' is not a whole number >= LO" (or "from LO to HI") for
/// anything else: empty, trailing characters, out of range.
long long parseIntFlag(const std::string &flag, const std::string &value, long long lo,
                       long long hi = LLONG_MAX);

} // namespace mm

#endif // MM_FLAGS_H
