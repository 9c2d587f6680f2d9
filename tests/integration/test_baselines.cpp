// The paper's inference-time baselines against PyTorch (tests/reference/gen_baselines.py wrote
// the fixtures in tests/fixtures/baselines): `fusellm merge` gives torch's weighted parameter
// average, tensor by tensor, and a checkpoint whose logits equal transformers' on the merged
// state dict; `fusellm score` with several --model gives torch's ensemble log-probs,
// perplexity and bits per byte. Bad inputs fail with one line naming the file and the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/ensemble.hpp"
#include "fusellm/model/mixture_weights.hpp"
#include "fusellm/model/model.hpp"
#include "run_fusellm.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using testing::run_fusellm;

const fs::path kDir = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "baselines";
std::string model(const char* name) { return (kDir / name).string(); }

// A fresh scratch directory per test, removed afterwards.
class Baselines : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    tmp_ = fs::temp_directory_path() / ("fusellm_baselines_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  // A copy of fixture model `name` under the scratch dir, to be altered by a test.
  fs::path copy_model(const char* name, const std::string& as) {
    const fs::path d = tmp_ / as;
    fs::copy(kDir / name, d, fs::copy_options::recursive);
    return d;
  }
  fs::path tmp_;
};

float max_abs(std::span<const float> v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}
float max_rel_diff(std::span<const float> got, std::span<const float> ref) {
  float m = 0;
  for (size_t i = 0; i < ref.size(); ++i) m = std::max(m, std::fabs(got[i] - ref[i]));
  return m / max_abs(ref);
}

// The merged checkpoint in `out` against the reference file: every tensor, then the logits of
// the merged model (fusellm's forward) on the reference ids.
void expect_merge_equals_torch(const fs::path& out, const char* expected) {
  const SafetensorsFile ref((kDir / "expected" / expected).string());
  const Checkpoint got(out.string());
  size_t checked = 0;
  for (const auto& [name, info] : ref.tensors()) {
    if (name == "ids" || name == "logits") continue;
    ASSERT_TRUE(got.has(name)) << name;
    Tensor r(info.shape);
    convert_to_f32(info, r.span());
    const Tensor g = got.load_f32(name, info.shape);
    // Both average in fp64 and round once to the stored dtype: equal (0 seen); 1e-6 allows one
    // rounding of an fp64 sum taken in another order.
    EXPECT_LE(max_rel_diff(g.span(), r.span()), 1e-6f) << name;
    ++checked;
  }
  EXPECT_EQ(checked, got.names().size());
  const TensorInfo& ids_info = *ref.find("ids");
  Tensor idsf(ids_info.shape);
  convert_to_f32(ids_info, idsf.span());
  std::vector<int32_t> ids;
  for (float x : idsf.span()) ids.push_back(int32_t(std::lround(x)));
  Tensor ref_logits(ref.find("logits")->shape);
  convert_to_f32(*ref.find("logits"), ref_logits.span());
  const Tensor logits = CausalLM::load(out.string())->forward(ids);
  ASSERT_EQ(logits.shape(), ref_logits.shape());
  const float rel = max_rel_diff(logits.span(), ref_logits.span());
  EXPECT_LE(rel, 1e-5f);  // fp32 forward against transformers: GEMM order and FMA, ~1e-6 (6.1e-7 seen)
  std::printf("%s: merged logits max|diff|/max|ref| = %.3g\n", expected, rel);
  // A Hugging Face checkpoint: config and tokenizer beside the weights.
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  EXPECT_EQ(HFConfig::load(out.string()).get_string("torch_dtype"), "float32");
}

TEST_F(Baselines, MergeOfTwoEqualsTorch) {
  const auto r = run_fusellm("merge --model " + model("a") + " --model " + model("b") + " --out " + (tmp_ / "m").string());
  ASSERT_EQ(r.code, 0) << r.out;
  expect_merge_equals_torch(tmp_ / "m", "merge_ab.safetensors");
}

TEST_F(Baselines, MergeOfThreeWithWeightsEqualsTorch) {
  const auto r = run_fusellm("merge --model " + model("a") + " --model " + model("b") + " --model " + model("c") +
                             " --weights 1,2,3 --out " + (tmp_ / "m").string());
  ASSERT_EQ(r.code, 0) << r.out;
  expect_merge_equals_torch(tmp_ / "m", "merge_abc_123.safetensors");
}

