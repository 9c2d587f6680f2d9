#pragma once
// The optimizer step where the student's gradients are (issue 15): on a GPU, llm.c's "grad norm,
// update" with no host round trip. The CPU optimizer (optim/: grad_clip, AdamW) works on host
// buffers, so a student on a GPU would bring its gradients to the host and its weights back every
// step (8 bytes per parameter over PCIe, plus AdamW on the host's cores); this one keeps the fp32
// master weights and AdamW's m and v in device memory beside the gradients and runs
// kernels/cuda/adamw.cuh: the gradient norm by a deterministic reduction, the clip coefficient,
// and AdamW over the flat buffer in one fused kernel (the CPU's bits given the same gradients and
// coefficient, as that header states), then refreshes the copy the passes read (the master
// itself, or rounded to bf16 for [train].dtype = "bf16").
//
// The host's copies (the model's parameter_buffer(), the AdamW object's moments and step count)
// are what checkpoints and exports read: to_host() fills them, from_host() takes them back after
// a checkpoint load. One process only: a student of the MPI job shards the optimizer (ZeRO-1,
// dist/zero1.hpp) on the host.
#include <cstdint>
#include <memory>
#include <string>

#include "fusellm/model/trainable_model.hpp"
#include "fusellm/optim/adamw.hpp"

namespace fusellm::device {

class DeviceOptimizer {
 public:
  // nullptr where the model's passes run on the host (the CPU optimizer then runs as before) or
  // where this fusellm has no CUDA. Copies the model's parameters as the master weights; m and v
  // start at zero (from_host() for a resumed run).
  static std::unique_ptr<DeviceOptimizer> make(model::TrainableModel& model, const AdamWOptions& options);
  virtual ~DeviceOptimizer() = default;

  // The norm of the model's gradients (sqrt of the sum of squares, as clip_grad_norm), and the
  // coefficient step() scales them by: min(max_norm / (norm + 1e-6), 1); max_norm <= 0: 1.
  virtual double clip(double max_norm) = 0;
  // One AdamW step at lr (the step count advanced first, as AdamW::step does) with clip()'s
  // coefficient. "" when every weight and moment is finite, else the name of the first tensor
  // with one that is not (AdamW::step's report); the passes' copy is refreshed either way.
  virtual std::string step(double lr) = 0;
  // The master weights into model.parameter_buffer(), m and v into `host` per tensor, its step
  // count set: what a checkpoint writes. Copies nothing when `host` holds this state already (no
  // step since the last to_host or from_host with it).
  virtual void to_host(AdamW& host) = 0;
  // The reverse, after a checkpoint was loaded into model.parameter_buffer() and `host` (a tensor
  // `host` has no state for starts at zero, as AdamW creates it).
  virtual void from_host(const AdamW& host) = 0;
};

}  // namespace fusellm::device
