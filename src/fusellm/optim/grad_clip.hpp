#pragma once
// Clipping by global norm, reproducing torch.nn.utils.clip_grad_norm_ (norm_type 2,
// error_if_nonfinite False, as the HF Trainer calls it with max_grad_norm):
//   total_norm = || (||g_1||, ..., ||g_n||) ||_2          over all parameters' gradients
//   clip_coef  = max_norm / (total_norm + 1e-6)
//   g_i       *= min(clip_coef, 1)                        (torch.clamp(clip_coef, max=1.0))
// and returns total_norm, the norm before clipping (what the Trainer logs as grad_norm).
// A non-finite norm propagates as in torch: inf gives clip_coef 0 (gradients zeroed), NaN gives
// NaN gradients; the trainer sees the returned norm and decides.
//
// The norm is accumulated in double and rounded once; torch sums in fp32 in its own order, so the
// two norms may differ in the last bit (and the clipped gradients by as much).
//
// Data-parallel training splits it in three: each rank's grad_sq_sum over its shard, an
// all-reduce of the sums, then clip_coef() and scale_grads() on every rank.
#include <span>

#include "fusellm/optim/adamw.hpp"

namespace fusellm {

// Sum of squares of every gradient element, accumulated in double.
double grad_sq_sum(std::span<const ParamGrad> params);
// max_norm / (total_norm + 1e-6) clamped to at most 1 (NaN stays NaN).
double clip_coef(double total_norm, double max_norm);
void scale_grads(std::span<const ParamGrad> params, float coef);
// The gradients scaled as clip_grad_norm scales them for a norm found elsewhere (a data-parallel
// rank's shard, with the norm all-reduced over the ranks). max_norm <= 0: nothing.
void clip_to_norm(std::span<const ParamGrad> params, double total_norm, double max_norm);

// The whole of clip_grad_norm_. max_norm <= 0 disables clipping (the Trainer skips the call when
// max_grad_norm is 0); the norm is still returned.
double clip_grad_norm(std::span<const ParamGrad> params, double max_norm);

}  // namespace fusellm
