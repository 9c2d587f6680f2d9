// Distribution cache (train/distribution_cache.hpp): round trip (ids exact, fp16 probs within
// 1e-3), chunked + compressed datasets, resume after a simulated interruption equals an
// uninterrupted run, provenance mismatches refused naming the cache, the job file:line and field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <Kokkos_Core.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <limits>
#include <random>

#include "fusellm/io/file_checksum.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/io/hdf5_handle.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "error_of.hpp"
#include "flip_bit.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
std::string temp_path(const std::string& tag) {
  const auto p = fs::temp_directory_path() /
                 ("fusellm_cache_" + std::to_string(::getpid()) + "_" + tag + ".h5");
  fs::remove(p);
  fs::remove(p.string() + ".xxh64");  // the checksum sidecar a writer leaves beside it
  return p.string();
}

CacheProvenance prov(int64_t k = 4) {
  CacheProvenance p;
  p.teacher = "neox";
  p.teacher_path = "/m/neox";
  p.teacher_tokenizer = "/m/neox";
  p.teacher_tokenizer_fingerprint = "aaaa";
  p.target_tokenizer = "/m/llama";
  p.target_tokenizer_fingerprint = "bbbb";
  p.segmenter = "aaaa,bbbb,max=240";
  p.max_tokens = 240;
  p.corpus = "/c.jsonl";
  p.k = k;
  p.temperature = 1.0;
  p.alignment = "mined";
  p.version = fusellm_version();
  return p;
}

std::vector<TeacherRows> make_segments(int64_t n, int64_t k, uint32_t seed, int64_t first_id = 0) {
  std::mt19937 rng(seed);
  std::vector<TeacherRows> out;
  for (int64_t s = 0; s < n; ++s) {
    TeacherRows c;
    c.k = k;
    c.segment = first_id + s;
    c.doc = (first_id + s) / 2;
    c.piece = int32_t((first_id + s) % 2);
    c.ce = std::uniform_real_distribution<double>(0.5, 8.0)(rng);
    c.ce_tokens = int64_t(rng() % 50);
    c.bytes = int64_t(rng() % 500);
    const int64_t T = 1 + int64_t(rng() % 37);
    for (int64_t t = 0; t < T; ++t) {
      c.target_ids.push_back(int32_t(rng() % 32000));
      c.status.push_back(uint8_t(rng() % 14));
      // A sub-distribution, as teach writes: probabilities in [0, 1] summing to at most 1.
      std::vector<float> row;
      float sum = 0;
      for (int64_t j = 0; j < k; ++j) {
        const bool empty = rng() % 7 == 0;
        c.ids.push_back(empty ? -1 : int32_t(rng() % 32000));
        row.push_back(empty ? 0.f : std::uniform_real_distribution<float>(0.f, 1.f)(rng));
        sum += row.back();
      }
      for (float p : row) c.probs.push_back(f32_to_f16(sum > 0 ? p / sum : 0.f));
    }
    out.push_back(std::move(c));
  }
  return out;
}

void expect_same(const TeacherRows& w, const TeacherRows& r, int64_t k) {
  EXPECT_EQ(r.segment, w.segment);
  EXPECT_EQ(r.doc, w.doc);
  EXPECT_EQ(r.piece, w.piece);
  EXPECT_EQ(r.ce, w.ce);
  EXPECT_EQ(r.ce_tokens, w.ce_tokens);
  EXPECT_EQ(r.bytes, w.bytes);
  EXPECT_EQ(r.target_ids, w.target_ids);
  EXPECT_EQ(r.status, w.status);
  ASSERT_EQ(r.rows(), w.rows());
  ASSERT_EQ(r.k, k);
  for (int64_t t = 0; t < w.rows(); ++t)
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(r.id(t, j), w.id(t, j));
      EXPECT_NEAR(r.prob(t, j), w.prob(t, j), 1e-3);
    }
}

using fusellm::testing::error_of;

using fusellm::testing::flip_bit;

// A complete cache of `n` segments written by the writer (which closes it: the sidecar is written).
std::vector<TeacherRows> write_cache(const std::string& path, int64_t n, int64_t k, uint32_t seed) {
  const auto segs = make_segments(n, k, seed);
  DistributionCacheWriter w(path, prov(k));
  w.append(segs);
  w.finish(n, 0, 0);
  return segs;
}

