// fusellm teach end to end on the demo checkpoints (examples/demo/{llama,neox}): segments within
// the bound, cache rows aligned to the target tokenization, distributions over the target
// vocabulary, resume after --limit equals one uninterrupted run, job/cache mismatches refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <Kokkos_Core.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/fusion/topk_softmax.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/teach/teach.hpp"
#include "fusellm/teach/teacher.hpp"
#include "error_of.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
const std::string kDemo = FUSELLM_SOURCE_DIR "/examples/demo";

bool demo_present() {
  return fs::exists(kDemo + "/llama/model.safetensors") && fs::exists(kDemo + "/neox/model.safetensors") &&
         fs::exists(kDemo + "/corpus.jsonl");
}

struct TeachDir {
  fs::path dir;
  std::string corpus;
  explicit TeachDir(const std::string& tag) {
    dir = fs::temp_directory_path() / ("fusellm_teach_" + std::to_string(::getpid()) + "_" + tag);
    fs::remove_all(dir);
    fs::create_directories(dir);
    corpus = (dir / "corpus.jsonl").string();
    std::ofstream f(corpus, std::ios::binary);
    const auto docs = read_corpus(kDemo + "/corpus.jsonl");
    for (size_t i = 0; i < 6; ++i) {
      f << nlohmann::json{{"text", docs[i].text.substr(0, 900)}}.dump() << "\n";
      if (i == 1) f << "{\"text\": \"   \\n \"}\n";                   // skipped, counted
      if (i == 3) f << "{\"text\": \"caf\xC3 au lait, na\xFFve.\"}\n";  // replaced, counted
    }
  }
  ~TeachDir() { fs::remove_all(dir); }
  // A job with absolute paths; `extra` is appended to [distill].
  // The cache dir is cache_<cache> (default: cache_<name>), so two jobs can share one.
  std::string job(const std::string& name, const std::string& distill_extra = "", int64_t top_k = 5,
                  std::string cache = "") const {
    if (cache.empty()) cache = name;
    const std::string p = (dir / (name + ".toml")).string();
    std::ofstream(p) << "[job]\nname = \"t\"\noutput_dir = \"" << (dir / "run").string() << "\"\n\n"
                     << "[[source]]\nname = \"llama\"\npath = \"" << kDemo << "/llama\"\n\n"
                     << "[[source]]\nname = \"neox\"\npath = \"" << kDemo << "/neox\"\n\n"
                     << "[target]\ninit_from = \"llama\"\n\n"
                     << "[corpus]\npath = \"" << corpus << "\"\nmax_len = 96\nmargin = 16\n\n"
                     << "[distill]\ntop_k = " << top_k << "\nalignment = \"mined\"\n" << distill_extra << "\n"
                     << "[cache]\ndir = \"" << (dir / ("cache_" + cache)).string() << "\"\n";
    return p;
  }
};

using fusellm::testing::error_of;

TeachResult run(const std::string& job, const std::string& source, int64_t limit = -1) {
  TeachOptions o;
  o.source = source;
  o.limit = limit;
  o.batch_segments = 3;
  o.progress = false;
  return teach(load_job(job), o);
}
}  // namespace

// A top_k beyond what the alignment holds (64; the source's vocabulary is 8192) is refused naming
// the job's file and the field, before the cache file exists (it failed inside HDF5 once, later in
// the first alignment, after the model had loaded).
TEST(Teach, TopKBeyondTheBoundIsRefusedBeforeTheCache) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("topk_vocab");
  const std::string job = s.job("a", "", 8193);
  const std::string e = error_of([&] { run(job, "neox"); });
  EXPECT_NE(e.find(job), std::string::npos) << e;
  EXPECT_NE(e.find("[distill].top_k: must be at most 64, found 8193"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(s.dir / "cache_a" / "neox.h5"));
}

