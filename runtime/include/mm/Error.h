//===- Error.h - the runtime's one error type -------------------*- C++ -*-===//
//
// Every failure the runtime can report (bad file, bad shape, bad ABI) is an
// mm::Error whose message already names the file or object and what is wrong.
// Tool mains catch it once, print "TOOL: error: MESSAGE" and exit 1.
//
//===----------------------------------------------------------------------===//
#ifndef MM_ERROR_H
#define MM_ERROR_H

#include <stdexcept>
#include <string>

namespace mm {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
};

} // namespace mm

#endif // MM_ERROR_H