// Reads everything a train run reads from a cache.
void read_all_segments(const std::string& path, int64_t vocab = 32000) {
  (void)DistributionCacheReader::read_provenance(path);
  DistributionCacheReader r(path, vocab);
  for (int64_t i = 0; i < r.segments(); ++i) (void)r.read_index(i);
}
}  // namespace

TEST(DistributionCache, RoundTrip) {
  const std::string path = temp_path("roundtrip");
  const int64_t k = 4;
  const auto segs = make_segments(50, k, 1);
  {
    DistributionCacheWriter w(path, prov(k));
    EXPECT_FALSE(w.resumed());
    for (size_t b = 0; b < segs.size(); b += 16)
      w.append(std::vector<TeacherRows>(segs.begin() + b, segs.begin() + std::min(segs.size(), b + 16)));
    EXPECT_EQ(w.segments_done(), 50);
    w.finish(25, 3, 1);
  }
  DistributionCacheReader r(path);
  EXPECT_TRUE(r.complete());
  EXPECT_EQ(r.segments(), 50);
  EXPECT_EQ(r.k(), k);
  EXPECT_EQ(r.provenance().teacher, "neox");
  EXPECT_EQ(r.provenance().target_tokenizer_fingerprint, "bbbb");
  EXPECT_EQ(r.provenance().alignment, "mined");
  for (const auto& s : segs) expect_same(s, r.read(s.segment), k);
  const std::string e = error_of([&] { r.read(77); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("segment 77"), std::string::npos) << e;

  // Chunked and deflate-compressed, probs marked as fp16 bits.
  h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  for (const char* name : {"ids", "probs", "ce", "row_offsets"}) {
    h5::Dataset d(H5Dopen2(f, name, H5P_DEFAULT));
    h5::PropList pl(H5Dget_create_plist(d));
    EXPECT_EQ(H5Pget_layout(pl), H5D_CHUNKED) << name;
    bool deflate = false;
    for (int i = 0; i < H5Pget_nfilters(pl); ++i) {
      unsigned flags = 0;
      size_t n = 0;
      if (H5Pget_filter2(pl, unsigned(i), &flags, &n, nullptr, 0, nullptr, nullptr) == H5Z_FILTER_DEFLATE)
        deflate = true;
    }
    EXPECT_TRUE(deflate) << name;
  }
  fs::remove(path);
}

// A segment of one source token has no scored token: teach writes CE +Inf over 0 tokens (reward
// 0, SegmentScores::ce), and the reader takes it back; +Inf over scored tokens is damage.
TEST(DistributionCache, SegmentWithNoScoredTokenRoundTrips) {
  const int64_t k = 2;
  for (const bool damaged : {false, true}) {
    const std::string path = temp_path(damaged ? "inf_damaged" : "inf_no_tokens");
    auto segs = make_segments(3, k, 5);
    segs[1].ce = std::numeric_limits<double>::infinity();
    segs[1].ce_tokens = damaged ? 4 : 0;
    {
      DistributionCacheWriter w(path, prov(k));
      w.append(segs);
      w.finish(3, 0, 0);
    }
    if (damaged) {
      const std::string e = error_of([&] { DistributionCacheReader r(path); });
      EXPECT_NE(e.find("segment 1: CE inf over 4 tokens"), std::string::npos) << e;
    } else {
      DistributionCacheReader r(path);
      for (const auto& s : segs) expect_same(s, r.read(s.segment), k);
    }
    fs::remove(path);
  }
}

TEST(DistributionCache, ResumeAfterInterruptionEqualsUninterrupted) {
  const int64_t k = 3;
  const auto segs = make_segments(40, k, 7);
  auto batch = [&](size_t a, size_t b) { return std::vector<TeacherRows>(segs.begin() + a, segs.begin() + b); };
  const std::string whole = temp_path("whole"), cut = temp_path("cut");
  {
    DistributionCacheWriter w(whole, prov(k));
    w.append(batch(0, 10));
    w.append(batch(10, 20));
    w.append(batch(20, 30));
    w.append(batch(30, 40));
  }
  {
    DistributionCacheWriter w(cut, prov(k));
    w.append(batch(0, 10));
    w.append(batch(10, 20));
    w.append(batch(20, 30), /*commit=*/false);  // killed after writing, before committing
  }
  {
    DistributionCacheReader r(cut);  // a reader sees only the committed part
    EXPECT_EQ(r.segments(), 20);
    EXPECT_FALSE(r.complete());
  }
  {
    DistributionCacheWriter w(cut, prov(k));
    EXPECT_TRUE(w.resumed());
    EXPECT_EQ(w.segments_done(), 20);
    w.append(batch(20, 30));
    w.append(batch(30, 40));
  }
  DistributionCacheReader a(whole), b(cut);
  ASSERT_EQ(a.segments(), b.segments());
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.segment_ids(), b.segment_ids());
  for (int64_t i = 0; i < a.segments(); ++i) {
    const auto x = a.read_index(i), y = b.read_index(i);
    EXPECT_EQ(x.target_ids, y.target_ids);
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_EQ(x.id(t, j), y.id(t, j));
        EXPECT_EQ(x.prob(t, j), y.prob(t, j));
      }
    expect_same(segs[size_t(i)], y, k);
  }
  fs::remove(whole);
  fs::remove(cut);
}

