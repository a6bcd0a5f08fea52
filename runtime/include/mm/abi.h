/*===- abi.h - the C ABI between a compiled model and the runtime --*- C -*-===*
 *
 * A library built by `mmc compile` exports one symbol, `mm_model_v1`, which
 * returns a description of the model. Everything structural (parameters
 * with names, shapes and groups; stages; entry signatures; the model's
 * configuration) is in the manifest JSON; this header fixes only what code
 * needs to call in.
 *
 * Entry call: fn(params, args, results, workspace)
 *   params    - one pointer per parameter, in manifest order
 *   args      - one pointer per entry argument, in manifest order
 *   results   - one pointer per entry result (written by the entry)
 *   workspace - workspace_bytes of scratch, 64-byte aligned
 * Returns 0 on success. On a CUDA library all pointers are device pointers,
 * allocated and copied through `device`; on a CPU library `device` is NULL.
 *
 * A sequence argument padded to the compiled length comes with its real
 * length (an argument such as `length`): positions at and past it are
 * padding. A loss ignores them, and a returned sequence (logits) may hold
 * zeros there (mm-bound-rows, docs/ARCHITECTURE.md).
 *
 * The ABI version changes whenever this header changes incompatibly.
 *===----------------------------------------------------------------------===*/
#ifndef MM_ABI_H
#define MM_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MM_ABI_VERSION 1u
#define MM_MODEL_SYMBOL "mm_model_v1"

typedef int (*mm_entry_fn)(void *const *params, void *const *args, void *const *results,
                           void *workspace);

typedef struct mm_entry_desc {
  const char *name;
  mm_entry_fn fn;
  uint64_t workspace_bytes;
  int32_t num_args;
  int32_t num_results;
} mm_entry_desc;

typedef struct mm_device_ops {
  void *(*alloc)(uint64_t bytes);
  void (*free)(void *ptr);
  int (*upload)(void *dst_device, const void *src_host, uint64_t bytes);
  int (*download)(void *dst_host, const void *src_device, uint64_t bytes);
  int (*synchronize)(void);
  const char *(*last_error)(void);
} mm_device_ops;

typedef struct mm_model_desc {
  uint32_t abi_version;        /* MM_ABI_VERSION of the compiler that built it */
  uint32_t struct_size;        /* sizeof(mm_model_desc) there */
  const char *target;          /* "cpu" or "cuda" */
  const char *manifest_json;   /* see docs/ARCHITECTURE.md, "The manifest" */
  const char *tokenizer_json;  /* Hugging Face tokenizer.json, or "" */
  int32_t num_params;
  int32_t num_entries;
  const mm_entry_desc *entries;
  const mm_device_ops *device; /* NULL: host memory */
} mm_model_desc;

typedef const mm_model_desc *(*mm_model_fn)(void);

/* Optional, CPU libraries: mm_weight_cache_v1(params, count) declares the
 * COUNT parameter buffers PARAMS unchanged until its next call; a product
 * that reads one of them as its right-hand operand (a linear layer's weight)
 * then packs it once and reuses the packed copy (the samples of a training
 * step share their weights; the results are the same bits).
 * mm_weight_cache_v1(NULL, 0) frees the copies and stops caching. A library
 * nobody calls it on caches nothing. */
#define MM_WEIGHT_CACHE_SYMBOL "mm_weight_cache_v1"
typedef void (*mm_weight_cache_fn)(const void *const *params, int64_t count);

#ifdef __cplusplus
}
#endif

#endif /* MM_ABI_H */
