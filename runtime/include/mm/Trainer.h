//===- Trainer.h - `mmrun MODEL.so --train STAGE ...` -----------*- C++ -*-===//
//
// Runs one training stage of a compiled model: for every optimizer step,
// batch * grad_accum samples (each one call of the stage's train entry, which
// returns the summed token loss and its gradients), loss and gradients
// divided by the step's target-token count, global-norm clipping, AdamW with
// the stage's LR schedule. Sample order is a deterministic shuffle per epoch
// from the seed; the sample stream runs on across epochs. A run stopped with
// --stop-at and continued with --resume gives, on the CPU, bit for bit the
// losses and weights of a run straight through.
//
//===----------------------------------------------------------------------===//
#ifndef MM_TRAINER_H
#define MM_TRAINER_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mm {

struct TrainOptions {
  std::string model;    // MODEL.so
  std::string stage;    // --train STAGE
  std::string data;     // --data FILE (LLaVA conversation JSON)
  std::string imageDir; // --image-dir DIR
  // Unset: the stage's defaults (on --resume: the checkpoint's settings;
  // a flag that contradicts them is an error).
  std::optional<int64_t> steps;      // --steps: the whole stage, in optimizer steps
  std::optional<double> epochs;      // --epochs
  std::optional<int64_t> batch;      // --batch: samples per micro-batch
  std::optional<int64_t> gradAccum;  // --grad-accum: micro-batches per step (default 1)
  std::optional<double> lr;          // --lr: peak learning rate
  std::optional<double> maxGradNorm; // --max-grad-norm (default 1; 0 turns clipping off)
  std::optional<uint64_t> seed;      // --seed (default 0): initialisation and shuffling
  std::string init;                  // --init CKPT: weights to start from
  std::string save;                  // --save CKPT
  int64_t saveEvery = 0;             // --save-every N
  std::optional<int64_t> stopAt;     // --stop-at K
  std::string resume;                // --resume CKPT
  std::string log;                   // --log FILE.jsonl
  std::string dumpBatches;           // --dump-batches FILE.jsonl
  std::string dumpGrads;             // --dump-grads FILE: the first step's gradients (before clipping)
  int64_t printEvery = 10;           // --print-every N (progress lines when stderr is not a terminal)
  bool skipBad = false;              // --skip-bad: leave out bad records (counted) instead of stopping
  std::optional<int64_t> sampleThreads; // --sample-threads N: samples of a step run at once (host models)
  bool quiet = false;                // no progress, banner or summary (tests)
};

/// The `--train` part of mmrun's usage text.
extern const char *const kTrainUsage;

/// Parses mmrun's arguments (without the program name; MODEL.so is the one
/// positional argument) into TrainOptions. Throws mm::Error naming the flag
/// for unknown flags, missing or malformed values, or a missing --train,
/// --data or model.
TrainOptions parseTrainOptions(const std::vector<std::string> &args);

/// Runs the stage; returns 0. Throws mm::Error (one message naming the file,
/// record or step) on any failure, including a non-finite loss or gradient
/// norm, which stops the run without saving over the last checkpoint.
int runTraining(const TrainOptions &options);

} // namespace mm

#endif // MM_TRAINER_H
