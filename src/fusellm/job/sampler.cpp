#include "fusellm/job/sampler.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_set>

#include "fusellm/core/error.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace fusellm {

namespace {

std::vector<int64_t> permutation(std::mt19937_64& rng, int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(rng() % uint64_t(i + 1))]);
  return p;
}

uint64_t fingerprint(std::span<const int64_t> lengths, int64_t max_len) {
  const uint64_t fp = xxh64(lengths.data(), lengths.size() * sizeof(int64_t), uint64_t(max_len));
  return fp == 0 ? 1 : fp;  // 0 means "not recorded"
}

}  // namespace

SamplerSettings SamplerSettings::of(const JobConfig& job, int64_t max_steps_override) {
  SamplerSettings s;
  s.max_len = job.corpus.max_len;
  s.global_batch = job.train.global_batch;
  s.micro_batch = job.train.micro_batch;
  s.epochs = job.train.epochs;
  s.max_steps = max_steps_override > 0 ? max_steps_override : job.train.max_steps.value_or(-1);
  s.seed = uint64_t(job.job.seed);
  return s;
}

int64_t StepBatches::sequences() const {
  int64_t n = 0;
  for (const auto& mb : micro_batches) n += int64_t(mb.size());
  return n;
}

Sampler::Sampler(std::span<const int64_t> segment_lengths, const SamplerSettings& settings)
    : settings_(settings), packer_(segment_lengths, settings.max_len),
      fingerprint_(fingerprint(segment_lengths, settings.max_len)), rng_(settings.seed) {
  if (settings_.global_batch < 1 || settings_.micro_batch < 1)
    fail("sampler: global_batch {} and micro_batch {} must be >= 1", settings_.global_batch, settings_.micro_batch);
  begin_epoch();
}

int64_t Sampler::total_steps() const {
  if (settings_.max_steps > 0) return settings_.max_steps;
  const int64_t total_seq = settings_.epochs * sequences(), G = settings_.global_batch;
  return std::max<int64_t>(1, (total_seq + G - 1) / G);
}

void Sampler::begin_epoch() {
  epoch_start_ = rng_;
  perm_ = permutation(rng_, sequences());
}

void Sampler::restore(int64_t epoch, int64_t position, const std::mt19937_64& epoch_start_rng) {
  // A position past the epoch's end (a checkpoint of other data, written before data fingerprints)
  // starts the next epoch, as it always did.
  if (epoch < 0 || position < 0) fail("sampler: position {} of epoch {} is negative", position, epoch);
  rng_ = epoch_start_rng;
  begin_epoch();
  epoch_ = epoch;
  position_ = position;
}

bool Sampler::exhausted() const {
  return settings_.max_steps <= 0 && epoch_ * sequences() + position_ >= settings_.epochs * sequences();
}

StepBatches Sampler::next() {
  std::vector<int64_t> seqs;
  while (int64_t(seqs.size()) < settings_.global_batch && !exhausted()) {
    if (position_ >= sequences()) {
      ++epoch_;
      position_ = 0;
      begin_epoch();
    }
    seqs.push_back(perm_[size_t(position_++)]);
  }
  StepBatches b;
  for (size_t b0 = 0; b0 < seqs.size(); b0 += size_t(settings_.micro_batch)) {
    const size_t b1 = std::min(seqs.size(), b0 + size_t(settings_.micro_batch));
    b.micro_batches.emplace_back(seqs.begin() + std::ptrdiff_t(b0), seqs.begin() + std::ptrdiff_t(b1));
  }
  return b;
}

std::vector<int64_t> Sampler::segments(std::span<const int64_t> micro_batch) const {
  std::vector<int64_t> out;
  std::unordered_set<int64_t> seen;
  for (const int64_t seq : micro_batch)
    for (const PackedPiece& p : packer_.pieces(seq))
      if (seen.insert(p.segment).second) out.push_back(p.segment);
  return out;
}

std::string rng_to_text(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

void rng_from_text(std::mt19937_64& rng, const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 r;
  is >> r;
  if (is.fail()) fail("RNG state: not a std::mt19937_64 state ({} bytes of text)", text.size());
  rng = r;
}

}  // namespace fusellm
