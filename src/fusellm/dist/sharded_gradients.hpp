#pragma once
// ZeRO stage 2's gradient partitioning (Rajbhandari et al., "ZeRO: Memory Optimizations Toward
// Training Trillion Parameter Models", SC 2020, section 5.2, P_os+g) for the data-parallel
// students: no rank holds the gradient of the whole model. The backward pass hands over each part
// of it (model/decoder_params.hpp's GradientPart: the embeddings, the head, a layer) as soon as the
// part is done (TrainableModel::send_gradients_to), and every student calls add() with the same
// parts in the same order; rank r keeps only the sum over ranks of what falls in its ZeRO-1 shard
// (shard_layout.hpp), accumulated over the step's micro-batches. Zero1 then clips and steps that
// shard as it does after its reduce-scatter (zero1.hpp: it takes shard() as its gradients).
//
// The reduction is a reduce-scatter cut at the shards' boundaries: each rank sends every owner of
// a piece of the part that piece (isend over the students' transport, Tag::gradient), and the
// owner sums the ranks' pieces in rank order, s = ((c_0 + c_1) + c_2) ..., then adds s to its
// shard. The bytes moved are those of a reduce-scatter of the part (each rank sends (S - 1) / S
// of it), once per micro-batch instead of once per step: DeepSpeed's stage 2 trade, memory for
// communication. The order is fixed, so a run gives the same bits on every rerun; with one
// micro-batch per rank per step it gives the bits of ZeRO-1 (a sum of two or three fp32 values in
// rank order either way: tests/integration/test_online_job.cpp), and with more it is another
// association of the same fp32 additions, as ZeRO-1's is against one process (zero1.hpp bounds it).
// A rank that never sends its piece makes its owners' recv() time out (the transport's timeout):
// TransportTimeout naming the rank, the job ends.
#include <cstdint>
#include <span>
#include <vector>

#include "fusellm/dist/shard_layout.hpp"
#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

class ShardedGradients {
 public:
  // The shards of a buffer of `total` floats over the students (the transport must outlive this).
  ShardedGradients(Transport& students, int64_t total);

  // The start of a step: the shard's sum is zero.
  void zero();
  // This rank's gradient over [begin, begin + g.size()) of the buffer (g on the host); every
  // student calls it with the same range at the same point. Adds the ranks' sum of the piece in
  // this rank's shard to the shard.
  void add(int64_t begin, std::span<const float> g);
  // The sum so far over [layout().begin(rank), end(rank)), for Zero1.
  std::span<float> shard() { return shard_; }
  const ShardLayout& layout() const { return layout_; }

 private:
  Transport& students_;
  ShardLayout layout_;
  std::vector<float> shard_, sum_;
};

}  // namespace fusellm::dist
