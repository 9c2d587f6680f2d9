#include "fusellm/dist/rank_agreement.hpp"

#include <array>
#include <cstring>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

namespace {

constexpr size_t kWords = sizeof(RankFingerprints) / sizeof(float);

// The fingerprints travel as the bits of floats (all_gather moves fp32 values; the bits are
// copied, never computed on).
std::vector<RankFingerprints> gather(Transport& world, const RankFingerprints& mine) {
  std::array<float, kWords> in{};
  std::memcpy(in.data(), &mine, sizeof mine);
  std::vector<float> out(kWords * size_t(world.size()));
  world.all_gather(in, out);
  std::vector<RankFingerprints> all(size_t(world.size()));
  // Trivially copyable (only its default constructor is not trivial), so its bytes may be copied.
  static_assert(std::is_trivially_copyable_v<RankFingerprints>);
  std::memcpy(static_cast<void*>(all.data()), out.data(), out.size() * sizeof(float));
  return all;
}

}  // namespace

void agree_on_fingerprints(Transport& world, const Topology& topo, const RankFingerprints& mine) {
  const std::vector<RankFingerprints> all = gather(world, mine);
  std::vector<std::string> bad;
  const auto differ = [&](int r, int ref, const char* what, uint64_t a, uint64_t b) {
    if (a != b)
      bad.push_back(fmt::format("{} has {} fingerprint {:016x}, {} has {:016x}", world.describe(r), what, a,
                                world.describe(ref), b));
  };
  for (int r = 1; r < world.size(); ++r) {
    differ(r, 0, "data (segments)", all[size_t(r)].data, all[0].data);
    differ(r, 0, "tokenizer", all[size_t(r)].tokenizers, all[0].tokenizers);
  }
  for (int j = 0; j < topo.sources(); ++j) {  // the last stages hold the mapping
    const int last = topo.stages(j) - 1, first = topo.teacher_rank(j, 0, last);
    for (int r = 0; r < world.size(); ++r)
      if (topo.role(r).source == j && topo.role(r).stage == last && r != first)
        differ(r, first, "vocabulary-mapping", all[size_t(r)].mapping, all[size_t(first)].mapping);
  }
  if (!bad.empty())
    fail("the ranks of this job do not see the same files (every rank refuses; check that every node reads the same "
         "tokenizers, corpus and job file): {}",
         fmt::join(bad, "; "));
}

}  // namespace fusellm::dist
