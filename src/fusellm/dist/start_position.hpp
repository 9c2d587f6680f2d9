#pragma once
// Where the run starts, agreed by every rank before the first micro-batch: the students resume
// from a checkpoint (or start fresh) and world rank 0 (student 0) broadcasts the position, so the
// teachers, which read no checkpoint, walk the schedule from the same step with the same sampler
// state (job/sampler.hpp: epoch, position, the generator's state at the epoch's start).
#include <cstdint>
#include <string>

#include "fusellm/dist/transport.hpp"
#include "fusellm/job/sampler.hpp"

namespace fusellm::dist {

struct StartPosition {
  int64_t step = 0;  // steps completed before this run
  int64_t epoch = 0, position = 0;
  std::string rng;   // the sampler's epoch-start generator, as text
};

// Every rank of `world` calls it; rank 0 passes its start, the others receive it.
StartPosition share_start_position(Transport& world, const StartPosition& mine);

StartPosition start_position_of(const Sampler& sampler, int64_t step);
void restore_start_position(Sampler& sampler, const StartPosition& start);

}  // namespace fusellm::dist
