// The training schedule (train/sampler.hpp): every epoch a permutation of the packed sequences,
// steps of global_batch in micro-batches, the same schedule after a resume from any position, and
// the segments a micro-batch needs, all from the settings and the segments' lengths alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "fusellm/job/sampler.hpp"

using namespace fusellm;

namespace {

const std::vector<int64_t> kLengths{50, 30, 70, 10, 90, 40, 5, 64};  // 359 tokens

SamplerSettings settings(int64_t epochs, int64_t max_steps = -1) {
  SamplerSettings s;
  s.max_len = 32;
  s.global_batch = 4;
  s.micro_batch = 3;
  s.epochs = epochs;
  s.max_steps = max_steps;
  s.seed = 7;
  return s;
}

std::vector<int64_t> flat(const StepBatches& b) {
  std::vector<int64_t> v;
  for (const auto& mb : b.micro_batches) v.insert(v.end(), mb.begin(), mb.end());
  return v;
}

}  // namespace

TEST(Sampler, EveryEpochVisitsEverySequenceOnce) {
  Sampler s(kLengths, settings(3));
  const int64_t n = s.sequences();
  ASSERT_EQ(n, 12);  // ceil(359 / 32)
  EXPECT_EQ(s.total_steps(), 9);  // ceil(3 x 12 / 4)
  std::vector<int64_t> all;
  int64_t steps = 0;
  for (StepBatches b = s.next(); !b.empty(); b = s.next()) {
    ++steps;
    ASSERT_EQ(b.micro_batches.size(), 2u);  // 4 sequences in micro-batches of 3 and 1
    EXPECT_EQ(b.micro_batches[0].size(), 3u);
    EXPECT_EQ(b.micro_batches[1].size(), 1u);
    EXPECT_EQ(b.sequences(), 4);
    const auto v = flat(b);
    all.insert(all.end(), v.begin(), v.end());
  }
  EXPECT_EQ(steps, s.total_steps());
  ASSERT_EQ(int64_t(all.size()), 3 * n);
  std::vector<int64_t> identity(size_t(n), 0);
  std::iota(identity.begin(), identity.end(), 0);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> epoch(all.begin() + e * n, all.begin() + (e + 1) * n);
    std::sort(epoch.begin(), epoch.end());
    EXPECT_EQ(epoch, identity) << "epoch " << e;
  }
  EXPECT_EQ(s.epoch(), 2);
  EXPECT_EQ(s.position(), n);
}

// The order is part of what a checkpoint means and what tests/fixtures/train50 was made with: a
// change here breaks every resume across versions.
TEST(Sampler, FirstEpochOrderIsPinned) {
  Sampler s(kLengths, settings(1));
  std::vector<int64_t> all;
  for (StepBatches b = s.next(); !b.empty(); b = s.next()) {
    const auto v = flat(b);
    all.insert(all.end(), v.begin(), v.end());
  }
  EXPECT_EQ(all, (std::vector<int64_t>{4, 0, 2, 6, 10, 9, 1, 5, 11, 8, 7, 3}));
}

TEST(Sampler, ResumeFromAnyPositionContinuesTheSameSchedule) {
  Sampler straight(kLengths, settings(3));
  std::vector<std::vector<int64_t>> want;
  for (StepBatches b = straight.next(); !b.empty(); b = straight.next()) want.push_back(flat(b));
  for (size_t stop = 0; stop <= want.size(); ++stop) {
    Sampler first(kLengths, settings(3));
    for (size_t i = 0; i < stop; ++i) ASSERT_EQ(flat(first.next()), want[i]);
    Sampler resumed(kLengths, settings(3));  // a fresh process: the checkpoint's position only
    resumed.restore(first.epoch(), first.position(), first.epoch_start_rng());
    for (size_t i = stop; i < want.size(); ++i) ASSERT_EQ(flat(resumed.next()), want[i]) << "stopped after " << stop;
    EXPECT_TRUE(resumed.next().empty());
  }
}

TEST(Sampler, MaxStepsRunsOnPastTheEpochs) {
  Sampler s(kLengths, settings(1, 10));
  EXPECT_EQ(s.total_steps(), 10);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(s.next().sequences(), 4) << i;
  EXPECT_EQ(s.epoch(), 3);  // 40 sequences: epochs 0-2 whole, 4 of epoch 3
  EXPECT_EQ(s.position(), 4);
}

TEST(Sampler, TheLastStepOfTheEpochsMayBeShort) {
  SamplerSettings st = settings(1);
  st.global_batch = 5;
  Sampler s(kLengths, st);
  EXPECT_EQ(s.total_steps(), 3);
  EXPECT_EQ(s.next().sequences(), 5);
  EXPECT_EQ(s.next().sequences(), 5);
  EXPECT_EQ(s.next().sequences(), 2);
  EXPECT_TRUE(s.next().empty());
}

// What a teacher rank computes without a model: the segments of a micro-batch, once each, in the
// order the packer reads them.
TEST(Sampler, SegmentsOfAMicroBatch) {
  const Sampler s(kLengths, settings(1));
  const Packer& p = s.packer();
  // Sequence 1 holds tokens 32..63: segment 0 (50 tokens) from 32 and segment 1 from 0.
  ASSERT_EQ(p.pieces(1).size(), 2u);
  EXPECT_EQ(s.segments(std::vector<int64_t>{1}), (std::vector<int64_t>{0, 1}));
  // Sequences 2 and 1: segments 1, 2 (sequence 2: tokens 64..95), then 0 (1 again is not repeated).
  EXPECT_EQ(s.segments(std::vector<int64_t>{2, 1}), (std::vector<int64_t>{1, 2, 0}));
}

TEST(Sampler, SettingsFromTheJob) {
  JobConfig job;
  job.job.seed = 11;
  job.corpus.max_len = 96;
  job.train.global_batch = 8;
  job.train.micro_batch = 2;
  job.train.epochs = 3;
  SamplerSettings s = SamplerSettings::of(job);
  EXPECT_EQ(s.max_len, 96);
  EXPECT_EQ(s.global_batch, 8);
  EXPECT_EQ(s.micro_batch, 2);
  EXPECT_EQ(s.epochs, 3);
  EXPECT_EQ(s.max_steps, -1);
  EXPECT_EQ(s.seed, 11u);
  job.train.max_steps = 20;
  EXPECT_EQ(SamplerSettings::of(job).max_steps, 20);
  EXPECT_EQ(SamplerSettings::of(job, 5).max_steps, 5);  // --max-steps
}

TEST(Sampler, DataFingerprintFollowsLengthsAndMaxLen) {
  const Sampler a(kLengths, settings(1));
  EXPECT_NE(a.data_fingerprint(), 0u);
  EXPECT_EQ(Sampler(kLengths, settings(2)).data_fingerprint(), a.data_fingerprint());
  std::vector<int64_t> other = kLengths;
  other.back() += 1;
  EXPECT_NE(Sampler(other, settings(1)).data_fingerprint(), a.data_fingerprint());
  SamplerSettings longer = settings(1);
  longer.max_len = 64;
  EXPECT_NE(Sampler(kLengths, longer).data_fingerprint(), a.data_fingerprint());
}
