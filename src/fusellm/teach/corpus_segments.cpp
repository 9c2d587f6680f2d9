#include "fusellm/teach/corpus_segments.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"

namespace fusellm {

void for_each_segment(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                      const std::function<void(Segment&&, std::vector<int32_t>&&)>& each) {
  const Tokenizer& target = toks.tokenizer(job.target.tokenizer);
  const Segmenter seg = toks.segmenter(job);  // the stream holds a pointer to it
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  Segment g;
  for (int64_t n = 0; (limit < 0 || n < limit) && stream.next(g); ++n) {
    std::vector<int32_t> ids = target.encode(g.text, true).ids;
    each(std::move(g), std::move(ids));
    g = Segment{};
  }
}

CorpusSegments CorpusSegments::cut(const JobConfig& job, const JobTokenizers& toks, int64_t limit) {
  CorpusSegments c;
  c.corpus_ = job.corpus;
  for_each_segment(job, toks, limit, [&](Segment&& s, std::vector<int32_t>&& ids) {
    c.lengths.push_back(int64_t(ids.size()));
    c.segments_.push_back(std::move(s));
  });
  return c;
}

Segment CorpusSegments::segment(int64_t id) const {
  if (id < 0 || id >= count()) fail("corpus segments: segment {} requested, the corpus has {}", id, count());
  if (index_) return index_->segment(id, corpus_);
  return segments_[size_t(id)];
}

namespace {

// The index of the corpus's first `limit` segments (all when < 0), cut here; no text is kept.
SegmentIndex index_by_cutting(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                              const std::string& valid_for) {
  SegmentIndex x;
  x.files = corpus_files(job.corpus.path, job.corpus.format);
  for_each_segment(job, toks, limit, [&](Segment&& s, std::vector<int32_t>&& ids) {
    x.lengths.push_back(int64_t(ids.size()));
    x.doc.push_back(s.doc);
    x.piece.push_back(s.piece);
    x.byte_begin.push_back(s.byte_begin);
    x.byte_end.push_back(s.byte_begin + int64_t(s.text.size()));
    if (s.doc == int64_t(x.doc_file.size())) {  // the document's first segment
      x.doc_file.push_back(s.doc_file);
      x.doc_offset.push_back(s.doc_offset);
      x.doc_line.push_back(s.doc_line);
    } else if (s.doc > int64_t(x.doc_file.size())) {  // every document has a segment
      fail("segment index: segment {} is of document {}, after document {}", s.id, s.doc, x.doc_file.size() - 1);
    }
  });
  x.complete = limit < 0;
  x.valid_for = valid_for;
  return x;
}

}  // namespace

CorpusSegments CorpusSegments::load_or_cut(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                                           bool write_index) {
  const std::string path = segment_index_path(job), valid_for = SegmentIndex::valid_for_job(job, toks);
  std::optional<SegmentIndex> x = load_segment_index(path, valid_for, limit);
  const bool loaded = x.has_value();
  if (loaded) {
    spdlog::info("segments: {} from the segment index {}", x->segments(), path);
  } else {
    x = index_by_cutting(job, toks, limit, valid_for);
    if (write_index) {
      try {
        std::filesystem::create_directories(std::filesystem::path(path).parent_path());
        x->save(path);
        spdlog::info("segments: {} cut; the segment index {} is written for the next start", x->segments(), path);
      } catch (const std::exception& e) {  // a start without the index is only slower
        spdlog::warn("segments: the segment index {} could not be written: {}", path, e.what());
      }
    }
  }
  CorpusSegments c;
  c.loaded_ = loaded;
  c.corpus_ = job.corpus;
  c.lengths = x->lengths;
  c.index_ = std::make_shared<const SegmentIndex>(std::move(*x));
  return c;
}

}  // namespace fusellm
