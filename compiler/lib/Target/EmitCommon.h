//===- EmitCommon.h - pieces both backends print ----------------*- C++ -*-===//
#ifndef MM_COMPILER_TARGET_EMITCOMMON_H
#define MM_COMPILER_TARGET_EMITCOMMON_H

#include "mm/Compiler/Codegen.h"
#include <string>

namespace mm::detail {

/// `(const float *)params[3]`, `(float *)(arena + 128)`, ...
inline std::string bufferExpr(const Buffer &b, bool output) {
  std::string type = std::string(output ? "" : "const ") + b.ctype + " *";
  switch (b.kind) {
  case Buffer::Param: return "(" + type + ")params[" + std::to_string(b.index) + "]";
  case Buffer::Arg: return "(" + type + ")args[" + std::to_string(b.index) + "]";
  case Buffer::Arena: return "(" + type + ")(arena + " + std::to_string(b.index) + ")";
  }
  return "nullptr";
}

inline std::string kernelParams(const Kernel &k, const char *restrictKw) {
  std::string s;
  for (size_t i = 0; i < k.args.size(); ++i)
    s += (i ? ", " : "") + k.args[i].type + restrictKw + " " + k.args[i].name;
  return s;
}

inline std::string callArgs(const KernelCall &call) {
  std::string s;
  for (const Buffer &b : call.operands)
    s += bufferExpr(b, false) + ", ";
  return s + bufferExpr(call.result, true);
}

inline std::string indent(const std::string &body, const std::string &pad) {
  std::string out;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    out += pad + body.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

/// The data tables and exported accessor, the same for both targets.
inline std::string modelTables(const Program &p, const EmbeddedData &data, const char *target,
                               const char *deviceOps) {
  std::string s = "static const mm_entry_desc kEntries[] = {\n";
  for (const EntryProgram &e : p.entries)
    s += "  {\"" + e.name + "\", entry_" + e.name + ", " + std::to_string(e.workspaceBytes) +
         "ull, " + std::to_string(e.numArgs) + ", " + std::to_string(e.numResults) + "},\n";
  s += "};\n\n";
  s += "static const char kManifest[] =\n    " + cStringLiteral(data.manifestJson) + ";\n\n";
  s += "static const char kTokenizer[] =\n    " + cStringLiteral(data.tokenizerJson) + ";\n\n";
  s += "static const mm_model_desc kModel = {\n  MM_ABI_VERSION, sizeof(mm_model_desc), \"" +
       std::string(target) + "\", kManifest, kTokenizer,\n  " + std::to_string(p.numParams) +
       ", " + std::to_string(p.entries.size()) + ", kEntries, " + deviceOps + "};\n\n";
  s += "extern \"C\" __attribute__((visibility(\"default\"))) const mm_model_desc *mm_model_v1(void) {\n"
       "  return &kModel;\n}\n";
  return s;
}

} // namespace mm::detail

#endif // MM_COMPILER_TARGET_EMITCOMMON_H
