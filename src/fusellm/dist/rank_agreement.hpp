#pragma once
// The start-up check that every rank of the online job works on the same thing (issue 11, "Bad
// input"): the same segments (the sampler's data fingerprint), the same tokenizers (their
// vocabularies' fingerprints) and, within each teacher group, the same vocabulary mapping. A rank
// whose files differ (another tokenizer.json on one node, a stale mapping) would otherwise send
// rows that are wrong without being malformed. Every rank gathers every rank's fingerprints and
// finds the same disagreements, so every rank refuses alike, naming the ranks and what differs.
#include <cstdint>

#include "fusellm/dist/topology.hpp"
#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

struct RankFingerprints {
  uint64_t data = 0;        // Sampler::data_fingerprint(): the segments' target lengths, max_len
  uint64_t tokenizers = 0;  // XXH64 of every job tokenizer's vocabulary fingerprint, in job order
  uint64_t mapping = 0;     // teachers: their source's vocabulary mapping (0: identity); students: 0
};

// Every rank of `world` calls it; Error on every rank when any two disagree.
void agree_on_fingerprints(Transport& world, const Topology& topo, const RankFingerprints& mine);

}  // namespace fusellm::dist
