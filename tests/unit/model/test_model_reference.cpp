// The fp32 CPU forward pass of every model family against transformers 4.46.3: the fixtures in
// tests/fixtures/models/ (made by tests/reference/gen_models.py) hold random tiny checkpoints and
// the logits transformers computes for them (lengths 1, 7, 256 and a packed case of three
// documents, whose reference is each document run on its own).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/model.hpp"
#include "unit/model/reference_cases.hpp"

namespace fusellm {
namespace {

using testing::Case;
using testing::read_cases;
using testing::relative_error;

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models";
// max |ours - ref| / max |ref|. Both sides are fp32 end to end; they differ only in summation
// order and FMA use (torch's and OpenBLAS's GEMM kernels, which OpenBLAS picks per CPU), ~1e-7
// relative per op and ~1e-6 after the layers (<= 1.2e-6 seen on the Haswell, Zen, Sandybridge and
// Prescott kernels). 1e-4 is 100x that; a real defect (a mask, scale or bias) moves logits by >1e-2.
constexpr double kTolerance = 1e-4;

// neox_dynamic: dynamic NTK RoPE on a partial rotary, documents of 97 and 256 tokens over
// max_position_embeddings 64, within 5.3e-7 like the rest. Its reference, like every reference
// here, is a freshly loaded model per document: transformers' rotary embedding keeps the inv_freq
// of the longest sequence it has seen (_dynamic_frequency_update; reset only below
// max_position_embeddings), so a model kept across calls scales a later, shorter window by an
// earlier window's length (transformers issue #25306). fusellm scales each document by its own
// length, which is what a fresh model gives; the 97-token document after a 256-token call
// differs from it by 1.1e-1 relative in transformers itself.
// mpt_mosaicml_*: alibi_bias_max and expansion_ratio other than 8 and 4, whose reference is
// transformers' MptForCausalLM computing them as MosaicML's MPT code does (gen_models.py's
// mosaicml_mpt; transformers' own port ignores both fields).
const std::vector<std::string>& kModels = testing::kReferenceModels;

class ModelReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelReference, LogitsMatchTransformers) {
  const std::string model = GetParam();
  const auto lm = CausalLM::load((kFixtures / model).string());
  const std::vector<Case> cases = read_cases(kFixtures / model / "reference" / "cases.safetensors");
  ASSERT_EQ(cases.size(), 4u) << model;
  for (const Case& c : cases) {
    const Tensor got = lm->forward(c.ids, c.doc_ids);
    ASSERT_EQ(got.shape(), c.logits.shape()) << model << " " << c.name;
    EXPECT_EQ(got.dim(1), lm->info().vocab_size);
    const double err = relative_error(got, c.logits);
    EXPECT_LE(err, kTolerance) << model << " case " << c.name << " (T=" << c.ids.size() << ")";
    std::printf("  %-26s %-8s T=%-4zu max|diff|/max|ref| = %.2e\n", model.c_str(), c.name.c_str(), c.ids.size(), err);
  }
}

// The same logits with one thread and with several (the threaded GEMM grid and attention
// scheduling must not change the result beyond rounding).
TEST_P(ModelReference, ThreadCountDoesNotChangeLogits) {
  const std::string model = GetParam();
  const auto lm = CausalLM::load((kFixtures / model).string());
  const std::vector<Case> cases = read_cases(kFixtures / model / "reference" / "cases.safetensors");
  const int n = omp_get_max_threads();
  for (const Case& c : cases) {
    omp_set_num_threads(1);
    const Tensor one = lm->forward(c.ids, c.doc_ids);
    omp_set_num_threads(std::max(n, 3));
    const Tensor many = lm->forward(c.ids, c.doc_ids);
    omp_set_num_threads(n);
    // Same kernels, only the OpenMP split of the reductions changes: a few fp32 ulps per op.
    EXPECT_LE(relative_error(many, one), 1e-5) << model << " " << c.name;
  }
}

// A packed sequence of one document is the plain sequence.
TEST_P(ModelReference, SingleDocumentEqualsNoDocIds) {
  const std::string model = GetParam();
  const auto lm = CausalLM::load((kFixtures / model).string());
  for (const Case& c : read_cases(kFixtures / model / "reference" / "cases.safetensors")) {
    if (c.name != "len7") continue;
    const std::vector<int32_t> same(c.ids.size(), 5);
    const Tensor a = lm->forward(c.ids), b = lm->forward(c.ids, same);
    EXPECT_EQ(a.span().size(), b.span().size());
    EXPECT_TRUE(std::equal(a.span().begin(), a.span().end(), b.span().begin()));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelReference, ::testing::ValuesIn(kModels),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(ModelReferenceFixtures, EveryFixtureIsTested) {
  std::set<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(kFixtures))
    if (e.is_directory()) on_disk.insert(e.path().filename().string());
  EXPECT_EQ(on_disk, std::set<std::string>(kModels.begin(), kModels.end()));
}

TEST(ModelReferenceFixtures, InfoDescribesTheModel) {
  const auto lm = CausalLM::load((kFixtures / "llama_gqa").string());
  const ModelInfo& i = lm->info();
  EXPECT_EQ(i.family, "llama");
  EXPECT_EQ(i.model_type, "llama");
  EXPECT_EQ(i.vocab_size, 128);
  EXPECT_EQ(i.hidden_size, 64);
  EXPECT_EQ(i.num_layers, 2);
  EXPECT_EQ(i.num_heads, 4);
  EXPECT_EQ(i.num_kv_heads, 2);
  EXPECT_EQ(i.max_positions, 512);
  // embed 128x64, lm_head 128x64, final norm 64; per layer: q 64x64, k,v 32x64 each, o 64x64,
  // gate/up 96x64 each, down 64x96, two norms of 64.
  const int64_t layer = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 96 * 64 + 2 * 64;
  EXPECT_EQ(i.num_parameters, 2 * 128 * 64 + 64 + 2 * layer);
  const auto mpt = CausalLM::load((kFixtures / "mpt_alibi").string());
  EXPECT_EQ(mpt->info().family, "mpt");
  EXPECT_EQ(mpt->info().max_positions, 512);  // max_seq_len: the context `score` and `teach` use
}

// MPT's max_seq_len is a limit per document, as in MosaicML's MPTModel.forward (which asserts
// it) and transformers' MptModel (whose ALiBi tensor has max_seq_len columns).
TEST(ModelReferenceFixtures, MptRefusesDocumentsBeyondMaxSeqLen) {
  const auto lm = CausalLM::load((kFixtures / "mpt_mosaicml_bias12_ratio3").string());  // max_seq_len 256
  EXPECT_EQ(lm->forward(std::vector<int32_t>(256, 1)).dim(0), 256);
  try {
    lm->forward(std::vector<int32_t>(257, 1));
    ADD_FAILURE() << "257 tokens ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_seq_len = 256"), std::string::npos) << e.what();
  }
  std::vector<int32_t> docs(400, 0);
  std::fill(docs.begin() + 200, docs.end(), 1);
  EXPECT_EQ(lm->forward(std::vector<int32_t>(400, 1), docs).dim(0), 400);  // each document fits
}

TEST(ModelReferenceFixtures, BadInputsAreErrors) {
  const auto lm = CausalLM::load((kFixtures / "gpt2_tied").string());
  const std::vector<int32_t> ids = {1, 2, 3};
  EXPECT_THROW(lm->forward(std::vector<int32_t>{1, 128}), Error);          // id outside the vocabulary
  EXPECT_THROW(lm->forward(ids, std::vector<int32_t>{0, 1}), Error);       // doc_ids of the wrong length
  EXPECT_THROW(lm->forward(ids, std::vector<int32_t>{1, 0, 0}), Error);    // decreasing doc_ids
  EXPECT_THROW(lm->forward(std::vector<int32_t>(301, 1)), Error);          // beyond n_positions (300)
  EXPECT_NO_THROW(lm->forward(std::vector<int32_t>(301, 1), [] {          // but each document fits
    std::vector<int32_t> d(301, 0);
    std::fill(d.begin() + 150, d.end(), 1);
    return d;
  }()));
  EXPECT_EQ(lm->forward(std::vector<int32_t>{}).dim(0), 0);
}

}  // namespace
}  // namespace fusellm
