// The checkpoint store on its own (no trainer): a StateDict's values of every kind, texts and
// nested tensor groups round-trip bit for bit; a checkpoint of several files (one per rank, as
// the distributed job writes them) is committed with one manifest and verified file by file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "fusellm/ckpt/checkpoint_store.hpp"
#include "fusellm/ckpt/state_file.hpp"
#include "fusellm/core/error.hpp"
#include "error_of.hpp"
#include "flip_bit.hpp"

using namespace fusellm;
namespace fs = std::filesystem;
using fusellm::testing::error_of;

namespace {

class StateStoreTest : public ::testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("fusellm_state_store_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
};

// A rank's state: its step, its own tensors and values.
StateDictRef rank_state(int64_t step, int rank, const std::vector<float>& data) {
  StateDictRef s;
  s.values.set("step", step);
  s.values.set("rank", int64_t(rank));
  s.group("optim/m").push_back({"flat", {int64_t(data.size())}, data});
  return s;
}

}  // namespace

TEST_F(StateStoreTest, ValuesTextsAndGroupsRoundTripBitForBit) {
  const std::vector<float> a{1.f, -0.f, std::numeric_limits<float>::denorm_min(), 3.5f, 7.f, 8.f};
  const std::vector<float> b{42.f};
  StateDictRef s;
  s.values.set("step", int64_t(9));
  s.values.set("big", std::numeric_limits<uint64_t>::max());
  s.values.set("neg", int64_t(-5));
  s.values.set("tiny", std::numeric_limits<double>::denorm_min());
  s.values.set("minus_zero", -0.0);
  s.values.set("name", std::string("cosine"));
  s.values.set("empty", std::string());
  s.group("model").push_back({"w", {2, 3}, a});
  s.group("model").push_back({"a_bias", {1}, b});  // creation order, not name order, comes back
  s.group("shard/0/m").push_back({"x", {}, std::span<const float>(b)});
  s.group("empty");
  s.texts = {{"job_toml", "[job]\nname = \"x\"\n"}, {"blank", ""}};
  const std::string path = (dir / "s.h5").string();
  fs::create_directories(dir);
  write_state_file(path, s);

  const StateDict back = read_state_file(path);
  EXPECT_EQ(back.values, s.values);
  EXPECT_EQ(std::bit_cast<uint64_t>(back.values.f64("minus_zero", "")), std::bit_cast<uint64_t>(-0.0));
  ASSERT_NE(back.find_group("model"), nullptr);
  const auto& m = *back.find_group("model");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "w");
  EXPECT_EQ(m[0].tensor.shape(), (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(m[0].tensor.data(), a.data(), a.size() * 4), 0);
  EXPECT_EQ(m[1].name, "a_bias");
  ASSERT_NE(back.find_group("shard/0/m"), nullptr);
  EXPECT_EQ(back.find_group("shard/0/m")->at(0).tensor.shape(), Shape{});
  ASSERT_NE(back.find_group("empty"), nullptr);
  EXPECT_TRUE(back.find_group("empty")->empty());
  EXPECT_EQ(back.texts, s.texts);
}

TEST_F(StateStoreTest, ValueOfAnotherTypeOrMissingIsAnErrorNamingIt) {
  KeyValues kv;
  kv.set("step", int64_t(3));
  EXPECT_NE(error_of([&] { kv.u64("step", "f.h5"); }).find("f.h5: value 'step' is an int64, not a uint64"),
            std::string::npos);
  EXPECT_NE(error_of([&] { kv.str("kind", "f.h5"); }).find("value 'kind' is missing"), std::string::npos);
  kv.set("step", int64_t(4));  // replaced in place
  EXPECT_EQ(kv.entries().size(), 1u);
  EXPECT_EQ(kv.i64("step", ""), 4);
}

TEST_F(StateStoreTest, RefusesWhatCouldNotBeReadBack) {
  fs::create_directories(dir);
  const std::vector<float> v{1.f};
  auto refused = [&](StateDictRef s, const std::string& part) {
    const std::string p = (dir / "bad.h5").string();
    fs::remove(p);
    const std::string e = error_of([&] { write_state_file(p, s); });
    EXPECT_NE(e.find(part), std::string::npos) << e;
  };
  StateDictRef s;
  s.values.set("state_keys", int64_t(1));
  refused(s, "value name 'state_keys' cannot be stored");
  s = {};
  s.values.set("a;b", int64_t(1));
  refused(s, "value name 'a;b'");
  s = {};
  s.group("meta").push_back({"x", {1}, v});
  refused(s, "reserved for texts");
  s = {};
  s.group("model").push_back({"x", {2}, v});
  refused(s, "has 1 values for shape");
}

