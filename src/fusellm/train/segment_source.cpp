#include "fusellm/train/segment_source.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/teach/job_tokenizers.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/teach/teach.hpp"
#include "fusellm/teach/teacher_rows_source.hpp"

namespace fusellm {

namespace {

void check_ids(const PackInput& p, int64_t vocab, const std::string& where) {
  for (int32_t id : p.target_ids)
    if (id < 0 || id >= vocab)
      fail("{}segment {}: target token id {} outside the target vocabulary of {}", where, p.id, id, vocab);
}

}  // namespace

SegmentSource SegmentSource::from_caches(const JobConfig& job, int64_t limit, int64_t vocab) {
  std::vector<std::unique_ptr<DistributionCacheReader>> readers;
  std::vector<std::string> names;
  int64_t n = -1;
  for (const auto& src : job.sources) {
    readers.push_back(std::make_unique<DistributionCacheReader>(cache_path_for(job, src.name), vocab));
    names.push_back(src.name);
    const int64_t m = readers.back()->segments();
    n = n < 0 ? m : std::min(n, m);
  }
  if (limit >= 0) n = std::min(n, limit);
  const DistributionCacheReader& r0 = *readers.front();
  for (const auto& r : readers)
    if (limit < 0 && r->segments() != n)
      fail("{}: holds {} segments, {} holds {} (run `fusellm teach` for every source to the same point)", r->path(),
           r->segments(), r0.path(), r0.segments());
  std::vector<int64_t> lengths(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& r : readers) {
      if (r->segment_ids()[size_t(i)] != i)
        fail("{}: segment {} has id {}, expected {}", r->path(), i, r->segment_ids()[size_t(i)], i);
      if (r->segment_rows(i) != r0.segment_rows(i))
        fail("{}: segment {} has {} target tokens, {} has {} (caches of different target tokenizations)", r->path(),
             i, r->segment_rows(i), r0.path(), r0.segment_rows(i));
    }
    lengths[size_t(i)] = r0.segment_rows(i);
  }
  std::vector<std::unique_ptr<RowsSource>> sources(std::make_move_iterator(readers.begin()),
                                                   std::make_move_iterator(readers.end()));
  return from_rows(std::move(lengths), std::move(names), std::move(sources), vocab);
}

SegmentSource SegmentSource::from_rows(std::vector<int64_t> lengths, std::vector<std::string> names,
                                       std::vector<std::unique_ptr<RowsSource>> sources, int64_t vocab) {
  if (sources.empty() || names.size() != sources.size())
    fail("train: {} rows sources named {} times (fusion needs one per source)", sources.size(), names.size());
  SegmentSource s;
  s.vocab_ = vocab;
  s.lengths_ = std::move(lengths);
  s.names_ = std::move(names);
  s.sources_ = std::move(sources);
  return s;
}

// What a CLM-only source reads from: the job's segments (through its index) and the target
// tokenizer that encodes one when it is asked for.
struct SegmentSource::Corpus {
  std::shared_ptr<const JobTokenizers> toks;
  std::shared_ptr<const CorpusSegments> segments;
  const Tokenizer* target = nullptr;
};

SegmentSource SegmentSource::from_corpus(const JobConfig& job, int64_t limit, int64_t vocab) {
  auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job, false));
  auto segs = std::make_shared<const CorpusSegments>(CorpusSegments::load_or_cut(job, *toks, limit, true));
  return from_segments(job, std::move(toks), std::move(segs), vocab);
}

SegmentSource SegmentSource::from_segments(const JobConfig& job, std::shared_ptr<const JobTokenizers> toks,
                                           std::shared_ptr<const CorpusSegments> segments, int64_t vocab) {
  SegmentSource s;
  s.vocab_ = vocab;
  auto c = std::make_shared<Corpus>();
  c->target = &toks->tokenizer(job.target.tokenizer);
  c->toks = std::move(toks);
  c->segments = std::move(segments);
  s.lengths_ = c->segments->lengths;
  s.corpus_ = std::move(c);
  return s;
}

SegmentSource SegmentSource::from_teachers(const JobConfig& job, int64_t limit, int64_t vocab) {
  const auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job));
  auto segs = std::make_shared<const CorpusSegments>(CorpusSegments::load_or_cut(job, *toks, limit, true));
  std::vector<std::unique_ptr<RowsSource>> sources;
  std::vector<std::string> names;
  for (const auto& src : job.sources) {
    auto teacher = std::make_unique<Teacher>(job, src.name, toks, vocab_map_path_for(job, src.name));
    sources.push_back(std::make_unique<TeacherRowsSource>(std::move(teacher), *segs));
    names.push_back(src.name);
  }
  SegmentSource s = from_rows(segs->lengths, std::move(names), std::move(sources), vocab);
  s.keep_alive_ = segs;
  return s;
}

void SegmentSource::begin_micro_batch(int64_t id, std::span<const int64_t> segments) {
  for (auto& src : sources_) src->begin_micro_batch(id, segments);
}

void SegmentSource::end_micro_batch(int64_t id) {
  for (auto& src : sources_) src->end_micro_batch(id);
}

const PackInput& SegmentSource::get(int64_t i) {
  if (i < 0 || i >= segments()) fail("train: segment {} requested, the data has {}", i, segments());
  if (auto it = recent_.find(i); it != recent_.end()) return it->second;
  PackInput p;
  p.id = i;
  if (corpus_) {  // CLM only: the segment's text, encoded as cutting encoded it
    p.target_ids = corpus_->target->encode(corpus_->segments->segment(i).text, true).ids;
    if (int64_t(p.target_ids.size()) != lengths_[size_t(i)])
      fail("train: segment {} has {} target tokens now, {} when the corpus was cut (the corpus or the target "
           "tokenizer changed during the run)",
           i, p.target_ids.size(), lengths_[size_t(i)]);
    check_ids(p, vocab_, "");
  }
  for (size_t j = 0; j < sources_.size(); ++j) {
    TeacherRows r = sources_[j]->rows(i);
    if (r.segment != i || r.rows() != lengths_[size_t(i)])
      fail("{}: gave segment {} with {} target tokens for segment {} of {}", sources_[j]->describe(), r.segment,
           r.rows(), i, lengths_[size_t(i)]);
    if (j == 0) {
      p.target_ids = r.target_ids;
      check_ids(p, vocab_, sources_[j]->describe() + ": ");
    } else if (r.target_ids != p.target_ids) {
      fail("{}: segment {}: target tokens differ from {}'s (caches of different target tokenizations)",
           sources_[j]->describe(), i, sources_[0]->describe());
    }
    p.rows.push_back(std::move(r));
  }
  ++reads_;
  while (order_.size() >= keep) {
    recent_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(i);
  return recent_.emplace(i, std::move(p)).first->second;
}

}  // namespace fusellm