TEST(Teach, EndToEndNeoxIntoLlama) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("e2e");
  const std::string job = s.job("a");
  const TeachResult r = run(job, "neox");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.corpus.documents, 7);
  EXPECT_EQ(r.corpus.skipped_blank, 1);
  EXPECT_EQ(r.corpus.invalid_utf8_docs, 1);
  EXPECT_GT(r.segments, 7);  // 900-byte documents do not fit 80 tokens
  EXPECT_GT(r.split_documents, 0);
  EXPECT_GT(r.kept_rows, r.target_tokens / 4);

  const auto llama = Tokenizer::load(kDemo + "/llama");
  const auto neox = Tokenizer::load(kDemo + "/neox");
  auto reader = std::make_unique<DistributionCacheReader>(r.cache_path);
  const DistributionCacheReader& c = *reader;
  EXPECT_TRUE(c.complete());
  EXPECT_EQ(c.segments(), r.segments);
  EXPECT_EQ(c.k(), 5);
  EXPECT_EQ(c.provenance().teacher, "neox");
  EXPECT_EQ(c.provenance().alignment, "mined");
  EXPECT_EQ(c.provenance().max_tokens, 80);
  EXPECT_TRUE(fs::exists(vocab_map_path_for(load_job(job), "neox")));
  // Rebuild the segments' texts from the documents: rows follow the target tokenization.
  int64_t rows = 0;
  for (int64_t i = 0; i < c.segments(); ++i) {
    const TeacherRows seg = c.read_index(i);
    EXPECT_EQ(seg.segment, i);
    EXPECT_LE(int64_t(seg.target_ids.size()), 80);
    EXPECT_GT(seg.bytes, 0);
    EXPECT_TRUE(std::isfinite(seg.ce) || seg.ce_tokens == 0);
    if (seg.ce_tokens > 0) {
      EXPECT_GT(seg.ce, 0.0);
      EXPECT_LT(seg.ce, 12.0);
    }
    for (int64_t t = 0; t < seg.rows(); ++t) {
      double sum = 0;
      for (int64_t j = 0; j < 5; ++j) {
        const int32_t id = seg.id(t, j);
        EXPECT_GE(id, -1);
        EXPECT_LT(id, int32_t(llama->vocab_size()));
        sum += seg.prob(t, j);
      }
      if (seg.id(t, 0) >= 0) EXPECT_NEAR(sum, 1.0, 5e-3);
    }
    rows += seg.rows();
  }
  EXPECT_EQ(rows, r.target_tokens);
  reader.reset();
  // A second run finds the cache complete and does nothing.
  const TeachResult again = run(job, "neox");
  EXPECT_EQ(again.new_segments, 0);
  EXPECT_EQ(again.segments, r.segments);
  // The check `train` will make: neox's cache is fine, llama has none yet.
  const std::string e = error_of([&] { check_offline_caches(load_job(job)); });
  EXPECT_NE(e.find("'llama'"), std::string::npos) << e;
  EXPECT_NE(e.find(job), std::string::npos) << e;
}

// Single-teacher KD: a source with the target's own tokenizer needs no alignment; its cache rows
// are the source's top-k on the target tokens, every position kept.
TEST(Teach, SameTokenizerAsTheTargetIsTheIdentity) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("identity");
  const TeachResult r = run(s.job("a"), "llama", 4);
  EXPECT_EQ(r.fallback_rows, 0);
  EXPECT_EQ(r.kept_rows, r.target_tokens);
  const auto model = CausalLM::load(kDemo + "/llama");
  const int64_t V = model->info().vocab_size;
  fusion::TopkParams tp;
  tp.k = 5;
  DistributionCacheReader c(r.cache_path);
  ASSERT_EQ(c.segments(), 4);
  for (int64_t i = 0; i < c.segments(); ++i) {
    const TeacherRows seg = c.read_index(i);
    const int64_t T = int64_t(seg.target_ids.size());
    const Tensor logits = model->forward(seg.target_ids);
    const fusion::HostRows ref = fusion::topk_softmax(logits.span(), T, V, tp, "ref");
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(seg.status[size_t(t)], 0) << i << " " << t;  // kKeptExact
      for (int64_t j = 0; j < 5; ++j) {
        EXPECT_EQ(seg.id(t, j), ref.ids(t, j)) << "segment " << i << " position " << t << " slot " << j;
        // fp16 in the cache: round to nearest is within half a step, 2^-11 relative (+ subnormals).
        EXPECT_NEAR(seg.prob(t, j), ref.probs(t, j), 1e-3 * ref.probs(t, j) + 1e-7);
      }
    }
  }
}

TEST(Teach, ResumeAfterLimitEqualsOneRun) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("resume");
  const std::string a = s.job("a"), b = s.job("b");
  const TeachResult whole = run(a, "llama");
  const TeachResult first = run(b, "llama", 4);
  EXPECT_EQ(first.segments, 4);
  EXPECT_FALSE(first.complete);
  const TeachResult rest = run(b, "llama");
  EXPECT_EQ(rest.resumed_from, 4);
  EXPECT_TRUE(rest.complete);
  EXPECT_EQ(rest.segments, whole.segments);
  DistributionCacheReader x(whole.cache_path), y(rest.cache_path);
  ASSERT_EQ(x.segments(), y.segments());
  EXPECT_EQ(x.ce(), y.ce());
  for (int64_t i = 0; i < x.segments(); ++i) {
    const auto p = x.read_index(i), q = y.read_index(i);
    ASSERT_EQ(p.target_ids, q.target_ids);
    EXPECT_EQ(p.status, q.status);
    for (int64_t t = 0; t < p.rows(); ++t)
      for (int64_t j = 0; j < p.k; ++j) {
        EXPECT_EQ(p.id(t, j), q.id(t, j));
        EXPECT_EQ(p.prob(t, j), q.prob(t, j));
      }
  }
  // The target is its own source (identity alignment): every position keeps the teacher's row.
  EXPECT_EQ(whole.fallback_rows, 0);
}

