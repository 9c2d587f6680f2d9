// The fusellm command end to end, run as a user runs it (FUSELLM_BINARY): exit codes, that
// errors name the file and the field, and that `score` on the shipped demo checkpoints gives the
// perplexity and bits per byte `transformers` computed for the same weights and text
// (examples/demo/*/reference_score.json, written by tests/reference/gen_demo_models.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "run_fusellm.hpp"

namespace fs = std::filesystem;

namespace {

using fusellm::testing::CmdResult;
CmdResult run(const std::string& args) { return fusellm::testing::run_fusellm(args); }

const std::string kDemo = std::string(FUSELLM_SOURCE_DIR) + "/examples/demo";

#define EXPECT_HAS(out, part) EXPECT_NE((out).find(part), std::string::npos) << "missing: " << (part) << "\n" << (out)

// A fresh directory under /tmp for one test.
fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fusellm_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

fs::path write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

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
  EXPECT_EQ(j["format"], "safetensors");
}

// A transformers checkpoint saved with safe_serialization=False, sharded (gen_torch_bin.py).
TEST(Cli, InfoReadsATorchZipCheckpoint) {
  const CmdResult r =
      run("info --json " + std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/torch_bin/llama_bf16/bin_sharded");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = last_json_line(r.out);
  EXPECT_EQ(j["format"], "torch zip");
  EXPECT_EQ(j["shards"].size(), 3u);
  EXPECT_EQ(j["dtypes"]["BF16"], 21);
  EXPECT_EQ(j["family"], "llama");
}

// A tied head saved by torch.save as a view of the embedding (MPT's lm_head.weight) counts once,
// as transformers' num_parameters counts it: the .bin and the safetensors report the same number.
TEST(Cli, InfoCountsATiedBinHeadOnce) {
  const std::string base = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/torch_bin/mpt_7b_f32/";
  const CmdResult bin = run("info --json " + base + "bin"), st = run("info --json " + base + "safetensors");
  ASSERT_EQ(bin.code, 0) << bin.out;
  ASSERT_EQ(st.code, 0) << st.out;
  EXPECT_EQ(last_json_line(bin.out)["parameters"], last_json_line(st.out)["parameters"]);
  EXPECT_EQ(last_json_line(bin.out)["checkpoint_elements"], last_json_line(st.out)["parameters"]);
}

// convert writes safetensors that load, then refuses to write into the same (now non-empty) directory.
TEST(Cli, ConvertWritesSafetensorsOnce) {
  const fs::path out = temp_dir("convert") / "out";
  const std::string src = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/torch_bin/pythia_bf16/bin_sharded";
  const CmdResult r = run("convert --model " + src + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  const CmdResult info = run("info --json " + out.string());
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_EQ(last_json_line(info.out)["format"], "safetensors");
  EXPECT_EQ(last_json_line(info.out)["dtypes"]["BF16"], 28);
  const CmdResult again = run("convert --model " + src + " --out " + out.string());
  EXPECT_EQ(again.code, 1) << again.out;
  EXPECT_HAS(again.out, "not an empty directory");
  fs::remove_all(out.parent_path());
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
  fs::remove(cache.string() + ".xxh64");
  fs::remove(text);
}

// `fusellm index` writes the job's segment index once; run again, it finds it valid.
TEST(Cli, IndexWritesTheSegmentIndexOnce) {
  const fs::path out = temp_dir("index");
  const std::string cmd = "index --job " + std::string(FUSELLM_SOURCE_DIR) + "/jobs/tiny.toml --set job.output_dir=" +
                          out.string() + " --limit 40";
  const CmdResult a = run(cmd);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_HAS(a.out, "segment_index.h5: 40 segments (cut and written)");
  EXPECT_TRUE(fs::exists(out / "segment_index.h5.xxh64"));
  const CmdResult b = run(cmd);
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_HAS(b.out, "segment_index.h5: 40 segments (already there and valid for the job)");
  fs::remove_all(out);
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

// Every usage error (the command line itself is wrong) exits 2, as README.md's exit-code table
// says, and names the flag or argument; CLI11 alone would exit 101..115 by kind. The values are
// checked before any file is read, so the paths need not exist.
TEST(Cli, UsageErrorsExitTwoAndNameTheFlag) {
  const std::string m = kDemo + "/llama", f = kDemo + "/sample.txt";
  struct Case {
    std::string args, part;
  };
  const std::vector<Case> cases = {
      {"info --bogus " + m, "--bogus"},                                    // unknown flag
      {"score " + f, "--model"},                                           // missing required option
      {"info", "dir"},                                                     // missing required argument
      {"score --model " + m + " --window abc " + f, "--window"},           // bad value
      {"info " + m + " extra", "extra"},                                   // extra positional
      {"train --job j.toml --export out --no-export", "--no-export"},      // conflicting options
      {"tokenize --tokenizer " + m + " --jsonl " + f, "--jsonl"},          // --jsonl reads stdin, not files
      {"frobnicate", "frobnicate"},                                        // unknown subcommand
      {"", "subcommand"},                                                  // no subcommand
      // Numeric flags out of range: refused, never taken as the default.
      {"score --model " + m + " --window 1 " + f, "--window"},
      {"score --model " + m + " --window -5 " + f, "--window"},
      {"score --model " + m + " --window 0 " + f, "--window"},
      {"train --job j.toml --max-steps -1", "--max-steps"},
      {"train --job j.toml --max-steps 0", "--max-steps"},
      {"train --job j.toml --stop-after 0", "--stop-after"},
      {"train --job j.toml --limit -3", "--limit"},
      {"teach --job j.toml --source s --limit -1", "--limit"},
      {"teach --job j.toml --source s --batch 0", "--batch"},
      {"align --source " + m + " --target " + m + " " + f + " --position -2", "--position"},
      {"align --source " + m + " --target " + m + " " + f + " -k 0", "-k"},
      {"align --source " + m + " --target " + m + " " + f + " --method fuzzy", "--method"},
      {"vocab-map --source " + m + " --target " + m + " --show -1", "--show"},
      {"export --checkpoint c --out o --max-shard-size 0", "--max-shard-size"},
      {"export --checkpoint c --out o --dtype f64", "--dtype"},
      {"score --model " + m + " --model " + m + " --weights 1,-1 " + f, "--weights"},
      {"merge --model " + m + " --model " + m + " --weights x,1 --out o", "--weights"},
  };
  for (const auto& c : cases) {
    const CmdResult r = run(c.args);
    EXPECT_EQ(r.code, 2) << "fusellm " << c.args << "\n" << r.out;
    EXPECT_HAS(r.out, c.part);
  }
  EXPECT_HAS(run("score --model " + m + " --window 1 " + f).out, "must be at least 2");
  // --help is no error.
  EXPECT_EQ(run("--help").code, 0);
  EXPECT_EQ(run("score --help").code, 0);
}

// A text that is not UTF-8 is refused naming the file (or stdin line), the byte offset and the
// line, as Python's open(path, encoding="utf-8").read() refuses it; before, the tokenizer failed
// with "the input is not valid UTF-8 (byte 9)" and no file.
TEST(Cli, InvalidUtf8NamesTheFileAndTheByteOffset) {
  const fs::path d = temp_dir("utf8");
  const std::string bad = write_file(d / "bad.txt", "fine\nnot \xFF fine\n").string();  // 0xFF at byte 9
  const std::string m = kDemo + "/llama";
  for (const std::string& args : {"score --model " + m + " " + bad, "tokenize --tokenizer " + m + " " + bad,
                                  "align --source " + kDemo + "/neox --target " + m + " " + bad}) {
    const CmdResult r = run(args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.out;
    EXPECT_HAS(r.out, bad + ": not valid UTF-8 at byte offset 9 (line 2, byte 0xFF)");
  }
  const CmdResult in = run("tokenize --tokenizer " + m + " < " + bad);
  EXPECT_EQ(in.code, 1) << in.out;
  EXPECT_HAS(in.out, "stdin line 2: not valid UTF-8 at byte offset 4");
  fs::remove_all(d);
}

TEST(Cli, JobThatIsADirectoryIsRefusedByName) {
  const fs::path d = temp_dir("jobdir");
  const CmdResult r = run("train --job " + d.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "job file '" + d.string() + "' is a directory");
  const CmdResult t = run("teach --job " + d.string() + " --source x");
  EXPECT_EQ(t.code, 1) << t.out;
  EXPECT_HAS(t.out, "is a directory");
  fs::remove_all(d);
}

// Nothing to score is an error that says so, not a perplexity of nan: lm-evaluation-harness's
// perplexity over no token fails (the mean of nothing), and torch's mean cross-entropy over no
// label is nan.
TEST(Cli, ScoreRefusesATextWithNoTokenToScore) {
  const fs::path d = temp_dir("empty");
  const std::string empty = write_file(d / "empty.txt", "").string();
  CmdResult r = run("score --model " + kDemo + "/llama " + empty);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, empty + ": the file is empty");
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;
  // One token and no BOS (GPT-NeoX adds none): the first token has no log-prob.
  const std::string one = write_file(d / "one.txt", "a").string();
  r = run("score --json --model " + kDemo + "/neox " + one);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, one + ": no token to score: the text gives 1 token(s)");
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;
  // The smallest window that scores (2) gives a finite perplexity.
  r = run("score --json -q --window 2 --model " + kDemo + "/llama " + kDemo + "/sample.txt");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::isfinite(last_json_line(r.out)["perplexity"].get<double>())) << r.out;
  fs::remove_all(d);
}

// A checkpoint whose weights hold NaN scored a perplexity of inf with exit 0; it is an error that
// names the model and the first non-finite logit.
TEST(Cli, ScoreRefusesAModelWithNonFiniteLogits) {
  const fs::path d = temp_dir("nan_model");
  for (const char* f : {"config.json", "tokenizer.json", "model.safetensors"})
    fs::copy_file(kDemo + "/llama/" + f, d / f);
  // model.norm.weight (BF16) := NaN (0x7FC0), found through the safetensors header.
  std::fstream st(d / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  st.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  st.read(header.data(), std::streamsize(n));
  const auto h = nlohmann::json::parse(header);
  const auto& off = h.at("model.norm.weight").at("data_offsets");
  const uint64_t begin = 8 + n + off[0].get<uint64_t>(), end = 8 + n + off[1].get<uint64_t>();
  st.seekp(std::streamoff(begin));
  for (uint64_t i = begin; i < end; i += 2) st.write("\xC0\x7F", 2);
  st.close();
  const CmdResult r = run("score --model " + d.string() + " " + kDemo + "/sample.txt");
  EXPECT_EQ(r.code, 1) << r.out.substr(0, 2000);
  EXPECT_HAS(r.out, d.string() + ": the model gives a non-finite logit (nan at vocabulary id 0)");
  EXPECT_EQ(r.out.find("perplexity"), std::string::npos) << r.out.substr(0, 2000);
  fs::remove_all(d);
}

// An error in the target's config.json names the job, its [target] and the config.json path once
// (it read "job.toml: [target] D: loading trainable model D: D/config.json: ...").
TEST(Cli, TrainTargetConfigErrorNamesThePathOnce) {
  const fs::path d = temp_dir("train_target");
  const fs::path t = d / "target";
  fs::create_directories(t);
  for (const char* f : {"tokenizer.json", "model.safetensors"}) fs::copy_file(kDemo + "/llama/" + f, t / f);
  std::ifstream in(kDemo + "/llama/config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["hidden_act"] = "gelu";
  write_file(t / "config.json", cfg.dump());
  const std::string job = write_file(d / "job.toml",
                                     "[target]\npath = \"target\"\n[corpus]\npath = \"" + kDemo +
                                         "/corpus.jsonl\"\nmax_len = 64\nmargin = 8\n[distill]\nfusion = \"none\"\n"
                                         "lambda = 1.0\n[train]\nglobal_batch = 1\nmax_steps = 1\n")
                              .string();
  const CmdResult r = run("train -q --no-export --job " + job);
  EXPECT_EQ(r.code, 1) << r.out;
  const std::string config = (t / "config.json").string();
  EXPECT_HAS(r.out, "fusellm: error: " + job + ": [target]: " + config + ": field 'hidden_act'");
  size_t n = 0;
  for (size_t at = r.out.find(t.string()); at != std::string::npos; at = r.out.find(t.string(), at + 1)) ++n;
  EXPECT_EQ(n, 1u) << r.out;
  fs::remove_all(d);
}

// --set section.key=value on every command that takes a job: the value goes through the field's
// own type and checks, an error names the flag, and the job as it runs (`config`, what a
// checkpoint records) carries the overridden value.
TEST(Cli, SetOverridesAJobSettingAndErrorsNameTheFlag) {
  const std::string job = std::string(FUSELLM_SOURCE_DIR) + "/jobs/tiny.toml";
  CmdResult r = run("config --job " + job +
                    " --set train.max_steps=7 --set distill.lambda=0.5 --set distill.fusion=avgCE --set "
                    "comm.dead_after_seconds=6");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_HAS(r.out, "\nmax_steps = 7\n");
  EXPECT_HAS(r.out, "\nlambda = 0.5\n");
  EXPECT_HAS(r.out, "\nfusion = \"avgCE\"\n");
  EXPECT_HAS(r.out, "\n[comm]\ntimeout_seconds = 1800\nheartbeat_seconds = 5\ndead_after_seconds = 6\n");
  r = run("config --job " + job + " --set comm.dead_after_seconds=5");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "fusellm: error: --set comm.dead_after_seconds=5: [comm].dead_after_seconds, "
                    "[comm].heartbeat_seconds: dead_after_seconds (5) must exceed heartbeat_seconds (5)");
  for (const std::string cmd : {"train -q --no-export", "teach --source llama", "align-compat --source neox"}) {
    r = run(cmd + " --job " + job + " --set train.max_steps=ten");
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.out;
    EXPECT_HAS(r.out, "fusellm: error: --set train.max_steps=ten: [train].max_steps: expected an integer, found a string (\"ten\")");
  }
  r = run("train -q --no-export --job " + job + " --set optim.lr=0");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "--set optim.lr=0: [optim].lr: must be a finite number > 0");
  r = run("train -q --no-export --job " + job + " --set optim.warmup_ratoi=0.1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "--set optim.warmup_ratoi=0.1: [optim].warmup_ratoi: unknown field (did you mean 'warmup_ratio'?)");
  // --set needs a job.
  EXPECT_EQ(run("train --set train.max_steps=1").code, 2);
}

TEST(Cli, ConfigFieldsPrintsTheFieldReference) {
  const CmdResult r = run("config --fields");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_HAS(r.out, "### `[optim]`");
  EXPECT_HAS(r.out, "| `max_steps` | integer >= 1 | unset |");
}

// `fusellm plan`: the world size the job needs (what slurm/launch.sh compares with SLURM_NTASKS),
// the rank map the job prints at start, and launch lines that run the same job (the --set flags
// carried, quoted for the shell); a layout the job would refuse is refused here, naming the fields.
TEST(Cli, PlanPrintsTheWorldSizeTheRankMapAndTheLaunchLines) {
  const std::string job = std::string(FUSELLM_SOURCE_DIR) + "/jobs/tiny.toml";
  CmdResult r = run("plan --job " + job + " --world-size");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "3\n");
  // 2 students + 1 (llama) + 2 replicas x 2 stages (neox) = 7.
  const std::string sets = " --set topology.student_ranks=2 --set 'source[1].replicas=2' --set 'source[1].stages=2'";
  r = run("plan --job " + job + sets + " --world-size");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "7\n");
  r = run("plan --job " + job + sets);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_HAS(r.out, "needs 7 MPI ranks");
  EXPECT_HAS(r.out, "students: 2 ranks ([topology].student_ranks)");
  EXPECT_HAS(r.out, "source \"neox\": replicas x stages = 2 x 2 = 4 ranks");
  EXPECT_HAS(r.out, "rank map: 7 ranks, 2 students, 2 teacher groups\n");
  EXPECT_HAS(r.out, "  rank 1  student 1 of 2  device auto\n");
  EXPECT_HAS(r.out, "  rank 6  teacher  source \"neox\" replica 1 stage 1  group rank 3  device auto\n");
  EXPECT_HAS(r.out, "sbatch --ntasks=7 slurm/one_node.sbatch --job " + job +
                        " --set topology.student_ranks=2 --set 'source[1].replicas=2' --set 'source[1].stages=2'\n");
  EXPECT_HAS(r.out, "srun --mpi=pmix --kill-on-bad-exit=1 -n 7 fusellm train --job " + job);
  EXPECT_HAS(r.out, "mpirun -np 7 fusellm train --job " + job);
  // A layout the job refuses: 3 teacher ranks for a source of 2 replicas.
  r = run("plan --job " + job + " --set 'topology.teacher_ranks=[3,1]' --set 'source[0].replicas=2' --world-size");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "fusellm: error: --set topology.teacher_ranks=[3,1]: [topology].teacher_ranks[0]");
  EXPECT_EQ(run("plan --world-size").code, 2);  // --job is required
}

