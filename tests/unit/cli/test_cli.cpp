// The fusellm command end to end, run as a user runs it (FUSELLM_BINARY): exit codes, that
// errors name the file and the field, and that `score` on the shipped demo checkpoints gives the
// perplexity and bits per byte `transformers` computed for the same weights and text
// (examples/demo/*/reference_score.json, written by tests/reference/gen_demo_models.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "run_fusellm.hpp"

namespace fs = std::filesystem;

namespace {

using fusellm::testing::CmdResult;
CmdResult run(const std::string& args) { return fusellm::testing::run_fusellm(args); }

const std::string kDemo = std::string(FUSELLM_SOURCE_DIR) + "/examples/demo";

nlohmann::json last_json_line(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') last = line;
  return nlohmann::json::parse(last);
}

}  // namespace

TEST(Cli, ScoreEqualsTransformersOnTheDemoCheckpoints) {
  for (const std::string m : {"llama", "neox"}) {
    const CmdResult r = run("score --json -q --model " + kDemo + "/" + m + " " + kDemo + "/sample.txt");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto got = last_json_line(r.out);
    std::ifstream f(kDemo + "/" + m + "/reference_score.json");
    const auto ref = nlohmann::json::parse(f);
    EXPECT_EQ(got["tokens"].get<int64_t>(), ref["tokens"].get<int64_t>()) << m;
    EXPECT_NEAR(got["perplexity"].get<double>(), ref["perplexity"].get<double>(),
                1e-4 * ref["perplexity"].get<double>()) << m;
    EXPECT_NEAR(got["bits_per_byte"].get<double>(), ref["bits_per_byte"].get<double>(), 1e-4) << m;
  }
}

TEST(Cli, InfoDescribesACheckpoint) {
  const CmdResult r = run("info --json " + kDemo + "/neox");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = last_json_line(r.out);
  EXPECT_EQ(j["family"], "gpt_neox");
  EXPECT_EQ(j["vocab_size"], 8192);
  EXPECT_EQ(j["dtypes"]["BF16"], 52);
}

TEST(Cli, TokenizeGivesIdsAndOffsets) {
  const CmdResult r = run("tokenize --tokenizer " + kDemo + "/llama --no-special " + kDemo + "/sample.txt");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = last_json_line(r.out);
  ASSERT_EQ(j["ids"].size(), j["offsets"].size());
  EXPECT_GT(j["ids"].size(), 100u);
}

TEST(Cli, AlignAndVocabMapOnTheDemoPair) {
  const fs::path text = fs::temp_directory_path() / "fusellm_cli_align.txt";
  std::ofstream(text) << "The quick brown fox, naïve café 東京 😀 42.\n";
  const CmdResult a = run("align --source " + kDemo + "/neox --target " + kDemo + "/llama " + text.string() +
                    " --position 2 -k 3");
  ASSERT_EQ(a.code, 0) << a.out;
  for (const char* m : {"== em:", "== mined:", "== bytespan:", "kept: exact", "source top-3"})
    EXPECT_NE(a.out.find(m), std::string::npos) << m << "\n" << a.out;
  const fs::path cache = fs::temp_directory_path() / "fusellm_cli_vocab_map.h5";
  fs::remove(cache);
  const CmdResult v = run("vocab-map --source " + kDemo + "/neox --target " + kDemo + "/llama --show 3 --out " +
                    cache.string());
  ASSERT_EQ(v.code, 0) << v.out;
  EXPECT_TRUE(fs::exists(cache));
  EXPECT_NE(v.out.find("distance"), std::string::npos) << v.out;
  // The cache refuses another pair (fingerprints), naming the file.
  const CmdResult w = run("vocab-map --source " + kDemo + "/llama --target " + kDemo + "/neox --out " + cache.string());
  EXPECT_EQ(w.code, 1) << w.out;
  EXPECT_NE(w.out.find(cache.filename().string()), std::string::npos) << w.out;
  fs::remove(cache);
  fs::remove(text);
}

TEST(Cli, BadInputIsOneLineNamingTheFileAndExitsNonZero) {
  const CmdResult missing = run("info /nonexistent/model");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("/nonexistent/model"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("fusellm: error:"), std::string::npos) << missing.out;
  const CmdResult usage = run("score");
  EXPECT_NE(usage.code, 0);
  const CmdResult job = run("train --job /nonexistent/job.toml");
  EXPECT_EQ(job.code, 1);
  EXPECT_NE(job.out.find("/nonexistent/job.toml"), std::string::npos) << job.out;
}

// MPT's context is max_seq_len: `info` reports it and `score` windows at it (MosaicML's MPT
// refuses longer inputs), as for the other families' context. A copy of a tiny MPT fixture with
// max_seq_len 16 and a one-character-per-token tokenizer of 26 letters.
TEST(Cli, MptContextIsMaxSeqLen) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_cli_mpt_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path fixture = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "models" / "mpt_alibi";
  fs::copy_file(fixture / "model.safetensors", dir / "model.safetensors");
  auto config = nlohmann::json::parse(std::ifstream(fixture / "config.json"));
  config["max_seq_len"] = 16;
  std::ofstream(dir / "config.json") << config.dump();
  nlohmann::json vocab = nlohmann::json::object();
  for (int c = 0; c < 26; ++c) vocab[std::string(1, char('a' + c))] = c;
  const nlohmann::json tok = {{"version", "1.0"}, {"added_tokens", nlohmann::json::array()},
                              {"normalizer", nullptr}, {"pre_tokenizer", nullptr},
                              {"post_processor", nullptr}, {"decoder", nullptr},
                              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  const fs::path text = dir / "text.txt";
  std::ofstream(text) << std::string("thequickbrownfoxjumpsoverthelazydogagain");  // 40 letters

  const CmdResult info = run("info --json " + dir.string());
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_EQ(last_json_line(info.out)["max_positions"], 16) << info.out;

  const CmdResult r = run("score --json -q --model " + dir.string() + " " + text.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto got = last_json_line(r.out);
  EXPECT_EQ(got["tokens"], 40) << r.out;
  // Windows [0, 16), [16, 32), [32, 40): the first token of each has no prediction.
  EXPECT_EQ(got["scored_tokens"], 15 + 15 + 7) << r.out;
  EXPECT_NE(r.out.find("scoring in 3 windows"), std::string::npos) << r.out;
  fs::remove_all(dir);
}
