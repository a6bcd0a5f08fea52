//===- Optimizer.h - AdamW, gradient clipping, LR schedules -----*- C++ -*-===//
//
// The pieces of a training step after the gradients, each written to match
// what the PyTorch / Hugging Face reference does:
//
//  * AdamW: torch.optim.AdamW's single-tensor update with fp32 moments
//    (decoupled decay p *= 1 - lr*wd first; m = lerp(m, g, 1-b1);
//    v = b2*v + (1-b2)*g*g; denom = sqrt(v)/sqrt(1-b2^t) + eps;
//    p -= (lr/(1-b1^t)) * m/denom). Weight decay applies only to parameters
//    of rank >= 2 (matrices, embeddings), not to biases or norm weights.
//  * clipGradNorm: torch.nn.utils.clip_grad_norm_ (global L2 norm;
//    coef = maxNorm/(norm + 1e-6), applied only when < 1).
//  * LrSchedule: transformers' get_{cosine,linear,constant}_schedule_with_warmup
//    with W = ceil(warmup_ratio * T) warm-up steps.
//
//===----------------------------------------------------------------------===//
#ifndef MM_OPTIMIZER_H
#define MM_OPTIMIZER_H

#include "mm/Model.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mm {

/// Whether an elementwise pass over N floats of a step's gradients or
/// weights runs on the OpenMP team: large tensors only, and never from
/// inside a parallel region (a trainer's worker thread).
bool parallelElementwise(size_t n);

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0;
};

class AdamW {
public:
  /// One slot per trainable parameter (name and shape), in gradient order.
  AdamW(std::vector<TensorSpec> params, AdamWOptions options);

  /// One update of every slot: PARAMS[i] and GRADS[i] hold spec(i).numel()
  /// floats. Increments stepCount() first (t = stepCount() in the formulas).
  void step(const std::vector<float *> &params, const std::vector<const float *> &grads, double lr);

  size_t size() const { return specs_.size(); }
  const TensorSpec &spec(size_t i) const { return specs_[i]; }
  const AdamWOptions &options() const { return options_; }
  /// Whether slot I gets weight decay (rank >= 2).
  bool decays(size_t i) const { return specs_[i].shape.size() >= 2; }
  int64_t stepCount() const { return step_; }
  void setStepCount(int64_t t) { step_ = t; }
  std::vector<float> &expAvg(size_t i) { return m_[i]; }
  std::vector<float> &expAvgSq(size_t i) { return v_[i]; }
  const std::vector<float> &expAvg(size_t i) const { return m_[i]; }
  const std::vector<float> &expAvgSq(size_t i) const { return v_[i]; }

private:
  std::vector<TensorSpec> specs_;
  AdamWOptions options_;
  std::vector<std::vector<float>> m_, v_;
  int64_t step_ = 0;
};

/// The global L2 norm of GRADS (all tensors together), returned as it was
/// before clipping. When MAXNORM > 0 and coef = MAXNORM/(norm + 1e-6) < 1,
/// every gradient is multiplied by coef. MAXNORM <= 0 only measures. A
/// non-finite norm is returned without touching the gradients.
double clipGradNorm(std::vector<std::vector<float>> &grads, double maxNorm);

enum class Schedule { Cosine, Linear, Constant };
/// "cosine" | "linear" | "constant"; throws mm::Error otherwise.
Schedule parseSchedule(const std::string &name);
const char *scheduleName(Schedule s);
/// ceil(ratio * totalSteps), as transformers' TrainingArguments.get_warmup_steps.
int64_t warmupSteps(double ratio, int64_t totalSteps);

struct LrSchedule {
  double peak = 0;
  Schedule kind = Schedule::Cosine;
  int64_t total = 0, warmup = 0;
  /// The learning rate of update S (0-based): peak * S / max(1, W) while
  /// S < W; then cosine 0.5 * (1 + cos(pi * (S - W) / max(1, T - W))),
  /// linear (T - S) / max(1, T - W), constant 1 (each at least 0).
  double at(int64_t s) const;
};

} // namespace mm

#endif // MM_OPTIMIZER_H
