//===- JsonMessage.h - nlohmann errors as plain messages -------*- C++ -*-===//
#ifndef MM_RUNTIME_JSONMESSAGE_H
#define MM_RUNTIME_JSONMESSAGE_H

#include <nlohmann/json.hpp>
#include <string>

namespace mm::detail {

/// nlohmann's message without its "[json.exception.parse_error.101] " tag.
inline std::string jsonMessage(const nlohmann::json::exception &e) {
  std::string msg = e.what();
  if (!msg.empty() && msg[0] == '[') {
    size_t close = msg.find("] ");
    if (close != std::string::npos)
      msg.erase(0, close + 2);
  }
  return msg;
}

} // namespace mm::detail

#endif // MM_RUNTIME_JSONMESSAGE_H