TEST(DistributionCache, ProvenanceMismatchRefused) {
  const std::string path = temp_path("prov");
  { DistributionCacheWriter w(path, prov(4)); }
  // The field origins a parse of this job keeps (JobConfig::origins):
  //   [job]\nname = "x"\n\n[[source]]\nname = "llama"\npath = "a"\n\n[[source]]\nname = "neox"\n
  //   tokenizer = "t"\n\n[distill]\n# k\ntop_k = 5\nalignment = "em"\n
  config::FieldOrigins job;
  job.file = "/jobs/tiny.toml";
  job.record("job", 0, "name", {2, ""});
  job.record("source", 0, "name", {5, ""});
  job.record("source", 0, "path", {6, ""});
  job.record("source", 1, "name", {9, ""});
  job.record("source", 1, "tokenizer", {10, ""});
  job.record("distill", 0, "top_k", {14, ""});
  job.record("distill", 0, "alignment", {15, ""});
  std::string e = error_of([&] { DistributionCacheWriter w(path, prov(5), &job); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("/jobs/tiny.toml:14"), std::string::npos) << e;
  EXPECT_NE(e.find("[distill].top_k"), std::string::npos) << e;
  auto p = prov(4);
  p.alignment = "em";
  e = error_of([&] { DistributionCacheWriter w(path, p, &job); });
  EXPECT_NE(e.find("/jobs/tiny.toml:15"), std::string::npos) << e;
  EXPECT_NE(e.find("[distill].alignment"), std::string::npos) << e;
  p = prov(4);
  p.target_tokenizer_fingerprint = "cccc";
  e = error_of([&] { DistributionCacheWriter w(path, p, &job); });
  EXPECT_NE(e.find("target_tokenizer_fingerprint"), std::string::npos) << e;
  EXPECT_NE(e.find("[target].tokenizer"), std::string::npos) << e;
  p = prov(4);
  p.teacher_index = 1;
  p.teacher_tokenizer_fingerprint = "dddd";
  e = error_of([&] { DistributionCacheWriter w(path, p, &job); });
  EXPECT_NE(e.find("/jobs/tiny.toml:10"), std::string::npos) << e;  // the second [[source]]'s tokenizer
  // The reader's check does the same.
  DistributionCacheReader r(path);
  e = error_of([&] { r.check(prov(5), job); });
  EXPECT_NE(e.find("[distill].top_k"), std::string::npos) << e;
  EXPECT_EQ(error_of([&] { r.check(prov(4), job); }), "");
  // Not a cache at all.
  const std::string junk = temp_path("junk");
  { std::ofstream(junk) << "not hdf5"; }
  EXPECT_NE(error_of([&] { DistributionCacheWriter w(junk, prov(4)); }).find(junk), std::string::npos);
  fs::remove(junk);
  fs::remove(path);
}

TEST(DistributionCache, RandomBitFlipsAreRefusedNamingTheCacheBeforeHdf5ReadsIt) {
  // A flipped bit in HDF5's metadata could crash libhdf5; one in the values was read silently. Every
  // flip, anywhere in the file, must be refused naming the cache, by the reader and by a teach run
  // continuing it. The reads run in this process, so a crash fails the test.
  const std::string path = temp_path("bitflips");
  const int64_t k = 4;
  write_cache(path, 30, k, 3);
  ASSERT_TRUE(fs::exists(path + ".xxh64"));
  const std::string pristine = path + ".pristine";
  fs::copy_file(path, pristine, fs::copy_options::overwrite_existing);
  const uint64_t size = fs::file_size(path);
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 200; ++trial) {
    // Half the trials in the first 4 KiB (superblock, root object header, B-trees: metadata), half anywhere.
    const uint64_t pos = trial % 2 == 0 ? rng() % std::min<uint64_t>(size, 4096) : rng() % size;
    const int bit = int(rng() % 8);
    fs::copy_file(pristine, path, fs::copy_options::overwrite_existing);
    flip_bit(path, pos, bit);
    SCOPED_TRACE(::testing::Message() << "trial " << trial << ": bit " << bit << " of byte " << pos);
    std::string e = error_of([&] { read_all_segments(path); });
    EXPECT_NE(e.find(path + ": fails its checksum"), std::string::npos) << e;
    e = error_of([&] { DistributionCacheWriter w(path, prov(k)); });
    EXPECT_NE(e.find(path + ": fails its checksum"), std::string::npos) << e;
    ASSERT_TRUE(fs::exists(path + ".xxh64"));  // a refused writer leaves the sidecar as it was
  }
  fs::copy_file(pristine, path, fs::copy_options::overwrite_existing);
  EXPECT_EQ(error_of([&] { read_all_segments(path); }), "");
  fs::remove(pristine);
  fs::remove(path);
  fs::remove(path + ".xxh64");
}

