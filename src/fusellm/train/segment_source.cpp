#include "fusellm/train/segment_source.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/teach/teach.hpp"

namespace fusellm {

namespace {

void check_ids(const PackInput& p, int64_t vocab, const std::string& where) {
  for (int32_t id : p.target_ids)
    if (id < 0 || id >= vocab)
      fail("{}segment {}: target token id {} outside the target vocabulary of {}", where, p.id, id, vocab);
}

}  // namespace

SegmentSource SegmentSource::from_caches(const JobConfig& job, int64_t limit, int64_t vocab) {
  SegmentSource s;
  s.vocab_ = vocab;
  int64_t n = -1;
  for (const auto& src : job.sources) {
    s.readers_.push_back(std::make_unique<DistributionCacheReader>(cache_path_for(job, src.name), vocab));
    s.names_.push_back(src.name);
    const int64_t m = s.readers_.back()->segments();
    n = n < 0 ? m : std::min(n, m);
  }
  if (limit >= 0) n = std::min(n, limit);
  const DistributionCacheReader& r0 = *s.readers_.front();
  for (const auto& r : s.readers_)
    if (limit < 0 && r->segments() != n)
      fail("{}: holds {} segments, {} holds {} (run `fusellm teach` for every source to the same point)", r->path(),
           r->segments(), r0.path(), r0.segments());
  s.lengths_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& r : s.readers_) {
      if (r->segment_ids()[size_t(i)] != i)
        fail("{}: segment {} has id {}, expected {}", r->path(), i, r->segment_ids()[size_t(i)], i);
      if (r->segment_rows(i) != r0.segment_rows(i))
        fail("{}: segment {} has {} target tokens, {} has {} (caches of different target tokenizations)", r->path(),
             i, r->segment_rows(i), r0.path(), r0.segment_rows(i));
    }
    s.lengths_[size_t(i)] = r0.segment_rows(i);
  }
  return s;
}

SegmentSource SegmentSource::from_corpus(const JobConfig& job, int64_t limit, int64_t vocab) {
  SegmentSource s;
  s.vocab_ = vocab;
  std::vector<std::unique_ptr<Tokenizer>> toks;
  std::vector<const Tokenizer*> ptrs;
  const Tokenizer* target = nullptr;
  for (const auto& p : job_tokenizers(job)) {
    toks.push_back(with_context(fmt::format("{}: tokenizer {}", job.file, p), [&] { return Tokenizer::load(p); }));
    ptrs.push_back(toks.back().get());
    if (p == job.target.tokenizer) target = toks.back().get();
  }
  const Segmenter seg(ptrs, Segmenter::max_tokens_of(job.corpus));
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  Segment g;
  while ((limit < 0 || int64_t(s.all_.size()) < limit) && stream.next(g)) {
    PackInput p;
    p.id = g.id;
    p.target_ids = target->encode(g.text, true).ids;
    check_ids(p, vocab, "");
    s.lengths_.push_back(int64_t(p.target_ids.size()));
    s.all_.push_back(std::move(p));
  }
  return s;
}

const PackInput& SegmentSource::get(int64_t i) {
  if (i < 0 || i >= segments()) fail("train: segment {} requested, the data has {}", i, segments());
  if (readers_.empty()) return all_[size_t(i)];
  if (auto it = recent_.find(i); it != recent_.end()) return it->second;
  PackInput p;
  p.id = i;
  for (size_t j = 0; j < readers_.size(); ++j) {
    CachedSegment c = readers_[j]->read_index(i);
    if (j == 0) {
      p.target_ids = std::move(c.target_ids);
      check_ids(p, vocab_, readers_[j]->path() + ": ");
    } else if (c.target_ids != p.target_ids) {
      fail("{}: segment {}: target tokens differ from {}'s (caches of different target tokenizations)",
           readers_[j]->path(), i, readers_[0]->path());
    }
    p.rows.push_back(c.rows);
    p.ce.push_back(c.ce);
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
