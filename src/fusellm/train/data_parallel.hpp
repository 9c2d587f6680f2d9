#pragma once
// What a student rank of the MPI job hands the trainer (train/trainer.hpp) beside the job: the
// transports, the topology and where its rows come from. With it the loop is the single-process
// one with three differences, each a call into dist/:
//
//   data      the rows arrive over the transport (dist/rows_receiver.hpp), one RowsSource per
//             source, so the packed sequences are those a cache would give
//   step      the rank runs only the micro-batches it owns (Topology::owner_student), with the
//             whole step's sequence count as the gradient's 1/N; the loss terms are summed over
//             the students
//   update    ZeRO-1 (dist/zero1.hpp): reduce-scatter, clip over the shards, AdamW on the shard,
//             all-gather; checkpoints are sharded (train/sharded_checkpoint.hpp). With
//             [topology].zero_stage 2 the reduce-scatter happens during the backward pass, part
//             by part, into the rank's shard of the gradients (dist/sharded_gradients.hpp)
//
// Student rank 0 (world rank 0) writes the metrics, the checkpoints' metadata and the export,
// and broadcasts where the run starts to every rank (dist/start_position.hpp), so the teachers walk
// the same schedule.
#include <functional>

#include "fusellm/dist/timeline.hpp"
#include "fusellm/dist/topology.hpp"
#include "fusellm/dist/transport.hpp"
#include "fusellm/train/segment_source.hpp"

namespace fusellm {

struct DataParallel {
  dist::Transport* world = nullptr;     // every rank of the job
  dist::Transport* students = nullptr;  // the student ranks (rank = world rank)
  const dist::Topology* topology = nullptr;
  // The rows over the transport, made once the target's vocabulary size is known.
  std::function<SegmentSource(int64_t vocab)> data;
  dist::Timeline* timeline = nullptr;   // nullptr: none kept
};

}  // namespace fusellm