TEST_F(Baselines, MergeWritesTheRequestedDtype) {
  for (const std::string dt : {"bf16", "f16"}) {
    const fs::path out = tmp_ / dt;
    const auto r = run_fusellm("merge --model " + model("a") + " --model " + model("b") + " --dtype " + dt +
                               " --out " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const Checkpoint got(out.string());
    const SafetensorsFile ref((kDir / "expected" / "merge_ab.safetensors").string());
    for (const std::string& name : got.names()) {
      EXPECT_EQ(dtype_name(got.info(name).dtype), dt == "bf16" ? "BF16" : "F16") << name;
      Tensor r32(ref.find(name)->shape);
      convert_to_f32(*ref.find(name), r32.span());
      // Rounding to 8 (bf16) or 11 (f16) significant bits.
      EXPECT_LE(max_rel_diff(got.load_f32(name).span(), r32.span()), dt == "bf16" ? 4e-3f : 5e-4f) << name;
    }
    EXPECT_EQ(HFConfig::load(out.string()).get_string("torch_dtype"), dt == "bf16" ? "bfloat16" : "float16");
  }
}

nlohmann::json score_json(const std::string& args) {
  const auto r = run_fusellm("score --json " + args + " " + model("text.txt"));
  EXPECT_EQ(r.code, 0) << r.out;
  nlohmann::json out = nlohmann::json::array();
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') out.push_back(nlohmann::json::parse(line));
  return out;
}

void expect_ensemble_equals_torch(const nlohmann::json& lines, const nlohmann::json& ref) {
  ASSERT_EQ(lines.size(), ref["logprobs"].size() + 1);
  double worst = 0;
  for (size_t i = 0; i < ref["logprobs"].size(); ++i) {
    const auto& g = lines[i];
    const auto& r = ref["logprobs"][i];
    EXPECT_EQ(g["pos"], r["pos"]);
    EXPECT_EQ(g["id"], r["id"]);
    // fp32 logits (GEMM order, FMA: ~1e-6 of a logit of O(10)) through an fp64 log-sum-exp.
    EXPECT_NEAR(g["logprob"].get<double>(), r["logprob"].get<double>(), 1e-5) << "pos " << r["pos"];
    worst = std::max(worst, std::fabs(g["logprob"].get<double>() - r["logprob"].get<double>()));
  }
  const auto& s = lines.back();
  EXPECT_EQ(s["tokens"], ref["tokens"]);
  EXPECT_EQ(s["scored_tokens"], ref["scored_tokens"]);
  const double bpb = ref["bits_per_byte"].get<double>(), ppl = ref["perplexity"].get<double>();
  // Sums of the log-probs above: their per-token errors have both signs and average out (9e-10 seen).
  EXPECT_NEAR(s["bits_per_byte"].get<double>(), bpb, 1e-6 * bpb);
  EXPECT_NEAR(s["perplexity"].get<double>(), ppl, 1e-6 * ppl);
  std::printf("ensemble: max |logprob diff| %.3g, bpb rel diff %.3g\n", worst,
              std::fabs(s["bits_per_byte"].get<double>() - bpb) / bpb);
}

nlohmann::json ensemble_ref(const char* key) {
  std::ifstream f(kDir / "expected" / "ensemble.json");
  return nlohmann::json::parse(f)[key];
}

TEST_F(Baselines, EnsembleOfTwoEqualsTorch) {
  expect_ensemble_equals_torch(score_json("--model " + model("a") + " --model " + model("b")), ensemble_ref("ab"));
}

TEST_F(Baselines, EnsembleOfThreeWithWeightsEqualsTorch) {
  expect_ensemble_equals_torch(
      score_json("--model " + model("a") + " --model " + model("b") + " --model " + model("c") + " --weights 1,2,3"),
      ensemble_ref("abc_123"));
}

TEST_F(Baselines, EnsembleTextOutputHasTheSummary) {
  const auto r = run_fusellm("score -q --model " + model("a") + " --model " + model("b") + " " + model("text.txt"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ensemble of 2 models"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bits per byte"), std::string::npos) << r.out;
}

// One failing command: non-zero exit, and the output names every string in `expect`.
void expect_error(const std::string& args, std::initializer_list<std::string> expect) {
  const auto r = run_fusellm(args);
  EXPECT_NE(r.code, 0) << args << "\n" << r.out;
  for (const std::string& s : expect) EXPECT_NE(r.out.find(s), std::string::npos) << "missing '" << s << "' in\n" << r.out;
}

TEST_F(Baselines, MergeRefusesADifferentArchitecture) {
  // A config field that changes the network (and the shapes).
  expect_error("merge --model " + model("a") + " --model " + model("other_shape") + " --out " + (tmp_ / "m").string(),
               {"other_shape/config.json", "'intermediate_size'", "48", "64"});
  // Another model_type.
  const fs::path mistral = copy_model("a", "mistral");
  {
    nlohmann::json c = nlohmann::json::parse(std::ifstream(mistral / "config.json"));
    c["model_type"] = "mistral";
    std::ofstream(mistral / "config.json") << c.dump(1);
  }
  expect_error("merge --model " + model("a") + " --model " + mistral.string() + " --out " + (tmp_ / "m").string(),
               {(mistral / "config.json").string(), "'model_type'", "mistral", "llama"});
  // Same config, a tensor of another shape.
  const fs::path shape = copy_model("other_shape", "shape");
  fs::copy_file(kDir / "a" / "config.json", shape / "config.json", fs::copy_options::overwrite_existing);
  expect_error("merge --model " + model("a") + " --model " + shape.string() + " --out " + (tmp_ / "m").string(),
               {(shape / "model.safetensors").string(), "model.layers.0.mlp.down_proj.weight", "[32, 48]", "[32, 64]"});
  EXPECT_FALSE(fs::exists(tmp_ / "m" / "model.safetensors"));
}

TEST_F(Baselines, EnsembleRefusesADifferentTokenizer) {
  const fs::path other = copy_model("a", "other_tok");
  fs::copy_file(fs::path(FUSELLM_SOURCE_DIR) / "examples" / "demo" / "neox" / "tokenizer.json", other / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  expect_error("score --model " + model("a") + " --model " + other.string() + " " + model("text.txt"),
               {other.string(), model("a"), "tokenizer"});
}

TEST_F(Baselines, BadWeightsAreRefused) {
  const std::string two = "--model " + model("a") + " --model " + model("b");
  const std::string out = " --out " + (tmp_ / "m").string();
  expect_error("merge " + two + " --weights=-1,2" + out, {"--weights", "-1", "non-negative"});
  expect_error("merge " + two + " --weights 1,2,3" + out, {"--weights", "3 weights for 2 models"});
  expect_error("merge " + two + " --weights 1,x" + out, {"--weights", "'x'", "expected a number"});
  expect_error("merge " + two + " --weights 0,0" + out, {"--weights", "all weights are zero"});
  expect_error("score " + two + " --weights=1,-0.5 " + model("text.txt"), {"--weights", "non-negative"});
  expect_error("score " + two + " --weights 1 " + model("text.txt"), {"--weights", "1 weights for 2 models"});
  expect_error("score " + two + " --weights 1,2x " + model("text.txt"), {"--weights", "'2x'", "expected a number"});
}

TEST(MixtureWeights, NormalizedAndUniformByDefault) {
  EXPECT_EQ(mixture_weights("", 4, "--weights"), std::vector<double>(4, 0.25));
  const auto w = mixture_weights("1,3", 2, "--weights");
  EXPECT_DOUBLE_EQ(w[0], 0.25);
  EXPECT_DOUBLE_EQ(w[1], 0.75);
  EXPECT_THROW(mixture_weights("nan,1", 2, "--weights"), Error);
  EXPECT_THROW(mixture_weights("1,,2", 3, "--weights"), Error);
}

TEST(Ensemble, LogSumExpOfTheModelsIsStable) {
  // Logits far apart in scale: the naive sum of probabilities underflows for the second model.
  const std::vector<float> a = {0.f, 1.f, 2.f}, b = {-2000.f, 0.f, 2000.f};
  const std::vector<std::span<const float>> rows = {a, b};
  const std::vector<double> w = {0.5, 0.5};
  const double la = log_softmax_at(a, 0);
  EXPECT_NEAR(ensemble_log_prob(rows, w, 0), std::log(0.5) + la, 1e-12);  // b gives id 0 no mass
  EXPECT_NEAR(ensemble_log_prob(rows, w, 2), std::log(0.5 * std::exp(log_softmax_at(a, 2)) + 0.5), 1e-12);
  // One model: its own log-softmax exactly.
  EXPECT_EQ(ensemble_log_prob(std::span(rows).first(1), std::vector<double>{1.0}, 1), log_softmax_at(a, 1));
}

}  // namespace
}  // namespace fusellm
