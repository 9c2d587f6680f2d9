#pragma once
// How ZeRO-1 cuts a flat buffer of `total` floats (a ParamTable's parameters, gradients or AdamW
// moments) among `ranks` data-parallel ranks: equal shards of s = ceil(total / ranks) floats,
// rank r owning [min(r s, total), min((r + 1) s, total)). The last shards may be shorter, or empty
// when total < ranks * s - s; the collectives move ranks * s floats (padded()), as
// reduce_scatter and all_gather take equal blocks per rank (MPI_Reduce_scatter_block,
// ncclReduceScatter). The cut ignores tensor boundaries: a shard may hold pieces of two tensors
// (flat_param_grads.hpp steps each piece by its tensor's name).
//
// A checkpoint's shard files are named by (rank, ranks); this rule turns them back into ranges, so
// a run with another number of ranks knows which files overlap its own shard (reshard on load).
#include <algorithm>
#include <cstdint>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

struct ShardLayout {
  int64_t total = 0;  // floats in the buffer
  int ranks = 1;
  int64_t shard = 0;  // s = ceil(total / ranks)

  static ShardLayout of(int64_t total, int ranks) {
    if (ranks < 1 || total < 0) fail("ShardLayout: {} floats over {} ranks", total, ranks);
    return {total, ranks, (total + ranks - 1) / ranks};
  }
  int64_t begin(int r) const { return std::min(int64_t(r) * shard, total); }
  int64_t end(int r) const { return std::min(int64_t(r + 1) * shard, total); }
  int64_t size(int r) const { return end(r) - begin(r); }
  int64_t padded() const { return int64_t(ranks) * shard; }
};

}  // namespace fusellm::dist
