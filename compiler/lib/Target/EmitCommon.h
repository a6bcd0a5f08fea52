//===- EmitCommon.h - pieces both backends print ----------------*- C++ -*-===//
#ifndef MM_COMPILER_TARGET_EMITCOMMON_H
#define MM_COMPILER_TARGET_EMITCOMMON_H

#include "mm/Compiler/Codegen.h"
#include <string>

namespace mm::detail {

/// `(const float *)params[3]`, `(float *)(arena + 128)`, ...
inline std::string bufferExpr(const Buffer &b, bool output) {
  std::string type = std::string(output ? "" : "const ") + b.ctype + " *";
  if (b.byteOffset != 0 && b.kind != Buffer::Arena) {
    Buffer base = b;
    base.byteOffset = 0;
    base.ctype = "char";
    return "(" + type + ")(" + bufferExpr(base, true) + " + " + std::to_string(b.byteOffset) + ")";
  }
  switch (b.kind) {
  case Buffer::Param: return "(" + type + ")params[" + std::to_string(b.index) + "]";
  case Buffer::Arg: return "(" + type + ")args[" + std::to_string(b.index) + "]";
  case Buffer::Arena: return "(" + type + ")(arena + " + std::to_string(b.index + b.byteOffset) + ")";
  case Buffer::Result: return "(" + type + ")results[" + std::to_string(b.index) + "]";
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
  s += bufferExpr(call.result, true);
  for (const Buffer &b : call.moreResults)
    s += ", " + bufferExpr(b, true);
  return s;
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

/// The kernel profiler both targets compile in: with MM_PROFILE=1 in the
/// environment each kernel call is timed (after SYNC, on CUDA a device
/// synchronisation, so a launch is timed to its end) and the kernels that took
/// the most time are listed on stderr at exit. Calls from several threads
/// (mmrun --sample-threads) add up atomically. Off, a call costs one branch.
inline std::string profileSupport(const Program &p, const std::string &sync) {
  std::string s = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <time.h>\n";
  s += "static const int kKernels = " + std::to_string(p.kernels.size()) + ";\n";
  s += "static const char *const kKernelNames[] = {";
  for (const Kernel &k : p.kernels) s += "\"" + k.name + "\", ";
  s += "0};\n";
  s += "#define MM_SYNC() " + sync + "\n";
  s += R"(static long long g_kernel_ns[kKernels > 0 ? kKernels : 1];
static long long g_kernel_calls[kKernels > 0 ? kKernels : 1];
static long long g_entry_ns;
static long long mm_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000ll + t.tv_nsec;
}
static void mm_profile_report(void) {
  int order[kKernels > 0 ? kKernels : 1];
  long long total = 0;
  for (int i = 0; i < kKernels; ++i) order[i] = i, total += g_kernel_ns[i];
  for (int i = 1; i < kKernels; ++i)
    for (int j = i; j > 0 && g_kernel_ns[order[j]] > g_kernel_ns[order[j - 1]]; --j) {
      int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
    }
  fprintf(stderr, "MM_PROFILE: entries %.1f ms, kernels %.1f ms (summed over threads); top kernels:\n",
          g_entry_ns * 1e-6, total * 1e-6);
  const char *topEnv = getenv("MM_PROFILE_TOP"); // how many kernels to list (15)
  const int top = topEnv && atoi(topEnv) > 0 ? atoi(topEnv) : 15;
  for (int i = 0; i < kKernels && i < top && g_kernel_calls[order[i]]; ++i)
    fprintf(stderr, "  %9.2f ms %5.1f%% %6lld calls  %s\n", g_kernel_ns[order[i]] * 1e-6,
            100.0 * g_kernel_ns[order[i]] / (total > 0 ? total : 1), g_kernel_calls[order[i]],
            kKernelNames[order[i]]);
  // By op: kernel names are k<N>_<op>.
  fprintf(stderr, "MM_PROFILE: by op:\n");
  int done[kKernels > 0 ? kKernels : 1] = {0};
  for (int a = 0; a < kKernels; ++a) {
    const int i = order[a];
    if (done[i] || !g_kernel_calls[i]) continue;
    const char *op = strchr(kKernelNames[i], '_');
    long long ns = 0, calls = 0;
    for (int j = 0; j < kKernels; ++j)
      if (!done[j] && strcmp(strchr(kKernelNames[j], '_'), op) == 0)
        done[j] = 1, ns += g_kernel_ns[j], calls += g_kernel_calls[j];
    fprintf(stderr, "  %9.2f ms %5.1f%% %6lld calls  %s\n", ns * 1e-6, 100.0 * ns / (total > 0 ? total : 1),
            calls, op + 1);
  }
}
static int mm_profiling(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("MM_PROFILE");
    on = e && *e && *e != '0';
    if (on) atexit(mm_profile_report);
  }
  return on;
}
static long long mm_tick(int prof) {
  if (!prof) return 0;
  MM_SYNC();
  return mm_now_ns();
}
static void mm_tock(int prof, int k, long long t0) {
  if (!prof) return;
  MM_SYNC();
  __atomic_fetch_add(&g_kernel_ns[k], mm_now_ns() - t0, __ATOMIC_RELAXED);
  __atomic_fetch_add(&g_kernel_calls[k], 1, __ATOMIC_RELAXED);
}

)";
  return s;
}
inline const char *const kProfileEntryStart =
    "  const int prof = mm_profiling();\n  const long long entry_t0 = mm_tick(prof);\n  long long t0;\n";
inline const char *const kProfileEntryEnd =
    "  if (prof) __atomic_fetch_add(&g_entry_ns, mm_tick(prof) - entry_t0, __ATOMIC_RELAXED);\n";

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