TEST(DistributionCache, SidecarFollowsEveryWriterAndLegacyCachesStillLoad) {
  const std::string path = temp_path("sidecar");
  const int64_t k = 3;
  const auto segs = make_segments(20, k, 5);
  {
    DistributionCacheWriter w(path, prov(k));
    w.append(std::vector<TeacherRows>(segs.begin(), segs.begin() + 10));
  }
  EXPECT_EQ(verify_sidecar(path), SidecarCheck::kVerified);  // an unfinished cache has one too (train --limit)
  {
    DistributionCacheWriter w(path, prov(k));  // continues: the file changes, the sidecar follows
    EXPECT_FALSE(fs::exists(path + ".xxh64"));
    w.append(std::vector<TeacherRows>(segs.begin() + 10, segs.end()));
  }
  EXPECT_EQ(verify_sidecar(path), SidecarCheck::kVerified);
  EXPECT_EQ(error_of([&] { read_all_segments(path); }), "");
  // A cache of an older fusellm (no sidecar) is read unverified.
  fs::remove(path + ".xxh64");
  EXPECT_EQ(error_of([&] { read_all_segments(path); }), "");
  { DistributionCacheWriter w(path, prov(k)); }  // and gets one from the next teach run
  EXPECT_EQ(verify_sidecar(path), SidecarCheck::kVerified);
  fs::remove(path);
  fs::remove(path + ".xxh64");
}