TEST_F(StateStoreTest, OneCheckpointOfSeveralFilesOneManifest) {
  const CheckpointStore store(dir.string(), 0);
  const std::vector<float> r0{1.f, 2.f}, r1{3.f, 4.f, 5.f};
  // As the ranks of a distributed job do: rank 0 begins, every rank writes its file into the
  // same temporary directory, rank 0 commits with every rank's manifest line.
  const PendingCheckpoint p = store.begin(4, "job17");
  const PendingCheckpoint q = store.join(4, "job17");
  EXPECT_EQ(p.dir(), q.dir());
  const DigestRecord d0 = p.write("rank-0.h5", rank_state(4, 0, r0));
  const DigestRecord d1 = q.write("rank-1.h5", rank_state(4, 1, r1));
  EXPECT_FALSE(fs::exists(dir / "step-4"));  // nothing in place before the commit
  const std::string path = store.commit(p, {d0, d1});
  EXPECT_EQ(path, (dir / "step-4").string());
  EXPECT_FALSE(fs::exists(p.dir()));

  std::ifstream in(dir / "step-4" / "COMPLETE");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "fusellm-checkpoint\nstep 4\n" + digest_line("rank-0.h5", {d0.size, *d0.xxh64}) + "\n" +
                            digest_line("rank-1.h5", {d1.size, *d1.xxh64}) + "\n");

  const auto c = store.load_latest();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 4);
  ASSERT_EQ(c->files.size(), 2u);
  EXPECT_EQ(c->file("rank-1.h5").values.i64("rank", ""), 1);
  const auto& t = c->file("rank-1.h5").find_group("optim/m")->at(0).tensor;
  EXPECT_EQ(std::vector<float>(t.data(), t.data() + t.size()), r1);
  EXPECT_NE(error_of([&] { c->file("rank-2.h5"); }).find("has no file rank-2.h5"), std::string::npos);

  // Every file is verified: damage in the second one refuses the step, naming that file.
  fusellm::testing::flip_bit(dir / "step-4" / "rank-1.h5", 100, 2);
  const std::string e = error_of([&] { CheckpointStore::load((dir / "step-4").string()); });
  EXPECT_NE(e.find("rank-1.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("fails its checksum"), std::string::npos) << e;
  // ... and a listed file that is gone as well.
  fs::remove(dir / "step-4" / "rank-1.h5");
  EXPECT_NE(error_of([&] { CheckpointStore::load((dir / "step-4").string()); }).find("rank-1.h5"), std::string::npos);
}

TEST_F(StateStoreTest, AFileOfAnotherStepOrAnUnwrittenOneIsRefused) {
  const CheckpointStore store(dir.string(), 0);
  const std::vector<float> r{1.f};
  const PendingCheckpoint p = store.begin(5);
  EXPECT_NE(error_of([&] { p.write("rank-0.h5", rank_state(6, 0, r)); }).find("the checkpoint is step 5, the file says step 6"),
            std::string::npos);
  const DigestRecord d = p.write("rank-0.h5", rank_state(5, 0, r));
  const std::string e = error_of([&] { store.commit(p, {d, DigestRecord{"rank-1.h5", 10, 0}}); });
  EXPECT_NE(e.find("rank-1.h5 is listed but was not written"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(p.dir()));  // the failed commit removed its temporary directory
  EXPECT_TRUE(store.complete_steps().empty());
}

TEST_F(StateStoreTest, ACallerRefusingTheNewestFallsBackToAnOlderOne) {
  const CheckpointStore store(dir.string(), 0);
  const std::vector<float> r{1.f};
  store.save(rank_state(1, 0, r));
  StateDictRef s = rank_state(2, 0, r);
  s.values.set("rank", std::string("not a number"));
  store.save(s);
  int64_t used = -1;
  ASSERT_TRUE(store.load_latest([&](LoadedCheckpoint&& c) {
    c.file(kCheckpointStateFile).values.i64("rank", c.path);  // refuses step 2
    used = c.step;
    EXPECT_EQ(c.warnings.size(), 1u);
  }));
  EXPECT_EQ(used, 1);
}
