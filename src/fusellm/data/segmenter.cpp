#include "fusellm/data/segmenter.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {
bool is_cont(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }
// The nearest character boundary at or before `b` that is > 0; if none, the first after 0.
int64_t char_boundary(std::string_view s, int64_t b) {
  b = std::clamp<int64_t>(b, 0, int64_t(s.size()));
  int64_t x = b;
  while (x > 0 && x < int64_t(s.size()) && is_cont(s[size_t(x)])) --x;
  if (x > 0) return x;
  x = 1;
  while (x < int64_t(s.size()) && is_cont(s[size_t(x)])) ++x;
  return x;
}
// The window of `text` the first cut is looked for in: long documents are not tokenized whole
// for every piece (quadratic), only a prefix many times the bound long.
int64_t window_bytes(int64_t max_tokens) { return std::max<int64_t>(int64_t(1) << 16, max_tokens * 64); }
}  // namespace

Segmenter::Segmenter(std::vector<const Tokenizer*> tokenizers, int64_t max_tokens)
    : toks_(std::move(tokenizers)), max_(max_tokens) {
  if (toks_.empty()) fail("segmenter: no tokenizer");
  if (max_ < 4) fail("segmenter: a bound of {} tokens per segment is too small ([corpus].max_len - margin)", max_);
}

int64_t Segmenter::count(size_t i, std::string_view text) const {
  return int64_t(toks_.at(i)->encode(text, true).ids.size());
}

// split_long_text.py: `tokens[:max_len - margin]` of the longest tokenization, decoded back.
// Here: the byte offset where token `max_` (counting the leading specials, leaving room for the
// trailing ones) begins.
int64_t Segmenter::cut_point(std::string_view text, size_t tok) const {
  const Encoding e = toks_[tok]->encode(text, true);
  const int64_t n = int64_t(e.ids.size());
  int64_t trail = 0;
  while (trail < n && e.special[size_t(n - 1 - trail)]) ++trail;
  int64_t L = std::max<int64_t>(1, max_ - trail);
  L = std::min(L, n - 1);
  // The first token at or after L that starts inside the text (not a zero-width special).
  int64_t cut = 0;
  for (int64_t i = L; i >= 1 && cut <= 0; --i)
    if (!e.special[size_t(i)]) cut = e.byte_offsets[size_t(i)].first;
  if (cut <= 0 || cut >= int64_t(text.size())) cut = int64_t(text.size()) / 2;
  return char_boundary(text, cut);
}

std::vector<std::pair<int64_t, int64_t>> Segmenter::split(std::string_view text) const {
  std::vector<std::pair<int64_t, int64_t>> out;
  const int64_t N = int64_t(text.size());
  const int64_t W = window_bytes(max_);
  int64_t pos = 0;
  while (pos < N) {
    const std::string_view rest = text.substr(size_t(pos));
    // Does the whole rest fit? Cheap check first on a window: if a prefix already exceeds, it cannot.
    int64_t win = std::min<int64_t>(int64_t(rest.size()), W);
    size_t longest = 0;
    int64_t longest_n = -1;
    for (;;) {
      const std::string_view w = rest.substr(0, size_t(win));
      longest_n = -1;
      for (size_t i = 0; i < toks_.size(); ++i) {
        const int64_t c = count(i, w);
        if (c > longest_n) longest_n = c, longest = i;
      }
      if (longest_n > max_ || win == int64_t(rest.size())) break;
      win = std::min<int64_t>(int64_t(rest.size()), win * 2);
    }
    if (longest_n <= max_) {  // the whole rest fits every tokenizer
      out.emplace_back(pos, N);
      break;
    }
    int64_t cut = cut_point(rest.substr(0, size_t(win)), longest);
    // Re-check every tokenizer on the head; cut again at the longest one's boundary while any exceeds.
    for (;;) {
      const std::string_view head = rest.substr(0, size_t(cut));
      longest_n = -1;
      for (size_t i = 0; i < toks_.size(); ++i) {
        const int64_t c = count(i, head);
        if (c > longest_n) longest_n = c, longest = i;
      }
      if (longest_n <= max_) break;
      int64_t c2 = cut_point(head, longest);
      if (c2 >= cut) c2 = char_boundary(head, cut - 1);  // always progress
      if (c2 >= cut) fail("segmenter: cannot cut a piece to {} tokens (one character is too many tokens)", max_);
      cut = c2;
    }
    out.emplace_back(pos, pos + cut);
    pos += cut;
  }
  return out;
}

Segment segment_of_document(const Document& doc, int32_t piece, int64_t begin, int64_t end, int64_t id) {
  Segment s;
  s.id = id;
  s.doc = doc.index;
  s.piece = piece;
  s.byte_begin = begin;
  s.text.assign(doc.text, size_t(begin), size_t(end - begin));
  s.doc_file = doc.file_index;
  s.doc_offset = doc.offset;
  s.doc_line = doc.line;
  s.doc_verbatim = doc.verbatim;
  return s;
}

bool SegmentStream::next(Segment& s) {
  while (piece_i_ >= pieces_.size()) {
    if (!reader_.next(doc_)) return false;
    pieces_ = seg_->split(doc_.text);
    piece_i_ = 0;
    if (pieces_.size() > 1) ++split_docs_;
  }
  const auto [b, e] = pieces_[piece_i_];
  s = segment_of_document(doc_, int32_t(piece_i_), b, e, next_id_++);
  ++piece_i_;
  return true;
}

}  // namespace fusellm
