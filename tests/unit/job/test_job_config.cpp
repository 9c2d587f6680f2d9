// The job file: defaults, path resolution, round trip through to_toml(), the shipped jobs, and
// every kind of mistake, each refused with the file, the line and the field named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "fusellm/core/error.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/job/job_fields.hpp"

using namespace fusellm;
namespace fs = std::filesystem;

namespace {

class JobConfigTest : public ::testing::Test {
 protected:
  fs::path dir;

  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("fusellm_job_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir / "models" / "llama");
    fs::create_directories(dir / "models" / "neox");
    fs::create_directories(dir / "models" / "no_config");
    std::ofstream(dir / "models" / "llama" / "config.json") << "{}";
    std::ofstream(dir / "models" / "neox" / "config.json") << "{}";
    std::ofstream(dir / "corpus.jsonl") << "{\"text\": \"hello\"}\n";
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write(const std::string& text) {
    const auto p = (dir / "job.toml").string();
    std::ofstream(p) << text;
    return p;
  }
  JobConfig load(const std::string& text) { return load_job(write(text)); }
  // The message of the Error a job is refused with ("" when it is accepted).
  std::string error_of(const std::string& text) {
    try {
      load(text);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  std::string error_of_load(const std::string& path) {
    try {
      load_job(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  std::string at(int line) const { return (dir / "job.toml").string() + ":" + std::to_string(line) + ": "; }
};

// A valid job; tests replace one line to make each mistake. Line numbers matter below.
const std::string kJob =
    "[job]\n"                          // 1
    "name = \"t\"\n"                   // 2
    "\n"                               // 3
    "[[source]]\n"                     // 4
    "path = \"models/llama\"\n"        // 5
    "\n"                               // 6
    "[[source]]\n"                     // 7
    "path = \"models/neox\"\n"         // 8
    "replicas = 2\n"                   // 9
    "\n"                               // 10
    "[target]\n"                       // 11
    "init_from = \"llama\"\n"          // 12
    "\n"                               // 13
    "[corpus]\n"                       // 14
    "path = \"corpus.jsonl\"\n"        // 15
    "\n"                               // 16
    "[distill]\n"                      // 17
    "top_k = 10\n"                     // 18
    "\n"                               // 19
    "[optim]\n"                        // 20
    "lr = 1e-5\n"                      // 21
    "\n"                               // 22
    "[train]\n"                        // 23
    "global_batch = 8\n";              // 24

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto i = s.find(from);
  if (i == std::string::npos) throw std::runtime_error("test bug: no '" + from + "'");
  return s.replace(i, from.size(), to);
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg) << "\nmissing: " << (part)

}  // namespace

TEST_F(JobConfigTest, DefaultsAreThePapersAndPathsResolveAgainstTheJobFile) {
  const JobConfig c = load(kJob);
  ASSERT_EQ(c.sources.size(), 2u);
  EXPECT_EQ(c.sources[0].name, "llama");  // the path's last component
  EXPECT_EQ(c.sources[1].name, "neox");
  EXPECT_EQ(c.sources[0].path, (dir / "models" / "llama").string());
  EXPECT_EQ(c.sources[0].tokenizer, c.sources[0].path);
  EXPECT_EQ(c.target.init_from, "llama");
  EXPECT_EQ(c.target.tokenizer, c.sources[0].tokenizer);
  EXPECT_EQ(c.corpus.path, (dir / "corpus.jsonl").string());
  EXPECT_EQ(c.corpus.max_len, 2048);
  EXPECT_EQ(c.corpus.margin, 48);
  EXPECT_FALSE(c.corpus.document_mask);
  EXPECT_EQ(c.distill.top_k, 10);
  EXPECT_EQ(c.distill.temperature, 1.0);
  EXPECT_EQ(c.distill.alignment, align::AlignMethod::kMinED);
  EXPECT_EQ(c.distill.fusion, DistillConfig::FusionMode::kMinCE);
  EXPECT_EQ(c.distill.lambda, 0.9);
  EXPECT_FALSE(c.distill.onehot_compat);
  EXPECT_EQ(c.distill.align_compat, align::OriginalRules{});
  EXPECT_EQ(c.optim.lr, 1e-5);
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.optim.eps, 1e-8);
  EXPECT_EQ(c.optim.weight_decay, 0.1);
  EXPECT_EQ(c.optim.clip, 1.0);
  EXPECT_EQ(c.optim.schedule, ScheduleKind::Cosine);
  EXPECT_EQ(c.optim.warmup_ratio, 0.008);
  EXPECT_FALSE(c.optim.warmup_steps);
  EXPECT_EQ(c.train.epochs, 1);
  EXPECT_EQ(c.train.global_batch, 8);
  EXPECT_EQ(c.grad_accum_steps(), 8);
  EXPECT_EQ(c.job.output_dir, (dir / "runs" / "t").string());
  EXPECT_EQ(c.checkpoint.dir, (dir / "runs" / "t" / "checkpoints").string());
  EXPECT_EQ(c.checkpoint.keep, 3);
  EXPECT_EQ(c.topology.teacher_ranks, (std::vector<int64_t>{1, 2}));  // each source's replicas
  EXPECT_EQ(c.world_size(), 4);
  EXPECT_EQ(c.comm.timeout_seconds, 1800);  // far beyond a 7B step
  EXPECT_EQ(c.comm.heartbeat_seconds, 5);
  EXPECT_EQ(c.comm.dead_after_seconds, 30);
  EXPECT_EQ(c.text, kJob);
}

TEST_F(JobConfigTest, ToTomlRoundTrips) {
  JobConfig c = load(replace(replace(kJob, "[optim]\n", "[optim]\nbetas = [0.8, 0.999]\nwarmup_steps = 7\nmin_lr_ratio = 0.1\n"),
                             "[distill]\n", "[distill]\nalign_compat = \"specials,dummy_prefix\"\n") +
                     "max_steps = 20\n[cache]\ndir = \"cache\"\n[checkpoint]\nkeep = 0\n"
                     "[comm]\ntimeout_seconds = 60\nheartbeat_seconds = 2\ndead_after_seconds = 7\n");
  const std::string t = c.to_toml();
  // Written to another directory: the paths in it are absolute, so they still resolve.
  fs::create_directories(dir / "elsewhere");
  const auto p = (dir / "elsewhere" / "copy.toml").string();
  std::ofstream(p) << t;
  const JobConfig back = load_job(p);
  EXPECT_TRUE(back.same_settings(c)) << t;
  EXPECT_EQ(back.to_toml(), t);
  EXPECT_EQ(back.optim.warmup_steps, 7);
  EXPECT_EQ(back.optim.beta2, 0.999);
  EXPECT_EQ(back.train.max_steps, 20);
  EXPECT_EQ(back.distill.align_compat.to_string(), "specials,dummy_prefix");
  EXPECT_EQ(back.comm, (CommConfig{60, 2, 7}));
}

// [distill].align_compat: the original's alignment rules by name, "all", or "none"; onehot_compat
// adds the one-hot rule; an unknown name is refused with the file, line and field.
TEST_F(JobConfigTest, AlignCompat) {
  JobConfig c = load(replace(kJob, "[distill]\n", "[distill]\nalign_compat = \"strings, empty_row\"\n"));
  EXPECT_TRUE(c.distill.align_compat.strings);
  EXPECT_TRUE(c.distill.align_compat.empty_row);
  EXPECT_FALSE(c.distill.align_compat.specials);
  EXPECT_EQ(c.distill.rules().to_string(), "strings,empty_row");
  c = load(replace(kJob, "[distill]\n", "[distill]\nalign_compat = \"all\"\n"));
  EXPECT_EQ(c.distill.rules(), align::OriginalRules::all());
  c = load(replace(kJob, "[distill]\n", "[distill]\nonehot_compat = true\n"));
  EXPECT_EQ(c.distill.rules().to_string(), "onehot_current");
  const std::string e = error_of(replace(kJob, "[distill]\n", "[distill]\nalign_compat = \"strngs\"\n"));
  EXPECT_NE(e.find(at(18)), std::string::npos) << e;
  EXPECT_NE(e.find("[distill].align_compat"), std::string::npos) << e;
  EXPECT_NE(e.find("strngs"), std::string::npos) << e;
}

TEST_F(JobConfigTest, UnknownFieldNamesFileLineFieldAndSuggests) {
  const std::string m = error_of(replace(kJob, "lr = 1e-5\n", "lr = 1e-5\nwarmup_ratoi = 0.1\n"));
  EXPECT_HAS(m, at(22));
  EXPECT_HAS(m, "[optim].warmup_ratoi");
  EXPECT_HAS(m, "unknown field");
  EXPECT_HAS(m, "did you mean 'warmup_ratio'");
}

TEST_F(JobConfigTest, FieldInTheWrongSectionPointsToItsSection) {
  const std::string m = error_of(replace(kJob, "global_batch = 8\n", "global_batch = 8\nlr = 1e-4\n"));
  EXPECT_HAS(m, at(25));
  EXPECT_HAS(m, "[train].lr");
  EXPECT_HAS(m, "did you mean [optim].lr");
}

TEST_F(JobConfigTest, UnknownFieldInASourceNamesTheSource) {
  const std::string m = error_of(replace(kJob, "replicas = 2\n", "replica = 2\n"));
  EXPECT_HAS(m, at(9));
  EXPECT_HAS(m, "source[1].replica");
  EXPECT_HAS(m, "did you mean 'replicas'");
}

TEST_F(JobConfigTest, UnknownSectionSuggestsTheClosest) {
  const std::string m = error_of(replace(kJob, "[optim]\n", "[optimizer]\n"));
  EXPECT_HAS(m, at(20));
  EXPECT_HAS(m, "optimizer");
  EXPECT_HAS(m, "unknown section");
  EXPECT_HAS(m, "did you mean [optim]");
}

TEST_F(JobConfigTest, WrongTypeNamesExpectedAndFound) {
  std::string m = error_of(replace(kJob, "top_k = 10\n", "top_k = \"10\"\n"));
  EXPECT_HAS(m, at(18));
  EXPECT_HAS(m, "[distill].top_k");
  EXPECT_HAS(m, "expected an integer");
  EXPECT_HAS(m, "found a string (\"10\")");

  m = error_of(replace(kJob, "lr = 1e-5\n", "lr = \"1e-5\"\n"));
  EXPECT_HAS(m, at(21));
  EXPECT_HAS(m, "[optim].lr");
  EXPECT_HAS(m, "expected a float");

  m = error_of(replace(kJob, "path = \"corpus.jsonl\"\n", "path = \"corpus.jsonl\"\ndocument_mask = 1\n"));
  EXPECT_HAS(m, at(16));
  EXPECT_HAS(m, "[corpus].document_mask");
  EXPECT_HAS(m, "expected a boolean, found an integer (1)");

  m = error_of(replace(kJob, "lr = 1e-5\n", "lr = 1e-5\nbetas = [0.9]\n"));
  EXPECT_HAS(m, at(22));
  EXPECT_HAS(m, "[optim].betas");
  EXPECT_HAS(m, "two floats");

  m = error_of(replace(kJob, "global_batch = 8\n", "global_batch = 8.0\n"));
  EXPECT_HAS(m, at(24));
  EXPECT_HAS(m, "[train].global_batch");
  EXPECT_HAS(m, "expected an integer, found a float");

  // [source] instead of [[source]]
  m = error_of(replace(replace(kJob, "[[source]]\npath = \"models/neox\"\nreplicas = 2\n", ""), "[[source]]", "[source]"));
  EXPECT_HAS(m, at(4));
  EXPECT_HAS(m, "[[source]]");
}

TEST_F(JobConfigTest, IntegersAreAcceptedAsFloats) {
  const JobConfig c = load(replace(kJob, "lr = 1e-5\n", "lr = 1e-5\nclip = 2\n"));
  EXPECT_EQ(c.optim.clip, 2.0);
}

TEST_F(JobConfigTest, BadChoiceListsTheChoicesAndSuggests) {
  const std::string m = error_of(replace(kJob, "top_k = 10\n", "top_k = 10\nfusion = \"MinCE\"\n"));
  EXPECT_HAS(m, at(19));
  EXPECT_HAS(m, "[distill].fusion");
  EXPECT_HAS(m, "\"minCE\", \"avgCE\", \"minCE-position\", \"none\"");
  EXPECT_HAS(m, "did you mean \"minCE\"");
}

TEST_F(JobConfigTest, MissingPathNamesFieldAndPath) {
  std::string m = error_of(replace(kJob, "models/neox", "models/gone"));
  EXPECT_HAS(m, at(8));
  EXPECT_HAS(m, "source[1].path");
  EXPECT_HAS(m, (dir / "models" / "gone").string());
  EXPECT_HAS(m, "does not exist");

  m = error_of(replace(kJob, "models/neox", "models/no_config"));
  EXPECT_HAS(m, at(8));
  EXPECT_HAS(m, "source[1].path");
  EXPECT_HAS(m, "no config.json");

  m = error_of(replace(kJob, "corpus.jsonl", "missing.jsonl"));
  EXPECT_HAS(m, at(15));
  EXPECT_HAS(m, "[corpus].path");
  EXPECT_HAS(m, (dir / "missing.jsonl").string());
}

TEST_F(JobConfigTest, MissingRequiredFields) {
  std::string m = error_of(replace(kJob, "path = \"corpus.jsonl\"\n", "max_len = 512\n"));
  EXPECT_HAS(m, at(14));
  EXPECT_HAS(m, "[corpus].path");
  EXPECT_HAS(m, "required field is missing");

  m = error_of(replace(kJob, "path = \"models/neox\"\n", ""));
  EXPECT_HAS(m, at(7));
  EXPECT_HAS(m, "source[1].path");
  EXPECT_HAS(m, "required");

  m = error_of(replace(kJob, "init_from = \"llama\"\n", ""));
  EXPECT_HAS(m, at(11));
  EXPECT_HAS(m, "[target].path");
  EXPECT_HAS(m, "init_from");

  m = error_of(replace(kJob, "[target]\ninit_from = \"llama\"\n", ""));
  EXPECT_HAS(m, "job.toml: [target]");
  EXPECT_HAS(m, "required section");
}

TEST_F(JobConfigTest, InconsistentSettingsNameEveryFieldInvolved) {
  struct Case {
    std::string from, to;
    int line;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"top_k = 10\n", "top_k = 10\nlambda = 1.5\n", 19, {"[distill].lambda", "[0, 1]", "1.5"}},
      {"top_k = 10\n", "top_k = 0\n", 18, {"[distill].top_k", "at least 1", "found 0"}},
      {"top_k = 10\n", "top_k = 10\nfusion = \"none\"\n", 19, {"[distill].fusion, [distill].lambda", "0.9"}},
      {"init_from = \"llama\"\n", "init_from = \"lama\"\n", 12,
       {"[target].init_from", "names no [[source]]", "\"lama\"", "did you mean \"llama\""}},
      {"init_from = \"llama\"\n", "init_from = \"llama\"\npath = \"models/llama\"\n", 12,
       {"[target].path, [target].init_from", "not both"}},
      {"lr = 1e-5\n", "lr = 1e-5\nwarmup_ratio = 1.0\n", 22, {"[optim].warmup_ratio", "[0, 1)"}},
      {"lr = 1e-5\n", "lr = 1e-5\nwarmup_ratio = 0.01\nwarmup_steps = 5\n", 22,
       {"[optim].warmup_ratio, [optim].warmup_steps", "not both"}},
      {"global_batch = 8\n", "global_batch = 8\nmicro_batch = 3\n", 24,
       {"[train].global_batch, [train].micro_batch, [topology].student_ranks", "divisible", "micro_batch (3) x student_ranks (1)"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nstudent_ranks = 3\n", 24,
       {"[train].global_batch, [train].micro_batch, [topology].student_ranks", "= 3"}},
      {"path = \"models/neox\"\n", "path = \"models/neox\"\nname = \"llama\"\n", 9,
       {"source[0].name, source[1].name", "\"llama\"", "unique"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nteacher_ranks = [1]\n", 26,
       {"[topology].teacher_ranks", "1 entries", "2 [[source]]"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nteacher_ranks = [1, 3]\n", 9,
       {"[topology].teacher_ranks[1], source[1].replicas", "replicas x stages = 2 ranks, found 3"}},
      // A replica of a source in stages is `stages` ranks.
      {"replicas = 2\n", "replicas = 2\nstages = 3\n[topology]\nteacher_ranks = [1, 2]\n", 9,
       {"[topology].teacher_ranks[1], source[1].replicas, source[1].stages", "2 replicas of 3 stages",
        "replicas x stages = 6 ranks, found 2"}},
      {"replicas = 2\n", "replicas = 2\nstages = 0\n", 10, {"source[1].stages", "must be at least 1"}},
      {"path = \"corpus.jsonl\"\n", "path = \"corpus.jsonl\"\nmax_len = 40\nmargin = 48\n", 16,
       {"[corpus].margin, [corpus].max_len", "smaller"}},
      {"lr = 1e-5\n", "lr = -1e-5\n", 21, {"[optim].lr", "> 0"}},
      {"lr = 1e-5\n", "lr = 1e-5\nbetas = [0.9, 1.0]\n", 22, {"[optim].betas", "beta2"}},
      // A rank is dead only after it missed at least one beat.
      {"global_batch = 8\n", "global_batch = 8\n[comm]\nheartbeat_seconds = 40\n", 26,
       {"[comm].dead_after_seconds, [comm].heartbeat_seconds", "dead_after_seconds (30) must exceed heartbeat_seconds (40)"}},
      {"global_batch = 8\n", "global_batch = 8\n[comm]\ndead_after_seconds = 5\n", 26,
       {"[comm].dead_after_seconds, [comm].heartbeat_seconds", "(5) must exceed heartbeat_seconds (5)"}},
      {"global_batch = 8\n", "global_batch = 8\n[comm]\nheartbeat_seconds = 0\n", 26,
       {"[comm].heartbeat_seconds", "must be at least 1, found 0"}},
      {"global_batch = 8\n", "global_batch = 8\n[comm]\ntimeout_seconds = -1\n", 26,
       {"[comm].timeout_seconds", "must be at least 0"}},
  };
  for (const auto& c : cases) {
    const std::string m = error_of(replace(kJob, c.from, c.to));
    EXPECT_HAS(m, at(c.line));
    for (const auto& p : c.parts) EXPECT_HAS(m, p);
  }
}

TEST_F(JobConfigTest, SourceNamesMustBePlainFileNames) {
  // The name becomes <[cache].dir>/<name>.h5: "../x" or "a/b" would write outside the cache directory.
  for (const std::string name : {"../evil", "a/b", "..", ".", "/abs", "back\\\\slash"}) {
    const std::string m = error_of(replace(kJob, "path = \"models/neox\"\n", "path = \"models/neox\"\nname = \"" + name + "\"\n"));
    EXPECT_HAS(m, at(9));
    EXPECT_HAS(m, "source[1].name");
    EXPECT_HAS(m, "not a plain file name");
  }
  // A name that defaults to the path's last component is checked as well, at the source's line
  // (paths are normalized, so only the root gives a default that is not a plain name: "").
  const std::string m = error_of(replace(kJob, "path = \"models/neox\"\n", "path = \"/\"\n"));
  EXPECT_HAS(m, at(7));
  EXPECT_HAS(m, "defaults to the path");
  EXPECT_EQ(error_of(replace(kJob, "path = \"models/neox\"\n", "path = \"models/neox\"\nname = \"neo-x_2.1\"\n")), "");
}

TEST_F(JobConfigTest, NonFiniteOptimizerSettingsAreRefused) {
  // lr = inf passed "> 0" and overflowed the weights at the first update.
  for (const std::string v : {"inf", "nan", "+inf"}) {
    const std::string m = error_of(replace(kJob, "lr = 1e-5\n", "lr = " + v + "\n"));
    EXPECT_HAS(m, at(21));
    EXPECT_HAS(m, "[optim].lr");
    EXPECT_HAS(m, "finite");
  }
  const std::string m = error_of(replace(kJob, "lr = 1e-5\n", "lr = 1e-5\neps = inf\n"));
  EXPECT_HAS(m, "[optim].eps");
}

TEST_F(JobConfigTest, FusionNeedsASource) {
  const std::string no_sources = "[target]\npath = \"models/llama\"\n[corpus]\npath = \"corpus.jsonl\"\n";
  std::string m = error_of(no_sources);
  EXPECT_HAS(m, "[distill].fusion, [[source]]");
  // CLM-only continual training: no sources, fusion none, lambda 1.
  const JobConfig c = load(no_sources + "[distill]\nfusion = \"none\"\nlambda = 1.0\n");
  EXPECT_EQ(c.distill.fusion, std::nullopt);  // "none"
  EXPECT_EQ(c.world_size(), 1);
}

TEST_F(JobConfigTest, InvalidTomlNamesLineAndColumn) {
  const std::string m = error_of(replace(kJob, "lr = 1e-5\n", "lr = = 1e-5\n"));
  EXPECT_HAS(m, at(21).substr(0, at(21).size() - 2) + ":");
  EXPECT_HAS(m, "invalid TOML");
}

TEST_F(JobConfigTest, UnreadableFile) {
  try {
    load_job((dir / "nope.toml").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "nope.toml");
    EXPECT_HAS(std::string(e.what()), "no such file");
  }
}

TEST_F(JobConfigTest, ADirectoryIsNotAJobFile) {
  // An ifstream opens a directory and reads nothing: the job would be refused for a missing
  // [target], which says nothing about the real mistake.
  const std::string m = error_of_load(dir.string());
  EXPECT_HAS(m, dir.string());
  EXPECT_HAS(m, "is a directory");
}

// Every integer field is bounded above (2^31 - 1), so a huge value is refused with its field and
// line when the job is read, not deep inside HDF5 (top_k = 2^31 made the cache's chunk invalid)
// or an allocation; every float must be finite (TOML has inf and nan).
TEST_F(JobConfigTest, NumbersOutOfRangeNameTheFieldAndLine) {
  struct Case {
    std::string from, to;
    int line;
    std::vector<std::string> parts;
  };
  const std::string big = "2147483648";  // 2^31
  const std::vector<Case> cases = {
      {"top_k = 10\n", "top_k = " + big + "\n", 18, {"[distill].top_k", "at most 64", "found " + big}},
      {"top_k = 10\n", "top_k = 10\ntemperature = inf\n", 19, {"[distill].temperature", "finite", "inf"}},
      {"top_k = 10\n", "top_k = 10\nlambda = nan\n", 19, {"[distill].lambda", "finite", "nan"}},
      {"lr = 1e-5\n", "lr = inf\n", 21, {"[optim].lr", "finite", "found inf"}},
      {"lr = 1e-5\n", "lr = 1e-5\nclip = inf\n", 22, {"[optim].clip", "finite"}},
      {"lr = 1e-5\n", "lr = 1e-5\nweight_decay = -inf\n", 22, {"[optim].weight_decay", "finite"}},
      {"lr = 1e-5\n", "lr = 1e-5\nwarmup_steps = " + big + "\n", 22, {"[optim].warmup_steps", "at most"}},
      {"path = \"corpus.jsonl\"\n", "path = \"corpus.jsonl\"\nmax_len = 9223372036854775807\n", 16,
       {"[corpus].max_len", "at most", "9223372036854775807"}},
      {"replicas = 2\n", "replicas = " + big + "\n", 9, {"source[1].replicas", "at most"}},
      {"global_batch = 8\n", "global_batch = " + big + "\n", 24, {"[train].global_batch", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\nmicro_batch = " + big + "\n", 25, {"[train].micro_batch", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\nepochs = " + big + "\n", 25, {"[train].epochs", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\nmax_steps = " + big + "\n", 25, {"[train].max_steps", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\nlog_interval = " + big + "\n", 25, {"[train].log_interval", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\n[checkpoint]\ninterval = " + big + "\n", 26,
       {"[checkpoint].interval", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\n[checkpoint]\nkeep = " + big + "\n", 26, {"[checkpoint].keep", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nprefetch = " + big + "\n", 26,
       {"[topology].prefetch", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nstudent_ranks = " + big + "\n", 26,
       {"[topology].student_ranks", "at most"}},
      {"global_batch = 8\n", "global_batch = 8\n[topology]\nteacher_ranks = [1, " + big + "]\n", 26,
       {"[topology].teacher_ranks[1]", "at most"}},
  };
  for (const auto& c : cases) {
    const std::string m = error_of(replace(kJob, c.from, c.to));
    EXPECT_HAS(m, at(c.line));
    for (const auto& p : c.parts) EXPECT_HAS(m, p);
  }
  // The bounds themselves are accepted.
  EXPECT_EQ(error_of(replace(kJob, "top_k = 10\n", "top_k = 64\n")), "");
  EXPECT_EQ(error_of(replace(kJob, "global_batch = 8\n", "global_batch = 8\nmax_steps = 2147483647\n")), "");
}

// The parsed job keeps where each setting came from: later messages name the line from it.
TEST_F(JobConfigTest, OriginsKeepTheLineOfEveryWrittenField) {
  const JobConfig c = load(kJob);
  EXPECT_EQ(c.origins.line("corpus", "path"), 15);
  EXPECT_EQ(c.origins.line("corpus", "margin"), 0);  // a default
  EXPECT_EQ(c.origins.line("source", "path", 0), 5);
  EXPECT_EQ(c.origins.line("source", "path", 1), 8);
  EXPECT_EQ(c.origins.line("source", "replicas", 1), 9);
  EXPECT_EQ(c.origins.where("distill", "top_k"), at(18).substr(0, at(18).size() - 2));
  EXPECT_EQ(c.origins.where("distill", "lambda"), "");
}

// --set section.key=value: parsed with the field's own type and checks, applied before the
// defaults that depend on other settings, recorded by to_toml(), and named in errors.
TEST_F(JobConfigTest, SetOverridesAreTypedCheckedAndWrittenBack) {
  JobParseOptions opt;
  opt.overrides = {"train.max_steps=10", "distill.lambda=0.5", "distill.fusion=avgCE", "source[1].replicas=4",
                   "optim.betas=[0.8, 0.99]", "job.name=other", "corpus.text_field=\"body\"", "optim.lr=2e-4"};
  const JobConfig c = load_job(write(kJob), opt);
  EXPECT_EQ(c.train.max_steps, 10);
  EXPECT_EQ(c.distill.lambda, 0.5);
  EXPECT_EQ(c.distill.fusion, DistillConfig::FusionMode::kAvgCE);
  EXPECT_EQ(c.sources[1].replicas, 4);
  EXPECT_EQ(c.topology.teacher_ranks, (std::vector<int64_t>{1, 4}));  // the default follows the override
  JobParseOptions staged;
  staged.overrides = {"source[1].stages=3"};
  EXPECT_EQ(load_job(write(kJob), staged).topology.teacher_ranks, (std::vector<int64_t>{1, 6}));  // replicas x stages
  EXPECT_EQ(c.optim.beta1, 0.8);
  EXPECT_EQ(c.optim.beta2, 0.99);
  EXPECT_EQ(c.optim.lr, 2e-4);                                         // over the file's 1e-5
  EXPECT_EQ(c.job.output_dir, (dir / "runs" / "other").string());     // so does output_dir
  EXPECT_EQ(c.corpus.text_field, "body");
  EXPECT_EQ(c.origins.where("train", "max_steps"), "--set train.max_steps=10");
  const std::string t = c.to_toml();
  EXPECT_HAS(t, "\nmax_steps = 10\n");
  EXPECT_HAS(t, "\nlambda = 0.5\n");
  EXPECT_HAS(t, "\nbetas = [0.8, 0.99]\n");
  const auto p = (dir / "copy.toml").string();
  std::ofstream(p) << t;
  EXPECT_TRUE(load_job(p).same_settings(c));
  // A path given on the command line is relative to the working directory.
  opt.overrides = {"cache.dir=some/cache"};
  EXPECT_EQ(load_job(write(kJob), opt).cache.dir, (fs::current_path() / "some" / "cache").string());
}

TEST_F(JobConfigTest, SetErrorsNameTheFlagAndTheField) {
  struct Case {
    std::string set;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"train.max_steps=ten", {"--set train.max_steps=ten: [train].max_steps: expected an integer, found a string (\"ten\")"}},
      {"train.max_steps=0", {"--set train.max_steps=0: [train].max_steps: must be at least 1, found 0"}},
      {"distill.top_k=2147483648", {"[distill].top_k: must be at most 64"}},
      {"distill.top_k=65", {"--set distill.top_k=65: [distill].top_k: must be at most 64, found 65"}},
      {"distill.lambda=1.5", {"--set distill.lambda=1.5: [distill].lambda", "[0, 1]"}},
      {"distill.fusion=MinCE", {"[distill].fusion: expected one of", "did you mean \"minCE\""}},
      {"optim.lr=inf", {"--set optim.lr=inf: [optim].lr", "finite"}},
      {"optim.betas=[0.9]", {"[optim].betas", "two floats"}},
      {"optim.warmup_ratoi=0.1", {"--set optim.warmup_ratoi=0.1: [optim].warmup_ratoi: unknown field", "'warmup_ratio'"}},
      {"train.lr=0.1", {"[train].lr: unknown field", "did you mean [optim].lr"}},
      {"optimizer.lr=1", {"--set optimizer.lr=1: unknown section 'optimizer' (did you mean optim?)"}},
      {"train.max_steps", {"--set train.max_steps: expected section.key=value"}},
      {"source.replicas=2", {"array of tables", "source[0].replicas"}},
      {"source[2].replicas=2", {"--set source[2].replicas=2: the job has 2 [[source]] tables"}},
      {"distill[0].top_k=2", {"single table"}},
      {"corpus.max_len=40", {"--set corpus.max_len=40: [corpus].margin, [corpus].max_len", "smaller"}},
      {"distill.fusion=none", {"--set distill.fusion=none: [distill].fusion, [distill].lambda"}},
      {"corpus.path=nowhere.jsonl", {"--set corpus.path=nowhere.jsonl: [corpus].path: path '", "does not exist"}},
  };
  for (const auto& c : cases) {
    JobParseOptions opt;
    opt.overrides = {c.set};
    std::string m;
    try {
      load_job(write(kJob), opt);
    } catch (const Error& e) {
      m = e.what();
    }
    EXPECT_FALSE(m.empty()) << c.set;
    for (const auto& p : c.parts) EXPECT_HAS(m, p);
  }
}

// jobs/README.md's field reference is the field table's own (`fusellm config --fields`), so the
// two cannot drift apart.
TEST(JobFields, ReadmeHoldsTheGeneratedFieldReference) {
  std::ifstream f(std::string(FUSELLM_SOURCE_DIR) + "/jobs/README.md");
  const std::string readme((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- begin: fusellm config --fields -->\n", end = "<!-- end: fusellm config --fields -->";
  const size_t b = readme.find(begin), e = readme.find(end);
  ASSERT_NE(b, std::string::npos) << "jobs/README.md has no " << begin;
  ASSERT_NE(e, std::string::npos) << "jobs/README.md has no " << end;
  EXPECT_EQ(readme.substr(b + begin.size(), e - b - begin.size()), job_fields_markdown())
      << "regenerate the block: fusellm config --fields";
}

// One entry per field: a key is never in its section twice.
TEST(JobFields, EveryFieldIsInTheTableOnce) {
  std::set<std::string> labels;
  for (const auto& s : job_sections())
    for (const auto& f : s.fields) EXPECT_TRUE(labels.insert(s.label(0, f.key)).second) << s.label(0, f.key);
  EXPECT_FALSE(labels.empty());
}

TEST(JobConfig, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("warmup_ratoi", "warmup_ratio"), 2u);
}

TEST(ShippedJobs, PaperJobHasThePapersSettings) {
  const JobConfig c = load_job(std::string(FUSELLM_SOURCE_DIR) + "/jobs/paper.toml", {.check_paths = false});
  ASSERT_EQ(c.sources.size(), 3u);
  EXPECT_EQ(c.sources[0].name, "llama2_7b");
  EXPECT_EQ(c.sources[1].name, "openllama_7b");
  EXPECT_EQ(c.sources[2].name, "mpt_7b");
  EXPECT_EQ(c.target.init_from, "llama2_7b");
  EXPECT_EQ(c.corpus.max_len, 2048);
  EXPECT_EQ(c.corpus.margin, 48);
  EXPECT_EQ(c.train.global_batch, 128);
  EXPECT_EQ(c.train.epochs, 1);
  EXPECT_FALSE(c.train.max_steps);
  EXPECT_EQ(c.train.dtype, DType::BF16);
  EXPECT_EQ(c.distill.lambda, 0.9);
  EXPECT_EQ(c.distill.fusion, DistillConfig::FusionMode::kMinCE);
  EXPECT_EQ(c.distill.alignment, align::AlignMethod::kMinED);
  EXPECT_EQ(c.distill.top_k, 10);
  EXPECT_EQ(c.optim.lr, 1e-5);
  EXPECT_EQ(c.optim.schedule, ScheduleKind::Cosine);
  EXPECT_EQ(c.optim.warmup_ratio, 0.008);
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.optim.weight_decay, 0.1);
  EXPECT_EQ(c.optim.clip, 1.0);
  EXPECT_EQ(c.global_batch_tokens(), 128 * 2048);
  // Its paths are placeholders: with path checks on, it is refused, naming the first one.
  try {
    load_job(std::string(FUSELLM_SOURCE_DIR) + "/jobs/paper.toml");
    FAIL() << "placeholder paths accepted";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "source[0].path");
    EXPECT_HAS(std::string(e.what()), "does not exist");
  }
}

TEST(ShippedJobs, TinyJobParses) {
  const std::string src = FUSELLM_SOURCE_DIR;
  const bool have_demo = fs::exists(src + "/examples/demo/llama/config.json") &&
                         fs::exists(src + "/examples/demo/neox/config.json") &&
                         fs::exists(src + "/examples/demo/corpus.jsonl");
  const JobConfig c = load_job(src + "/jobs/tiny.toml", {.check_paths = have_demo});
  EXPECT_EQ(c.target.init_from, "llama");
  EXPECT_EQ(c.sources.size(), 2u);
  EXPECT_EQ(c.sources[0].path, fs::path(src + "/examples/demo/llama").lexically_normal().string());
  EXPECT_TRUE(c.train.max_steps.has_value());
  EXPECT_LE(*c.train.max_steps, 50);
  if (!have_demo) GTEST_SKIP() << "examples/demo checkpoints or corpus not there yet: paths not checked";
}
