#pragma once
// Segments (DESIGN.md 2.0; the original FuseLLM `split_long_text.py`): each document is cut into
// pieces so that EVERY tokenizer of the job gives at most `max_tokens` (= max_len - margin) tokens
// for each piece, special tokens the tokenizer adds included. As the original: tokenize with every
// tokenizer, take the longest tokenization, cut at its token boundary `max_tokens` (here: at the
// byte offset where that token begins, moved back to a character boundary), re-check every
// tokenizer on the head and cut again while one still exceeds, then continue with the rest.
// Unlike the original the pieces are byte ranges of the document (no decode round trip), so the
// segments of a document concatenate back to it exactly.
//
// Segment ids are the positions in the segment stream of the corpus (document order, then piece
// order), so the same corpus and job cut the same segments with the same ids on every run.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"

namespace fusellm {

struct Segment {
  int64_t id = 0;          // position in the segment stream
  int64_t doc = 0;         // Document::index
  int32_t piece = 0;       // piece of that document
  int64_t byte_begin = 0;  // in the document
  std::string text;
  // Where the document lies (Document's): the corpus file's position among corpus_files(), the
  // byte offset of its JSONL line, its line (teach/segment_index.hpp records them).
  int32_t doc_file = 0;
  int64_t doc_offset = 0, doc_line = 0;
  bool doc_verbatim = false;  // Document::verbatim
};

class Segmenter {
 public:
  // `tokenizers`: every tokenizer of the job (sources and target), not owned.
  Segmenter(std::vector<const Tokenizer*> tokenizers, int64_t max_tokens);
  static int64_t max_tokens_of(const CorpusConfig& corpus) { return corpus.max_segment_tokens(); }

  // [begin, end) byte ranges of `text`, in order, covering it.
  std::vector<std::pair<int64_t, int64_t>> split(std::string_view text) const;
  // Tokens of `text` under tokenizer i (special tokens included).
  int64_t count(size_t i, std::string_view text) const;
  int64_t max_tokens() const { return max_; }
  size_t tokenizers() const { return toks_.size(); }

 private:
  int64_t cut_point(std::string_view text, size_t tok) const;
  std::vector<const Tokenizer*> toks_;
  int64_t max_;
};

// Segment `id`: piece `piece` of `doc`, its bytes [begin, end).
Segment segment_of_document(const Document& doc, int32_t piece, int64_t begin, int64_t end, int64_t id);

// The segment stream of a corpus: documents from a CorpusReader, split by a Segmenter.
class SegmentStream {
 public:
  SegmentStream(CorpusReader reader, const Segmenter& seg) : reader_(std::move(reader)), seg_(&seg) {}
  bool next(Segment& s);
  const CorpusStats& corpus_stats() const { return reader_.stats(); }
  int64_t segments() const { return next_id_; }
  int64_t split_documents() const { return split_docs_; }  // documents cut into >1 piece

 private:
  CorpusReader reader_;
  const Segmenter* seg_;
  Document doc_;
  std::vector<std::pair<int64_t, int64_t>> pieces_;
  size_t piece_i_ = 0;
  int64_t next_id_ = 0;
  int64_t split_docs_ = 0;
};

}  // namespace fusellm
