#include "fusellm/dist/zero1.hpp"

#include <algorithm>
#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/optim/flat_param_grads.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/optim_state.hpp"

namespace fusellm::dist {

Zero1::Zero1(Transport& students, const ParamTable& table, std::span<float> params, std::span<float> grads,
             AdamWOptions opt)
    : students_(students), table_(table), params_(params), grads_(grads),
      layout_(ShardLayout::of(table.total(), students.size())), adamw_(opt) {
  shard_ = flat_param_grads(table, params, grads, begin(), end());
}

void Zero1::reduce_gradients() {
  if (ranks() == 1) return;  // one rank holds the whole sum: the single-process trainer's no-op
  if (int64_t(grads_.size()) != table_.total()) return;  // ZeRO-2's shard: summed as the backward ran
  // reduce_scatter takes ranks * shard floats: the gradients themselves when they divide evenly,
  // else a copy padded with zeros (the padding's sums land beyond the last shard and are dropped).
  std::span<const float> in = grads_;
  if (layout_.padded() != layout_.total) {
    padded_.assign(grads_.begin(), grads_.end());
    padded_.resize(size_t(layout_.padded()), 0.f);
    in = padded_;
  }
  block_.resize(size_t(layout_.shard));
  students_.reduce_scatter(in, block_);
  std::copy_n(block_.begin(), end() - begin(), grads_.begin() + begin());
}

double Zero1::clip(double max_norm) {
  double sq = grad_sq_sum(shard_);
  if (ranks() > 1) students_.all_reduce(std::span<double>(&sq, 1));
  const double norm = std::sqrt(sq);
  clip_to_norm(shard_, norm, max_norm);
  return norm;
}

std::string Zero1::step(double lr) { return adamw_.step(shard_, lr); }

void Zero1::gather_params() {
  if (ranks() == 1) return;
  // The shard is copied out first: all_gather's input and output must not overlap.
  block_.assign(size_t(layout_.shard), 0.f);
  std::copy(params_.begin() + begin(), params_.begin() + end(), block_.begin());
  if (layout_.padded() == layout_.total) {
    students_.all_gather(block_, params_);
    return;
  }
  padded_.resize(size_t(layout_.padded()));
  students_.all_gather(block_, padded_);
  std::copy_n(padded_.begin(), layout_.total, params_.begin());
}

void Zero1::shard_moments(std::span<float> m, std::span<float> v) const {
  flat_moments(adamw_, table_, begin(), end(), m, v);
}

void Zero1::restore_moments(std::span<const float> m, std::span<const float> v, int64_t steps) {
  restore_flat_moments(adamw_, table_, begin(), end(), m, v, steps);
}

}  // namespace fusellm::dist
