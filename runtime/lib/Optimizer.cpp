//===- Optimizer.cpp - AdamW, gradient clipping, LR schedules ---------------===//
#include "mm/Optimizer.h"
#include "mm/Error.h"

#include <algorithm>
#include <cmath>

#include <omp.h>

namespace mm {

bool parallelElementwise(size_t n) { return n >= (1u << 16) && !omp_in_parallel(); }

AdamW::AdamW(std::vector<TensorSpec> params, AdamWOptions options)
    : specs_(std::move(params)), options_(options) {
  for (const TensorSpec &s : specs_) {
    m_.emplace_back(s.numel(), 0.0f);
    v_.emplace_back(s.numel(), 0.0f);
  }
}

void AdamW::step(const std::vector<float *> &params, const std::vector<const float *> &grads, double lr) {
  if (params.size() != specs_.size() || grads.size() != specs_.size())
    throw Error("AdamW: " + std::to_string(specs_.size()) + " parameters, but got " + std::to_string(params.size()) +
                " parameter and " + std::to_string(grads.size()) + " gradient buffers");
  ++step_;
  const AdamWOptions &o = options_;
  // Scalars as torch computes them (Python floats), then cast to the
  // tensors' fp32 as its kernels do.
  const double bc1 = 1.0 - std::pow(o.beta1, (double)step_);
  const double bc2 = 1.0 - std::pow(o.beta2, (double)step_);
  const float stepSize = (float)(lr / bc1);
  const float bc2Sqrt = (float)std::sqrt(bc2);
  const float decay = (float)(1.0 - lr * o.weightDecay);
  const float w1 = (float)(1.0 - o.beta1), b2 = (float)o.beta2, w2 = (float)(1.0 - o.beta2);
  const float eps = (float)o.eps;
  for (size_t i = 0; i < specs_.size(); ++i) {
    float *p = params[i];
    const float *g = grads[i];
    float *m = m_[i].data(), *v = v_[i].data();
    const size_t n = m_[i].size();
    const bool wd = decays(i) && o.weightDecay != 0.0;
    // Elementwise: the same result on any number of threads.
#pragma omp parallel for schedule(static) if (parallelElementwise(n))
    for (size_t j = 0; j < n; ++j) {
      float pj = p[j];
      if (wd) pj = pj * decay;
      const float gj = g[j];
      m[j] = m[j] + w1 * (gj - m[j]);        // exp_avg.lerp_(grad, 1 - beta1)
      v[j] = v[j] * b2 + w2 * gj * gj;       // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
      const float denom = std::sqrt(v[j]) / bc2Sqrt + eps;
      p[j] = pj + (-stepSize) * (m[j] / denom); // param.addcdiv_(exp_avg, denom, -step_size)
    }
  }
}

double clipGradNorm(std::vector<std::vector<float>> &grads, double maxNorm) {
  double sumSq = 0;
  for (const std::vector<float> &g : grads) {
    double s = 0;
    for (float x : g) s += (double)x * x;
    sumSq += s;
  }
  const double norm = std::sqrt(sumSq);
  if (!std::isfinite(norm) || maxNorm <= 0) return norm;
  const double coef = maxNorm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = (float)coef;
    for (std::vector<float> &g : grads)
      for (float &x : g) x *= c;
  }
  return norm;
}

Schedule parseSchedule(const std::string &name) {
  if (name == "cosine") return Schedule::Cosine;
  if (name == "linear") return Schedule::Linear;
  if (name == "constant") return Schedule::Constant;
  throw Error("unknown learning-rate schedule '" + name + "' (expected cosine, linear or constant)");
}

const char *scheduleName(Schedule s) {
  switch (s) {
  case Schedule::Cosine: return "cosine";
  case Schedule::Linear: return "linear";
  case Schedule::Constant: return "constant";
  }
  return "?";
}

int64_t warmupSteps(double ratio, int64_t totalSteps) {
  if (!(ratio >= 0)) throw Error("warm-up ratio must be >= 0");
  return (int64_t)std::ceil((double)totalSteps * ratio);
}

double LrSchedule::at(int64_t s) const {
  // peak * factor, as LambdaLR multiplies the base rate by the lambda's value.
  if (s < warmup) return peak * ((double)s / (double)std::max<int64_t>(1, warmup));
  const double rest = (double)std::max<int64_t>(1, total - warmup);
  switch (kind) {
  case Schedule::Cosine: {
    const double progress = (double)(s - warmup) / rest;
    return peak * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 2.0 * 0.5 * progress)));
  }
  case Schedule::Linear: return peak * std::max(0.0, (double)(total - s) / rest);
  case Schedule::Constant: return peak;
  }
  return peak;
}

} // namespace mm