// The memory table of `fusellm plan` (dist/memory_plan.hpp; its lines are checked against
// hand-computed sizes in tests/unit/dist/test_memory_plan.cpp): present for the tiny job with the
// student's weights (2835584 fp32 parameters = 10.82 MiB) and total, the verdict against
// --gpu-memory, the same numbers in --json, and the paper's job planned from the published 7B
// shapes (--shapes) before its FILL_IN paths exist: the 7B student fits 40 GiB with paper.toml's
// ZeRO-2, not with ZeRO-1.
TEST(Cli, PlanPrintsTheMemoryEachRankNeeds) {
  const std::string dir = std::string(FUSELLM_SOURCE_DIR) + "/jobs/";
  CmdResult r = run("plan --job " + dir + "tiny.toml --gpu-memory 40GiB");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_HAS(r.out, "memory per rank ([train].dtype fp32, 512 tokens per micro-batch;");
  EXPECT_HAS(r.out, "student (rank 0):\n");
  EXPECT_HAS(r.out, "10.82 MiB  P x w = 2835584 x 4\n");
  EXPECT_HAS(r.out, "83.58 MiB  fits in 40.00 GiB (0.2%)\n");
  EXPECT_HAS(r.out, "teacher \"neox\" stage 0 of 1 (rank 2):\n");
  EXPECT_HAS(r.out, "not counted: allocator fragmentation");
  r = run("plan --job " + dir + "tiny.toml --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["world_size"], 3);
  EXPECT_EQ(j["roles"][0]["role"], "student");
  EXPECT_EQ(j["roles"][0]["lines"][0]["bytes"], 2835584 * 4);
  const std::string paper = "plan --job " + dir + "paper.toml --gpu-memory 40GiB";
  const std::string shapes =
      " --shapes llama2_7b=llama2-7b --shapes openllama_7b=open-llama-7b-v2 --shapes mpt_7b=mpt-7b";
  r = run(paper + shapes);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_HAS(r.out, "needs 11 MPI ranks");
  EXPECT_HAS(r.out, "student (ranks 0-7):\n");
  EXPECT_HAS(r.out, "12.55 GiB  P x w = 6738415616 x 2\n");
  EXPECT_HAS(r.out, "3.14 GiB  4 x ceil(P / S) = 4 x 842301952 (ZeRO-2: 1/8 shard)\n");  // paper.toml's zero_stage 2
  EXPECT_HAS(r.out, "27.71 GiB  fits in 40.00 GiB (69.3%)\n");
  EXPECT_HAS(r.out, "teacher \"mpt_7b\" stage 0 of 1 (rank 10):\n");
  EXPECT_HAS(run(paper + shapes + " --set topology.zero_stage=1").out, "does NOT fit in 40.00 GiB");
  // Without the shapes of one model the plan says how to give them.
  r = run(paper + " --shapes llama2_7b=llama2-7b");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_HAS(r.out, "[[source]] 'openllama_7b' (/FILL_IN/open_llama_7b_v2)");
  EXPECT_HAS(r.out, "--shapes openllama_7b=PRESET");
  EXPECT_HAS(run("plan --job " + dir + "tiny.toml --gpu-memory 40Gx").out, "memory size \"40Gx\"");
}
