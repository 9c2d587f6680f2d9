#include "fusellm/teach/corpus_segments.hpp"

#include <spdlog/spdlog.h>

#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string_view>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"

namespace fusellm {

namespace {

// One document cut (SegmentStream's pieces) and its pieces encoded by the target tokenizer.
struct CutDocument {
  Document doc;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  std::vector<std::vector<int32_t>> ids;
};

// Cuts and encodes `docs` on the OpenMP threads (the tokenizers are safe to share: their caches
// lock), dynamically scheduled (documents differ in length); the first error is rethrown.
void cut_in_parallel(std::vector<CutDocument>& docs, const Segmenter& seg, const Tokenizer& target) {
  std::exception_ptr error;
  std::mutex m;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < int64_t(docs.size()); ++i) {
    try {
      CutDocument& d = docs[size_t(i)];
      d.pieces = seg.split(d.doc.text);
      for (const auto& [b, e] : d.pieces)
        d.ids.push_back(target.encode(std::string_view(d.doc.text).substr(size_t(b), size_t(e - b)), true).ids);
    } catch (...) {
      std::lock_guard lock(m);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

void for_each_segment(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                      const std::function<void(Segment&&, std::vector<int32_t>&&)>& each) {
  const Tokenizer& target = toks.tokenizer(job.target.tokenizer);
  const Segmenter seg = toks.segmenter(job);
  CorpusReader reader = CorpusReader::from_config(job.corpus);
  constexpr size_t kBatch = 64;  // documents read, then cut and encoded together
  int64_t next_id = 0;
  bool more = true;
  std::vector<CutDocument> batch;
  while (more && (limit < 0 || next_id < limit)) {
    batch.clear();
    for (CutDocument d; batch.size() < kBatch && (more = reader.next(d.doc)); d = CutDocument{})
      batch.push_back(std::move(d));
    cut_in_parallel(batch, seg, target);
    for (CutDocument& d : batch)  // in order, as SegmentStream gives them
      for (size_t p = 0; p < d.pieces.size() && (limit < 0 || next_id < limit); ++p) {
        const auto [b, e] = d.pieces[p];
        each(segment_of_document(d.doc, int32_t(p), b, e, next_id++), std::move(d.ids[p]));
      }
  }
}

struct CorpusSegments::RecentDocuments {
  static constexpr size_t kKeep = 8;
  std::mutex m;
  std::deque<std::pair<int64_t, std::shared_ptr<const std::string>>> docs;  // oldest first
};

Segment CorpusSegments::segment(int64_t id) const {
  if (id < 0 || id >= count()) fail("corpus segments: segment {} requested, the corpus has {}", id, count());
  const int64_t d = index_->doc_of(id);
  if (index_->doc_verbatim[size_t(d)]) return index_->segment(id, corpus_);  // its bytes alone: nothing to keep
  std::shared_ptr<const std::string> text;
  {
    std::lock_guard lock(recent_->m);
    for (const auto& [doc, t] : recent_->docs)
      if (doc == d) text = t;
  }
  if (!text) {  // read outside the lock: other threads' segments need not wait for this file
    text = std::make_shared<const std::string>(index_->document_text(d, corpus_));
    std::lock_guard lock(recent_->m);
    recent_->docs.emplace_back(d, text);
    if (recent_->docs.size() > RecentDocuments::kKeep) recent_->docs.pop_front();
  }
  return index_->segment_of(id, *text);
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
      x.doc_verbatim.push_back(s.doc_verbatim ? 1 : 0);
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
  c.recent_ = std::make_shared<RecentDocuments>();
  c.corpus_ = job.corpus;
  c.lengths = x->lengths;
  c.index_ = std::make_shared<const SegmentIndex>(std::move(*x));
  return c;
}

}  // namespace fusellm
