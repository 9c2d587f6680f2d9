// The segment index (teach/segment_index.hpp): the segments it gives back, texts read from the
// corpus files, are the ones cutting the corpus gives (every field, every byte), over a corpus
// directory of JSONL files (blank lines, CRLF, invalid UTF-8, documents cut into several pieces)
// and a text file; an index of another corpus state, a shorter --limit run's, or a damaged one is
// not used, and the corpus is cut again.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fusellm/data/corpus.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/teach/segment_index.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {

const std::string kDemo = FUSELLM_SOURCE_DIR "/examples/demo";

bool demo_present() {
  return fs::exists(kDemo + "/llama/tokenizer.json") && fs::exists(kDemo + "/neox/tokenizer.json") &&
         fs::exists(kDemo + "/corpus.jsonl");
}

struct IndexDir {
  fs::path dir;
  IndexDir() {
    dir = fs::temp_directory_path() / ("fusellm_segment_index_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "corpus");
    const auto docs = read_corpus(kDemo + "/corpus.jsonl");
    std::ofstream a(dir / "corpus" / "a.jsonl", std::ios::binary), b(dir / "corpus" / "b.jsonl", std::ios::binary);
    for (size_t i = 0; i < 6; ++i) {
      std::ofstream& f = i % 2 ? b : a;
      f << nlohmann::json{{"text", docs[i].text.substr(0, 700)}}.dump() << (i == 2 ? "\r\n" : "\n");
      if (i == 1) f << "\n{\"text\": \"  \"}\n";                           // a blank line, a blank document
      if (i == 3) f << "{\"text\": \"caf\xC3 au lait, na\xFFve, twice.\"}\n";  // invalid UTF-8, replaced
    }
    // Text files: one read in place (valid UTF-8), one through its replaced text (invalid UTF-8).
    std::ofstream(dir / "corpus" / "c.txt", std::ios::binary) << docs[7].text.substr(0, 500);
    std::ofstream(dir / "corpus" / "d.txt", std::ios::binary) << docs[8].text.substr(0, 300) << "\xff\xfe"
                                                               << docs[9].text.substr(0, 300);
  }
  ~IndexDir() { fs::remove_all(dir); }
  JobConfig job() const {
    const std::string p = (dir / "job.toml").string();
    std::ofstream(p) << "[job]\nname = \"t\"\noutput_dir = \"" << (dir / "run").string() << "\"\n\n"
                     << "[[source]]\nname = \"llama\"\npath = \"" << kDemo << "/llama\"\n\n"
                     << "[[source]]\nname = \"neox\"\npath = \"" << kDemo << "/neox\"\n\n"
                     << "[target]\ninit_from = \"llama\"\n\n"
                     << "[corpus]\npath = \"" << (dir / "corpus").string() << "\"\nmax_len = 64\nmargin = 16\n";
    return load_job(p);
  }
};

// The reference: SegmentStream's segments, one after the other, and their target ids.
struct Stream {
  std::vector<Segment> segments;
  std::vector<std::vector<int32_t>> ids;
};
Stream stream_of(const JobConfig& job, const JobTokenizers& toks) {
  const Segmenter seg = toks.segmenter(job);
  const Tokenizer& target = toks.tokenizer(job.target.tokenizer);
  Stream out;
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  for (Segment g; stream.next(g); g = Segment{}) {
    out.ids.push_back(target.encode(g.text, true).ids);
    out.segments.push_back(std::move(g));
  }
  return out;
}

void expect_segment(const Segment& g, const Segment& w) {
  EXPECT_EQ(g.id, w.id);
  EXPECT_EQ(g.doc, w.doc) << g.id;
  EXPECT_EQ(g.piece, w.piece) << g.id;
  EXPECT_EQ(g.byte_begin, w.byte_begin) << g.id;
  EXPECT_EQ(g.text, w.text) << g.id;
  EXPECT_EQ(g.doc_file, w.doc_file) << g.id;
  EXPECT_EQ(g.doc_offset, w.doc_offset) << g.id;
  EXPECT_EQ(g.doc_line, w.doc_line) << g.id;
  EXPECT_EQ(g.doc_verbatim, w.doc_verbatim) << g.id;
}

// Every segment of `c` (read back from the corpus through its index) is the stream's.
void expect_stream(const CorpusSegments& c, const Stream& want) {
  ASSERT_EQ(size_t(c.count()), want.segments.size());
  for (int64_t i = 0; i < c.count(); ++i) {
    EXPECT_EQ(c.lengths[size_t(i)], int64_t(want.ids[size_t(i)].size())) << i;
    expect_segment(c.segment(i), want.segments[size_t(i)]);
  }
}

TEST(SegmentIndex, GivesTheSegmentsCuttingGives) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  IndexDir d;
  const JobConfig job = d.job();
  const JobTokenizers toks = JobTokenizers::load(job);
  const Stream want = stream_of(job, toks);
  ASSERT_GT(want.segments.size(), 10u);  // several documents cut into pieces
  EXPECT_GT(want.segments.back().doc, 6);
  int verbatim = 0, replaced_text = 0;  // c.txt's segments and d.txt's
  for (const Segment& s : want.segments) {
    if (s.doc_file == 2) verbatim += s.doc_verbatim ? 1 : -100;
    if (s.doc_file == 3) replaced_text += s.doc_verbatim ? -100 : 1;
  }
  EXPECT_GT(verbatim, 0);
  EXPECT_GT(replaced_text, 0);
  const CorpusSegments first = CorpusSegments::load_or_cut(job, toks, -1, true);
  EXPECT_FALSE(first.loaded_index());
  expect_stream(first, want);
  ASSERT_TRUE(fs::exists(segment_index_path(job)));
  ASSERT_TRUE(fs::exists(segment_index_path(job) + ".xxh64"));
  const CorpusSegments again = CorpusSegments::load_or_cut(job, toks, -1, true);
  EXPECT_TRUE(again.loaded_index());
  expect_stream(again, want);
  // A limit below the index's segments is served from it.
  const CorpusSegments some = CorpusSegments::load_or_cut(job, toks, 5, false);
  EXPECT_TRUE(some.loaded_index());
  EXPECT_EQ(some.count(), 5);
  EXPECT_EQ(some.segment(4).text, want.segments[4].text);
  EXPECT_THROW(some.segment(5), Error);
}

