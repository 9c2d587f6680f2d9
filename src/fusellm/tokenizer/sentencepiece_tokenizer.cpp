// SentencePiece-backed tokenizer (see the header for what it mirrors).
#include "fusellm/tokenizer/sentencepiece_tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path)
    : path_(model_path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto st = sp_->Load(model_path);
  if (!st.ok()) fail("{}: cannot load the SentencePiece model: {}", model_path, st.ToString());
  for (int id = 0; id < sp_->GetPieceSize(); ++id)
    if ((sp_->IsControl(id) || sp_->IsUnknown(id)) && !sp_->IdToPiece(id).empty())
      specials_.emplace_back(sp_->IdToPiece(id), id);
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

Encoding SentencePieceTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const auto bad = find_invalid_utf8(text); bad != std::string_view::npos)
    fail("tokenizer encode: the input is not valid UTF-8 (byte {})", bad);
  Encoding out;
  auto push = [&](int32_t id, std::size_t b, std::size_t e, bool special) {
    out.ids.push_back(id);
    out.tokens.push_back(sp_->IdToPiece(id));
    out.byte_offsets.emplace_back(int64_t(b), int64_t(e));
    out.special.push_back(special ? 1 : 0);
  };
  if (add_special_tokens && sp_->bos_id() >= 0) push(sp_->bos_id(), 0, 0, true);
  auto encode_chunk = [&](std::size_t b, std::size_t e) {
    if (b >= e) return;
    sentencepiece::ImmutableSentencePieceText spt;
    const auto st = sp_->Encode(text.substr(b, e - b), spt.mutable_proto());
    if (!st.ok()) fail("{}: SentencePiece encode failed: {}", path_, st.ToString());
    for (std::size_t k = 0; k < spt.pieces_size(); ++k) {
      const auto piece = spt.pieces(int(k));
      push(int32_t(piece.id()), b + piece.begin(), b + piece.end(), false);
    }
  };
  // Split on the special pieces written literally, longest first at each position.
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    std::size_t best = 0;
    int32_t best_id = -1;
    for (const auto& [s, id] : specials_)
      if (s.size() > best && text.compare(i, s.size(), s) == 0) {
        best = s.size();
        best_id = id;
      }
    if (best_id < 0) {
      ++i;
      continue;
    }
    encode_chunk(start, i);
    push(best_id, i, i + best, true);
    i += best;
    start = i;
  }
  encode_chunk(start, text.size());

  // Char offsets from byte offsets.
  std::vector<int64_t> char_at(text.size() + 1, 0);
  int64_t ci = 0;
  for (std::size_t k = 0; k < text.size(); ++k) {
    char_at[k] = ci;
    if (k + 1 == text.size() || (static_cast<unsigned char>(text[k + 1]) & 0xC0) != 0x80) ++ci;
  }
  char_at[text.size()] = ci;
  for (const auto& [b, e] : out.byte_offsets) out.char_offsets.emplace_back(char_at[b], char_at[e]);
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<int> v;
  for (int32_t id : ids) {
    if (id < 0 || id >= sp_->GetPieceSize()) continue;
    if (skip_special_tokens && (sp_->IsControl(id) || sp_->IsUnknown(id))) continue;
    v.push_back(id);
  }
  std::string s;
  const auto st = sp_->Decode(v, &s);
  if (!st.ok()) fail("{}: SentencePiece decode failed: {}", path_, st.ToString());
  return s;
}

int64_t SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::optional<int32_t> SentencePieceTokenizer::token_to_id(std::string_view token) const {
  const int id = sp_->PieceToId(token);
  if (id == sp_->unk_id() && token != sp_->IdToPiece(id)) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= sp_->GetPieceSize()) return "";
  return sp_->IdToPiece(id);
}

std::string SentencePieceTokenizer::describe() const {
  return "SentencePiece (" + path_ + "), " + std::to_string(sp_->GetPieceSize()) + " pieces";
}

}  // namespace fusellm::tok
