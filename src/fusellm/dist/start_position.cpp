#include "fusellm/dist/start_position.hpp"

#include <array>
#include <cstring>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

StartPosition share_start_position(Transport& world, const StartPosition& mine) {
  // The fixed part first (its size is known to all), then the generator's text.
  std::array<int64_t, 4> head{mine.step, mine.epoch, mine.position, int64_t(mine.rng.size())};
  world.broadcast(std::as_writable_bytes(std::span(head)), 0);
  StartPosition got{head[0], head[1], head[2], std::string(size_t(head[3]), '\0')};
  if (world.rank() == 0) got.rng = mine.rng;
  world.broadcast(std::as_writable_bytes(std::span(got.rng.data(), got.rng.size())), 0);
  return got;
}

StartPosition start_position_of(const Sampler& sampler, int64_t step) {
  return {step, sampler.epoch(), sampler.position(), rng_to_text(sampler.epoch_start_rng())};
}

void restore_start_position(Sampler& sampler, const StartPosition& start) {
  std::mt19937_64 rng;
  with_context("the run start broadcast by rank 0", [&] { rng_from_text(rng, start.rng); });
  sampler.restore(start.epoch, start.position, rng);
}

}  // namespace fusellm::dist
