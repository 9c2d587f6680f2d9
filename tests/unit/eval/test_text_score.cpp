// eval/text_score: the library side of `fusellm score`, against the torch reference that
// tests/reference/gen_baselines.py wrote (expected/ensemble.json: models a and b, uniform
// weights), and the window rule (each window's first token has no log-prob).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error_of.hpp"
#include "fusellm/eval/text_score.hpp"

namespace fs = std::filesystem;
using namespace fusellm;
using fusellm::testing::error_of;

namespace {

const fs::path kDir = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "baselines";

std::string read_text() {
  std::ifstream f(kDir / "text.txt", std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct TwoModels {
  std::unique_ptr<CausalLM> a = CausalLM::load((kDir / "a").string());
  std::unique_ptr<CausalLM> b = CausalLM::load((kDir / "b").string());
  std::vector<eval::NamedModel> models{{a.get(), "a"}, {b.get(), "b"}};
  std::vector<double> weights{0.5, 0.5};
};

}  // namespace

TEST(TextScore, EnsembleOfTwoEqualsTorch) {
  std::ifstream f(kDir / "expected" / "ensemble.json");
  const auto ref = nlohmann::json::parse(f)["ab"];
  const std::string text = read_text();
  const auto enc = Tokenizer::load((kDir / "a").string())->encode(text, true);
  TwoModels m;
  std::vector<eval::TokenScore> got;
  const eval::TextScore s = eval::score_ids({m.models, m.weights, enc.ids, int64_t(text.size()), 0, "text.txt"},
                                            [&](const eval::TokenScore& t) { got.push_back(t); });
  ASSERT_EQ(got.size(), ref["logprobs"].size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].pos, ref["logprobs"][i]["pos"].get<int64_t>());
    // fp32 logits (GEMM order, FMA: ~1e-6 of a logit of O(10)) through an fp64 log-sum-exp.
    EXPECT_NEAR(got[i].logprob, ref["logprobs"][i]["logprob"].get<double>(), 1e-5) << i;
  }
  EXPECT_EQ(s.tokens, ref["tokens"].get<int64_t>());
  EXPECT_EQ(s.scored, ref["scored_tokens"].get<int64_t>());
  const double bpb = ref["bits_per_byte"].get<double>();
  // A sum of the log-probs above: their errors have both signs and average out.
  EXPECT_NEAR(s.bits_per_byte(), bpb, 1e-6 * bpb);
}

TEST(TextScore, EachWindowRestartsTheContext) {
  const std::string text = read_text();
  const auto enc = Tokenizer::load((kDir / "a").string())->encode(text, true);
  TwoModels m;
  const int64_t n = int64_t(enc.ids.size()), w = 7;
  ASSERT_GT(n, 2 * w);
  std::vector<eval::TokenScore> whole, windowed;
  eval::score_ids({m.models, m.weights, enc.ids, int64_t(text.size()), n, "t"},
                  [&](const eval::TokenScore& t) { whole.push_back(t); });
  const eval::TextScore s = eval::score_ids({m.models, m.weights, enc.ids, int64_t(text.size()), w, "t"},
                                            [&](const eval::TokenScore& t) { windowed.push_back(t); });
  EXPECT_EQ(s.scored, n - (n + w - 1) / w);
  for (const auto& t : windowed) EXPECT_NE(t.pos % w, 0) << "a window's first token was scored";
  // The first window sees the same context as the whole text: the same log-probs, bit for bit
  // (one forward over a prefix; causal attention does not look ahead).
  for (int64_t i = 0; i + 1 < w; ++i) EXPECT_NEAR(windowed[size_t(i)].logprob, whole[size_t(i)].logprob, 1e-5);
}

TEST(TextScore, RefusesAnIdOutsideTheVocabularyNamingFileAndModel) {
  TwoModels m;
  const std::vector<int32_t> ids{1, 2, int32_t(m.a->info().vocab_size)};
  const std::string e = error_of([&] { eval::score_ids({m.models, m.weights, ids, 10, 0, "doc.txt"}); });
  EXPECT_NE(e.find("doc.txt"), std::string::npos) << e;
  EXPECT_NE(e.find("token 2"), std::string::npos) << e;
  EXPECT_NE(e.find("in a"), std::string::npos) << e;
}

TEST(TextScore, RefusesATextWithNoTokenToScore) {
  TwoModels m;
  const std::vector<int32_t> ids{5};
  const std::string e = error_of([&] { eval::score_ids({m.models, m.weights, ids, 1, 0, "one.txt"}); });
  EXPECT_NE(e.find("one.txt: no token to score"), std::string::npos) << e;
}