TEST(DistributionCache, SecondWriterIsRefusedNamingTheHolder) {
  const std::string path = temp_path("twowriters");
  DistributionCacheWriter first(path, prov(4));
  const std::string e = error_of([&] { DistributionCacheWriter second(path, prov(4)); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("in use by another fusellm run"), std::string::npos) << e;
  EXPECT_NE(e.find("pid " + std::to_string(::getpid())), std::string::npos) << e;
  // A reader is refused while the cache is being written, too.
  EXPECT_NE(error_of([&] { DistributionCacheReader r(path); }).find("in use"), std::string::npos);
  first.close();
  EXPECT_EQ(error_of([&] { DistributionCacheWriter again(path, prov(4)); }), "");
  fs::remove(path);
  fs::remove(path + ".xxh64");
}

TEST(DistributionCache, ValuesOutsideWhatTheWriterGuaranteesAreRefused) {
  // A crafted cache (probability 65504, the largest fp16) was used as it was. The reader checks
  // what teach guarantees and names the cache, the segment and the row.
  const int64_t k = 4;
  struct Case {
    const char* what;
    std::function<void(TeacherRows&)> craft;
  };
  const std::vector<Case> cases = {
      {"outside [0, 1]", [](TeacherRows& c) { c.probs[2 * 4 + 1] = f32_to_f16(65504.f); }},
      {"outside [0, 1]", [](TeacherRows& c) { c.probs[2 * 4 + 1] = f32_to_f16(-0.25f); }},
      {"outside [0, 1]", [](TeacherRows& c) { c.probs[2 * 4 + 1] = f32_to_f16(std::nanf("")); }},
      {"sum to", [](TeacherRows& c) {
         for (int j = 0; j < 4; ++j) c.ids[2 * 4 + j] = j, c.probs[2 * 4 + j] = f32_to_f16(0.3f);
       }},
      {"outside the target vocabulary", [](TeacherRows& c) { c.ids[2 * 4 + 3] = 32000; }},
      {"outside the target vocabulary", [](TeacherRows& c) { c.ids[2 * 4 + 3] = -2; }},
      {"outside the target vocabulary", [](TeacherRows& c) { c.target_ids[2] = 40000; }},
  };
  for (const auto& cs : cases) {
    const std::string path = temp_path("crafted");
    auto segs = make_segments(6, k, 11);
    for (auto& s : segs)
      while (s.rows() < 3) {  // row 2 must exist
        s.target_ids.push_back(1), s.status.push_back(0);
        for (int j = 0; j < k; ++j) s.ids.push_back(-1), s.probs.push_back(f32_to_f16(0.f));
      }
    cs.craft(segs[4]);
    {
      DistributionCacheWriter w(path, prov(k));
      w.append(segs);
    }
    const std::string e = error_of([&] { read_all_segments(path, 32000); });
    EXPECT_NE(e.find(path + ": segment 4, row 2: "), std::string::npos) << e;
    EXPECT_NE(e.find(cs.what), std::string::npos) << e;
    fs::remove(path);
    fs::remove(path + ".xxh64");
  }
  // The bound on a row's sum admits fp16 rounding: k probabilities that sum to 1 in fp32.
  const std::string path = temp_path("sum1");
  auto segs = make_segments(3, 7, 12);
  for (auto& s : segs)
    for (int64_t t = 0; t < s.rows(); ++t)
      for (int j = 0; j < 7; ++j) s.set(t, j, j, 1.f / 7.f);
  {
    DistributionCacheWriter w(path, prov(7));
    w.append(segs);
  }
  EXPECT_EQ(error_of([&] { read_all_segments(path, 32000); }), "");
  fs::remove(path);
  fs::remove(path + ".xxh64");
}


// A cache written by fusellm before the rows type (issue 10; tests/reference/gen_cache_v1.py) reads,
// through the RowsSource interface, to exactly the values h5dump finds in it.
TEST(DistributionCache, CacheOfTheOldCodeReadsToTheBit) {
  const fs::path fixture = fs::path(FUSELLM_SOURCE_DIR) / "tests/fixtures/cache_v1";
  // A copy (the reader makes <path>.lock beside it) of the same name (the sidecar names it).
  const fs::path dir = fs::temp_directory_path() / ("fusellm_cache_v1_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "neox.h5").string();
  fs::copy_file(fixture / "neox.h5", path);
  fs::copy_file(fixture / "neox.h5.xxh64", path + ".xxh64");
  const auto expected = nlohmann::json::parse(std::ifstream(fixture / "expected.json"));
  {
    DistributionCacheReader reader(path, 32000);
    EXPECT_EQ(verify_sidecar(path), SidecarCheck::kVerified);
    EXPECT_EQ(reader.provenance().teacher, "neox");
    EXPECT_EQ(reader.k(), expected["k"].get<int64_t>());
    EXPECT_EQ(reader.complete(), expected["complete"].get<bool>());
    ASSERT_EQ(reader.segments(), int64_t(expected["segments"].size()));
    RowsSource& source = reader;
    for (const auto& e : expected["segments"]) {
      const TeacherRows r = source.rows(e["segment"].get<int64_t>());
      EXPECT_EQ(r.segment, e["segment"].get<int64_t>());
      EXPECT_EQ(r.doc, e["doc"].get<int64_t>());
      EXPECT_EQ(r.piece, e["piece"].get<int32_t>());
      EXPECT_EQ(r.ce, e["ce"].get<double>());
      EXPECT_EQ(r.ce_tokens, e["ce_tokens"].get<int64_t>());
      EXPECT_EQ(r.bytes, e["bytes"].get<int64_t>());
      EXPECT_EQ(r.k, 4);
      EXPECT_EQ(r.target_ids, e["target_ids"].get<std::vector<int32_t>>());
      EXPECT_EQ(r.status, e["status"].get<std::vector<uint8_t>>());
      EXPECT_EQ(r.ids, e["ids"].get<std::vector<int32_t>>());
      EXPECT_EQ(r.probs, e["probs_fp16_bits"].get<std::vector<uint16_t>>());
    }
  }
  fs::remove_all(dir);
}

