#pragma once
// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
// Models", SC 2020, section 5.1, P_os) for the data-parallel students: every student rank holds the
// whole model and computes the gradients of its own micro-batches; the optimizer state is cut into
// shards (shard_layout.hpp), and rank r keeps AdamW's moments of its shard only. A step is
//
//   reduce_gradients()  reduce-scatter of the whole gradient buffer (fp32): rank r receives the
//                       sum over ranks of its shard, written back into grads[begin, end)
//   clip(max_norm)      the squares of the shard's gradients summed (grad_sq_sum), all-reduced in
//                       double, then clip_coef / scale_grads on the shard (grad_clip.hpp): torch's
//                       clip_grad_norm_ over the whole model
//   step(lr)            AdamW on the shard's pieces of tensors (flat_param_grads over [begin, end))
//   gather_params()     all-gather of the updated shards into every rank's parameter buffer
//
// The calls between them are the trainer's (train/trainer.cpp: reduce, clip, update); with one
// rank the collectives are skipped and the step is bit for bit the single-process trainer's
// (clip_grad_norm then AdamW::step over the same ParamGrads), which tests/unit/dist/test_zero1.cpp
// checks.
//
// R ranks against one process. The transport's sums are reproducible (transport.hpp: fixed
// order for fixed ranks and sizes), so a run with R ranks gives the same bits on every rerun. It
// does not give the bits of one process: there, the micro-batches' gradient contributions are
// added into one buffer one after another, ((g1 + g2) + g3) + g4; with R ranks each rank adds its
// own micro-batches and the reduce-scatter adds the ranks' partial sums, (g1 + g2) + (g3 + g4):
// another association of fp32 additions, so a gradient element may differ by a few ulp of its
// largest addend. Everything after the reduction is element-wise (the clipping coefficient is
// one scalar, its squares summed in double and rounded to fp32 once, so a different grouping of
// that sum reaches it only when the double's last bits cross an fp32 rounding boundary) and AdamW
// is element-wise over pieces that step exactly as the whole tensor (flat_param_grads.hpp). So
// a few-ulp relative difference enters each step through the gradients; AdamW normalizes the
// update (m / sqrt(v), |update| <~ lr), so each step moves a weight by at most about lr * (a few
// ulp) more or less than one process would: after n steps |w_R - w_1| <~ n * lr * c * 2^-24, an
// absolute bound. Relative to the weights of a tensor that is far below the bound (max
// relative weight difference <= 1e-6 after 20 steps): tests/unit/dist/test_zero1.cpp measures
// 5e-8 (2 ranks) and 7.7e-8 (3 ranks) of each tensor's largest weight at lr 1e-2, i.e. about one
// ulp of the large weights. Element by element it is not: a weight that passes near zero has
// no useful relative difference (the same 5e-9 on a weight of 0.002 is 2e-6; measured up to
// 5.9e-6 there), so the bound is stated per tensor, max |w_R - w_1| / max |w_1|. Where the
// micro-batch contributions to one element nearly cancel, its gradient's relative difference is
// larger, but its update is bounded by the learning rate either way; the bound is what the
// equivalence tests observe, not a theorem.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/dist/shard_layout.hpp"
#include "fusellm/dist/transport.hpp"
#include "fusellm/optim/adamw.hpp"

namespace fusellm::dist {

class Zero1 {
 public:
  // params and grads: flat buffers laid out by `table` (table.total() floats each), the same on
  // every rank; or (ZeRO stage 2) grads only this rank's shard, [begin, end), already summed over
  // the ranks (sharded_gradients.hpp): reduce_gradients() then has nothing to do. The transport,
  // the table and both buffers must outlive this object.
  Zero1(Transport& students, const ParamTable& table, std::span<float> params, std::span<float> grads,
        AdamWOptions opt);

  void reduce_gradients();
  // The norm of the whole gradient before clipping (as clip_grad_norm returns it); max_norm <= 0
  // leaves the gradients as they are.
  double clip(double max_norm);
  // AdamW at lr on this rank's shard; "" or the name of the first tensor whose piece overflowed
  // (AdamW::step). Only the shard's parameters change: gather_params() then spreads them.
  std::string step(double lr);
  void gather_params();

  Transport& transport() const { return students_; }
  int rank() const { return students_.rank(); }
  int ranks() const { return students_.size(); }
  const ShardLayout& layout() const { return layout_; }
  int64_t begin() const { return layout_.begin(rank()); }
  int64_t end() const { return layout_.end(rank()); }
  const ParamTable& table() const { return table_; }
  std::span<const float> params() const { return params_; }
  std::span<float> params() { return params_; }
  // The shard's pieces of tensors (name, parameters, gradients), in the table's order.
  std::span<const ParamGrad> shard() const { return shard_; }
  const AdamW& adamw() const { return adamw_; }

  // AdamW's moments of the shard as flat runs over [begin, end) (zero where it has none yet: no
  // step taken), for a checkpoint; and back, with the step count, from one.
  void shard_moments(std::span<float> m, std::span<float> v) const;
  void restore_moments(std::span<const float> m, std::span<const float> v, int64_t steps);

 private:
  Transport& students_;
  const ParamTable& table_;
  std::span<float> params_, grads_;
  ShardLayout layout_;
  std::vector<ParamGrad> shard_;
  AdamW adamw_;
  std::vector<float> padded_, block_;  // collective buffers, kept between steps
};

}  // namespace fusellm::dist