// [distill].align_compat = "all": teach aligns under every one of the original's rules (the
// empty_row one runs the target model too); the cache and the vocabulary mapping record them.
TEST(Teach, OriginalRulesRun) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("original");
  const std::string job = s.job("o", "align_compat = \"all\"\n");
  const TeachResult r = run(job, "neox", 2);
  EXPECT_EQ(r.segments, 2);
  EXPECT_GT(r.kept_rows, 0);
  EXPECT_EQ(DistributionCacheReader::read_provenance(r.cache_path).align_compat,
            "strings,specials,dummy_prefix,empty_row,onehot_current");
  const JobConfig c = load_job(job);
  EXPECT_EQ(align::VocabMapping::load(vocab_map_path_for(c, "neox")).rules, "strings,specials");
  // The fallback rows are one-hots of the current token (the original's issue #27).
  DistributionCacheReader reader(r.cache_path);
  const TeacherRows seg = reader.read_index(0);
  int64_t fallbacks = 0;
  for (size_t t = 0; t < seg.status.size(); ++t) {
    if (align::align_kept(seg.status[t]) || seg.status[t] == align::kFallbackEmpty) continue;
    ++fallbacks;
    EXPECT_EQ(seg.id(t, 0), seg.target_ids[t]) << "position " << t;
  }
  EXPECT_GT(fallbacks, 0);
}

// What a teacher rank computes (Teacher, one segment per call) is what teach cached (batches of 3
// segments, one DTW batch each, written and read back), to the bit: online equals offline.
TEST(Teach, TeacherRowsEqualTheCachedRows) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("teacher");
  const std::string job_file = s.job("a");
  const TeachResult r = run(job_file, "neox", 7);
  ASSERT_EQ(r.segments, 7);
  const JobConfig job = load_job(job_file);
  const auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job));
  const Teacher teacher(job, "neox", toks, vocab_map_path_for(job, "neox"));
  EXPECT_FALSE(teacher.identity());
  const Segmenter seg = toks->segmenter(job);
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  DistributionCacheReader cache(r.cache_path);
  Segment g;
  for (int64_t i = 0; i < 7; ++i) {
    ASSERT_TRUE(stream.next(g));
    const std::vector<TeacherRows> rows = teacher.rows(std::span<const Segment>(&g, 1));
    ASSERT_EQ(rows.size(), 1u);
    const TeacherRows& a = rows[0];
    const TeacherRows b = cache.read(g.id);
    EXPECT_EQ(a.segment, b.segment);
    EXPECT_EQ(a.doc, b.doc);
    EXPECT_EQ(a.piece, b.piece);
    EXPECT_EQ(a.k, b.k);
    EXPECT_EQ(a.target_ids, b.target_ids);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.ids, b.ids) << "segment " << i;
    EXPECT_EQ(a.probs, b.probs) << "segment " << i;
    EXPECT_EQ(a.ce, b.ce);
    EXPECT_EQ(a.ce_tokens, b.ce_tokens);
    EXPECT_EQ(a.bytes, b.bytes);
    EXPECT_GT(a.source_tokens, 0);
  }
}

TEST(Teach, MismatchesRefusedBeforeWork) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("refuse");
  const std::string job = s.job("a");
  run(job, "neox", 2);
  // Same cache dir, another k: the job file, the line of top_k and the field are named.
  const std::string other = s.job("k7", "", 7, "a");
  std::string e = error_of([&] { run(other, "neox"); });
  EXPECT_NE(e.find(other + ":"), std::string::npos) << e;
  EXPECT_NE(e.find("[distill].top_k"), std::string::npos) << e;
  EXPECT_NE(e.find("neox.h5"), std::string::npos) << e;
  const std::string em = s.job("compat", "onehot_compat = true\n", 5, "a");
  e = error_of([&] { run(em, "neox"); });
  EXPECT_NE(e.find("[distill].onehot_compat"), std::string::npos) << e;
  const std::string orig = s.job("original", "align_compat = \"strings\"\n", 5, "a");
  e = error_of([&] { run(orig, "neox"); });
  EXPECT_NE(e.find("[distill].align_compat"), std::string::npos) << e;
  e = error_of([&] { run(job, "mpt"); });
  EXPECT_NE(e.find("--source 'mpt'"), std::string::npos) << e;
  EXPECT_NE(e.find("'neox'"), std::string::npos) << e;
  // A missing vocabulary mapping is refused by the offline check.
  run(job, "llama", 1);
  EXPECT_EQ(error_of([&] { check_offline_caches(load_job(job), false); }), "");
  fs::remove(vocab_map_path_for(load_job(job), "neox"));
  e = error_of([&] { check_offline_caches(load_job(job), false); });
  EXPECT_NE(e.find("vocabulary mapping"), std::string::npos) << e;
  EXPECT_NE(e.find("'neox'"), std::string::npos) << e;
}