// for_each_segment cuts and encodes documents on the OpenMP threads, 64 at a time: the segments
// and their target ids are SegmentStream's, in its order, whatever the thread count and the limit;
// on the test corpus (one batch) and on the demo corpus (200 documents: four batches).
void expect_stream_order(const JobConfig& job) {
  const JobTokenizers toks = JobTokenizers::load(job);
  const Stream want = stream_of(job, toks);
  const int threads = omp_get_max_threads();
  for (int n : {1, 4}) {
    omp_set_num_threads(n);
    for (int64_t limit : {int64_t(-1), int64_t(7), int64_t(want.segments.size()) - 3}) {
      size_t i = 0;
      for_each_segment(job, toks, limit, [&](Segment&& g, std::vector<int32_t>&& ids) {
        ASSERT_LT(i, want.segments.size());
        expect_segment(g, want.segments[i]);
        EXPECT_EQ(ids, want.ids[i]) << i;
        ++i;
      });
      EXPECT_EQ(i, limit < 0 ? want.segments.size() : size_t(limit)) << n << " threads";
    }
  }
  omp_set_num_threads(threads);
}

TEST(SegmentIndex, CuttingOnThreadsGivesTheStreamsSegments) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  IndexDir d;
  expect_stream_order(d.job());
  expect_stream_order(load_job(FUSELLM_SOURCE_DIR "/jobs/tiny.toml"));
}

TEST(SegmentIndex, StaleShortOrDamagedIndexesAreCutAgain) {
  if (!demo_present()) GTEST_SKIP() << "examples/demo not generated";
  IndexDir d;
  const JobConfig job = d.job();
  const JobTokenizers toks = JobTokenizers::load(job);
  const std::string path = segment_index_path(job);
  // A --limit run's index serves no longer run.
  EXPECT_FALSE(CorpusSegments::load_or_cut(job, toks, 4, true).loaded_index());
  EXPECT_FALSE(CorpusSegments::load_or_cut(job, toks, 6, true).loaded_index());  // and is replaced
  EXPECT_TRUE(CorpusSegments::load_or_cut(job, toks, 6, true).loaded_index());
  EXPECT_FALSE(CorpusSegments::load_or_cut(job, toks, -1, true).loaded_index());
  EXPECT_TRUE(CorpusSegments::load_or_cut(job, toks, -1, true).loaded_index());
  // The corpus grew: its size is part of what the index is valid for.
  std::ofstream(d.dir / "corpus" / "b.jsonl", std::ios::app) << "{\"text\": \"one more document\"}\n";
  const CorpusSegments grown = CorpusSegments::load_or_cut(job, toks, -1, true);
  EXPECT_FALSE(grown.loaded_index());
  const Stream now = stream_of(job, toks);
  expect_stream(grown, now);
  expect_stream(CorpusSegments::load_or_cut(job, toks, -1, true), now);
  // A flipped byte: refused by its checksum, cut again (no crash).
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  EXPECT_FALSE(CorpusSegments::load_or_cut(job, toks, -1, false).loaded_index());
  // Read through an index whose corpus changed since (SegmentIndex::segment, as a teacher reads a
  // micro-batch's texts): the byte range is checked against the document, the error names it.
  EXPECT_FALSE(CorpusSegments::load_or_cut(job, toks, -1, true).loaded_index());
  const SegmentIndex x = SegmentIndex::load(path);
  std::ofstream(d.dir / "corpus" / "a.jsonl", std::ios::binary | std::ios::trunc) << "{\"text\": \"short\"}\n";
  std::string e;
  try {
    x.segment(1, job.corpus);  // bytes of the first document's second piece
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("a.jsonl:1: the document has 5 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("the corpus changed since the index was written"), std::string::npos) << e;
}

}  // namespace
