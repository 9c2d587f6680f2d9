// The forward pass cut into pipeline stages (decoder.hpp's embed / layers / head, stage_plan.hpp):
// for every family fixture and every way of cutting its layers, stage decoders that each load
// only their own layers compute the logits of one forward pass bit for bit (packed documents
// included); the plan is contiguous, covers every layer once, balances by parameters and refuses
// more stages than layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "fusellm/model/decoder.hpp"
#include "unit/model/model_inputs.hpp"
#include "fusellm/model/stage_plan.hpp"

namespace fusellm {
namespace {

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

namespace fs = std::filesystem;
using fusellm::testing::error_of;
const fs::path kModels = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models";
const fs::path kDemo = fs::path(FUSELLM_SOURCE_DIR) / "examples" / "demo";

std::vector<std::string> model_dirs() {
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(kModels)) dirs.push_back(e.path().string());
  for (const char* d : {"llama", "neox"}) dirs.push_back((kDemo / d).string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

using fusellm::testing::bit_equal;
using fusellm::testing::some_ids;

// Every way to cut L layers into contiguous stages: bit i of `mask` cuts after layer i.
std::vector<std::vector<model::LayerRange>> all_cuts(int64_t L) {
  std::vector<std::vector<model::LayerRange>> out;
  for (uint32_t mask = 0; mask < (1u << (L - 1)); ++mask) {
    std::vector<model::LayerRange> cut;
    int64_t first = 0;
    for (int64_t l = 1; l <= L; ++l)
      if (l == L || (mask >> (l - 1) & 1u)) cut.push_back({first, l}), first = l;
    out.push_back(cut);
  }
  return out;
}

class StageSplit : public ::testing::TestWithParam<std::string> {};

TEST_P(StageSplit, StagesComputeTheForwardPassBitForBit) {
  const std::string dir = GetParam();
  const auto whole = model::load_decoder(dir);
  const model::Arch& a = whole->arch();
  const std::vector<int32_t> ids = some_ids(a.vocab, 40);
  std::vector<int32_t> docs(ids.size(), 0);
  for (size_t i = 15; i < docs.size(); ++i) docs[i] = i < 30 ? 1 : 2;
  for (const bool packed : {false, true}) {
    const std::span<const int32_t> d = packed ? std::span<const int32_t>(docs) : std::span<const int32_t>();
    const Tensor want = whole->forward(ids, d);
    // The whole model through the pieces.
    Tensor h = whole->embed(ids, d);
    whole->layers(h, 0, a.layers, d);
    EXPECT_TRUE(bit_equal(whole->head(h), want)) << "packed " << packed;
    // Stage decoders, each holding only its layers.
    for (const auto& cut : all_cuts(a.layers)) {
      std::vector<std::unique_ptr<model::Decoder>> stages;
      for (const model::LayerRange& r : cut) stages.push_back(model::load_decoder(dir, r));
      Tensor x = stages.front()->embed(ids, d);
      for (size_t s = 0; s < cut.size(); ++s) stages[s]->layers(x, cut[s].first, cut[s].last, d);
      EXPECT_TRUE(bit_equal(stages.back()->head(x), want)) << cut.size() << " stages, packed " << packed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StageSplit, ::testing::ValuesIn(model_dirs()),
                         [](const auto& info) { return fs::path(info.param).filename().string(); });

// A stage runs only the pieces it holds, and says so.
TEST(StageSplit, AStageRefusesWhatItDoesNotHold) {
  const std::string dir = (kDemo / "llama").string();
  const auto mid = model::load_decoder(dir, {1, 3});
  EXPECT_EQ(mid->range(), (model::LayerRange{1, 3}));
  const std::vector<int32_t> ids = some_ids(mid->arch().vocab, 5);
  EXPECT_HAS(error_of([&] { mid->embed(ids); }), "embed: layers [0, 3) are not within the layers [1, 3)");
  Tensor h({5, mid->arch().hidden});
  EXPECT_HAS(error_of([&] { mid->layers(h, 0, 2); }), "layers [0, 2) are not within");
  EXPECT_HAS(error_of([&] { mid->head(h); }), "head: layers [1, 4) are not within");
  EXPECT_HAS(error_of([&] { mid->forward(ids); }), "forward");
  EXPECT_HAS(error_of([&] { model::load_decoder(dir, {2, 5}); }), "layers [2, 5): not a non-empty range");
}

TEST(StagePlan, ContiguousBalancedAndBounded) {
  for (const std::string& dir : {(kDemo / "llama").string(), (kDemo / "neox").string()}) {
    const model::Arch a = model::read_arch(dir);
    const Checkpoint ck(dir);
    const model::DecoderParams params = model::plan_decoder_params(a, ck);
    for (int64_t S = 1; S <= a.layers; ++S) {
      const model::StagePlan p = model::plan_stages(dir, S);
      ASSERT_EQ(int64_t(p.stages.size()), S);
      int64_t next = 0, largest = 0;
      for (const model::Stage& s : p.stages) {
        EXPECT_EQ(s.layers.first, next);
        EXPECT_LT(s.layers.first, s.layers.last);
        next = s.layers.last;
        largest = std::max(largest, s.parameters);
        // A stage's count is what its decoder loads.
        int64_t held = 0;
        for (int i = 0; i < params.table.size(); ++i)
          if (model::holds(a, params, s.layers, i)) held += params.table[i].size;
        EXPECT_EQ(held, s.parameters);
      }
      EXPECT_EQ(next, a.layers);
      // No other cut has a smaller largest stage.
      for (const auto& cut : all_cuts(a.layers)) {
        if (int64_t(cut.size()) != S) continue;
        int64_t m = 0;
        for (const model::LayerRange& r : cut) {
          int64_t held = 0;
          for (int i = 0; i < params.table.size(); ++i)
            if (model::holds(a, params, r, i)) held += params.table[i].size;
          m = std::max(m, held);
        }
        EXPECT_LE(largest, m);
      }
      EXPECT_EQ(p.describe(), model::plan_stages(dir, S).describe());  // deterministic
    }
    EXPECT_HAS(error_of([&] { model::plan_stages(dir, a.layers + 1); }), "5 stages for a model of 4 layers");
    EXPECT_HAS(error_of([&] { model::plan_stages(dir, 0); }), "0 stages");
  }
  const std::string d = model::plan_stages((kDemo / "llama").string(), 2).describe();
  EXPECT_HAS(d, "stage 0: layers [0, ");
  EXPECT_HAS(d, "+ embedding");
  EXPECT_HAS(d, "+ final norm, head");
}

}  // namespace
}  // namespace fusellm