// [[source]].dtype = "bf16": the source's weights rounded to bfloat16 (Decoder::round_parameters_to,
// checked bit for bit against torch's bf16 checkpoints in test_weight_dtype). The demo's sources are
// bf16 checkpoints, so on the CPU (fp32 arithmetic) the rows are the fp32 teacher's bit for bit; the
// cache records the dtype, and the fp32 cache is refused for the bf16 job, naming the source's dtype.
TEST(Teach, Bf16TeacherIsRecordedInItsCache) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("dtype");
  const std::string f32 = s.job("f32");
  auto with_bf16 = [&](const std::string& name, const std::string& cache) {
    const std::string p = s.job(name, "", 5, cache);
    std::ifstream in(p);
    std::string t((std::istreambuf_iterator<char>(in)), {});
    const std::string neox = "/neox\"\n";
    t.replace(t.find(neox), neox.size(), neox + "dtype = \"bf16\"\n");
    std::ofstream(p) << t;
    return p;
  };
  const std::string refused = with_bf16("bf16_on_f32", "f32"), bf16 = with_bf16("bf16", "bf16");
  const TeachResult a = run(f32, "neox", 6);
  const std::string e = error_of([&] { run(refused, "neox"); });
  EXPECT_NE(e.find("teacher_dtype = fp32"), std::string::npos) << e;
  EXPECT_NE(e.find("[[source]] 'neox' dtype gives bf16"), std::string::npos) << e;
  const TeachResult b = run(bf16, "neox", 6);
  EXPECT_EQ(DistributionCacheReader::read_provenance(b.cache_path).teacher_dtype, "bf16");
  DistributionCacheReader ra(a.cache_path), rb(b.cache_path);
  for (int64_t g = 0; g < 6; ++g) {
    const TeacherRows x = ra.read(g), y = rb.read(g);
    EXPECT_EQ(x.target_ids, y.target_ids);
    EXPECT_EQ(x.ids, y.ids) << "segment " << g;
    EXPECT_EQ(x.probs, y.probs) << "segment " << g;
    EXPECT_EQ(x.ce, y.ce) << "segment " << g;
  }
}

// MinCE per position: a Teacher of a per-position job gives each target position the CE of the
// source position whose row it keeps. For the source that shares the target's tokenizer (the
// identity) that is the source's own CE at that position, so their mean over the scored positions
// is the segment's CE; for the aligned source every finite value is one of its per-position CEs
// and positions without a kept row have none (+Inf). The rows themselves are those of a
// sequence-level job.
TEST(Teach, PerPositionCeFollowsTheAlignment) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  TeachDir s("position");
  const JobConfig seq = load_job(s.job("seq"));
  JobConfig pos = load_job(s.job("pos", "fusion = \"minCE-position\"\n"));
  const auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(pos));
  const Segmenter seg = toks->segmenter(pos);
  SegmentStream stream(CorpusReader::from_config(pos.corpus), seg);
  std::vector<Segment> segs(4);
  for (auto& g : segs) ASSERT_TRUE(stream.next(g));
  for (const char* source : {"llama", "neox"}) {
    SCOPED_TRACE(source);
    const Teacher with(pos, source, toks, ""), without(seq, source, toks, "");
    EXPECT_TRUE(with.position_ce());
    const std::vector<TeacherRows> a = with.rows(segs), b = without.rows(segs);
    for (size_t d = 0; d < segs.size(); ++d) {
      EXPECT_EQ(a[d].ids, b[d].ids);
      EXPECT_EQ(a[d].probs, b[d].probs);
      EXPECT_TRUE(b[d].position_ce.empty());
      ASSERT_EQ(a[d].position_ce.size(), size_t(a[d].rows()));
      double sum = 0;
      int64_t finite = 0;
      for (const float c : a[d].position_ce)
        if (std::isfinite(c)) {
          EXPECT_GE(c, 0.0f);
          sum += c, ++finite;
        }
      EXPECT_GT(finite, a[d].rows() / 2);
      if (with.identity()) {
        EXPECT_EQ(finite, a[d].ce_tokens);  // every position but the last
        EXPECT_NEAR(sum / double(finite), a[d].ce, 1e-5 * a[d].ce);
      }
    }
  }
}
