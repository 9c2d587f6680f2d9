#include "fusellm/teach/corpus_segments.hpp"

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
  for_each_segment(job, toks, limit, [&](Segment&& s, std::vector<int32_t>&& ids) {
    c.lengths.push_back(int64_t(ids.size()));
    c.segments.push_back(std::move(s));
  });
  return c;
}

}  // namespace fusellm
