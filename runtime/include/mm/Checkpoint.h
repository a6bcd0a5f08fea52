//===- Checkpoint.h - resumable training checkpoints ------------*- C++ -*-===//
//
// A training checkpoint is one safetensors file holding
//
//   * every model parameter under its Hugging Face name (all groups, F32),
//     so `--init` / `--weights` can load it on its own;
//   * for each trainable parameter NAME, the AdamW moments
//     `optimizer.exp_avg.NAME` and `optimizer.exp_avg_sq.NAME` (F32);
//   * metadata: mm.format, mm.model, mm.stage, mm.step (optimizer steps
//     done), mm.total_steps, mm.seed, mm.data_position (samples consumed),
//     and the settings a resumed run must reproduce (mm.batch, mm.lr, ...).
//
// Files are written atomically (tmp + fsync + rename), so a crash never
// leaves half a checkpoint over the previous one.
//
//===----------------------------------------------------------------------===//
#ifndef MM_CHECKPOINT_H
#define MM_CHECKPOINT_H

#include "mm/Optimizer.h"
#include "mm/Parameters.h"

#include <cstdint>
#include <map>
#include <string>

namespace mm {

struct CheckpointState {
  std::string model, stage;
  int64_t step = 0;         // optimizer steps done
  int64_t totalSteps = 0;   // the stage's length
  int64_t dataPosition = 0; // samples consumed
  uint64_t seed = 0;
  /// Other settings, stored as metadata "mm.KEY" (e.g. "batch" -> "8").
  std::map<std::string, std::string> settings;
};

/// Writes PARAMS, OPTIMIZER's moments and STATE to PATH atomically.
void saveCheckpoint(const std::string &path, const ParameterStore &params, const AdamW &optimizer,
                    const CheckpointState &state);

/// Reads only PATH's metadata. Throws mm::Error naming PATH if it is not a
/// training checkpoint (e.g. a plain weights file).
CheckpointState readCheckpointState(const std::string &path);

/// Restores every parameter and OPTIMIZER's moments and step count from
/// PATH. Throws mm::Error naming PATH, before changing anything, when it is
/// not a training checkpoint, belongs to another model (name or tensors) or
/// another stage, or its optimizer state is missing, of the wrong shape or
/// for a parameter the stage does not train.
CheckpointState loadCheckpoint(const std::string &path, const std::string &modelName, const std::string &stage,
                               ParameterStore &params, AdamW &optimizer);

} // namespace mm

#endif // MM_CHECKPOINT_H
