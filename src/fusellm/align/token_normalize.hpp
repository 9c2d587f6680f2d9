#pragma once
// Token-string normalization and the vocabulary view that alignment works on (DESIGN.md
// section 1; tests/reference/align_reference.py, part 1, states the same rules in Python).
//
// The normalized string of a vocabulary entry is a byte string:
//  - an added token (tokenizer.json "added_tokens": BOS/EOS, pad, user tokens): its literal
//    content, UTF-8;
//  - byte-level BPE (GPT-2/NeoX/MPT): each character through the inverse of GPT-2's
//    bytes_to_unicode table (`Ġ` -> 0x20, `Ċ` -> 0x0A, `Ã©` -> 0xC3 0xA9); a character outside
//    the table stays as its UTF-8;
//  - SentencePiece-style (Metaspace, Llama): a whole token `<0xHH>` (byte fallback) -> the byte
//    0xHH; otherwise `▁` -> 0x20, everything else its UTF-8;
//  - otherwise (plain): the UTF-8 of the token.
// "Equal normalized strings" replaces the original's marker swap (`Ġ` <-> `▁`) and also equates
// `Ċ`, `<0x0A>` and "\n". The DTW cost string is the normalized string with every 0x20 removed
// (the original's `token.replace(marker, '')`). Distances are byte Levenshtein distances.
// This and fusellm's other deviations from the original are listed, with their measured effect,
// in README.md ("Alignment: where fusellm differs from the original FuseLLM code"); the
// original's rule for each is OriginalRules (original_rules.hpp, [distill].align_compat).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fusellm::align {

enum class NormKind : uint8_t { kByteLevel = 0, kMetaspace = 1, kPlain = 2 };
// Whether the tokenizer prepends a space ("▁" / "Ġ") that is not in the text.
enum class DummyPrefix : uint8_t { kNone = 0, kIfNoLeadingSpace = 1, kAlways = 2 };

const char* to_string(NormKind kind);  // "byte_level", "metaspace", "plain" (as the reference)

std::string normalize_token(std::string_view token, NormKind kind, bool added);
// A SentencePiece byte-fallback entry `<0xHH>` (Metaspace vocabularies, not an added token).
bool is_byte_fallback(std::string_view token, NormKind kind, bool added);
std::string cost_string(std::string_view normalized);

// One tokenizer's vocabulary as alignment sees it.
struct TokenVocab {
  std::string name;                     // for messages: the tokenizer path or a label
  NormKind kind = NormKind::kPlain;
  DummyPrefix dummy_prefix = DummyPrefix::kNone;
  std::vector<std::string> tokens;      // vocabulary strings by id ("" for a hole in the ids)
  std::vector<uint8_t> flags;           // kTokenAdded | kTokenSpecial (kokkos/align_common.hpp)
  std::vector<std::string> normalized;  // normalize_token of each entry

  // Reads model.vocab and added_tokens of a tokenizer.json (BPE or any model with a "vocab"
  // object), and detects the kind (ByteLevel / Metaspace or a "▁" -> " " Replace decoder) and the
  // dummy prefix (Prepend "▁" normalizer, Metaspace prepend_scheme, ByteLevel add_prefix_space).
  // `path` may be the file or the directory holding it.
  static TokenVocab from_tokenizer_json(const std::string& path);
  static TokenVocab from_tokens(std::string name, NormKind kind, std::vector<std::string> tokens,
                                std::vector<uint8_t> flags = {},
                                DummyPrefix dummy_prefix = DummyPrefix::kNone);

  int64_t size() const { return int64_t(tokens.size()); }
  bool special(int64_t id) const;
  bool hole(int64_t id) const;  // an id with no vocabulary entry
  bool byte_fallback(int64_t id) const;  // `<0xHH>` (is_byte_fallback)
  size_t max_normalized_len() const;

  // FNV-1a 64 over the kind name, then each (id u32 LE, flags u8, length u32 LE, UTF-8 bytes);
  // identifies the vocabulary a mapping was built for.
  uint64_t fingerprint() const;
  std::string fingerprint_hex() const;

  // Lengths of the leading and trailing runs of special tokens (BOS/EOS) in `ids`: the DTW
  // aligns what lies between them and pairs the runs (kokkos/token_alignment.hpp does the same).
  std::pair<size_t, size_t> edge_runs(std::span<const int32_t> ids) const;

  // Whether encoding `text` inserted a dummy-prefix space that the text does not have.
  bool dummy_inserted(std::string_view text) const;
  // Byte end of each token in the text (input of the byte-span alignment): cumulative normalized
  // lengths, where the leading/trailing runs of special tokens (BOS/EOS from the post-processor)
  // are zero-width, a special inside the text counts its literal content, and the dummy-prefix
  // space (if inserted: the leading space of the first content token) is not counted. Exact where
  // the tokenizer's normalizer keeps the bytes (NFC on NFD text shifts the later ends).
  std::vector<int64_t> byte_ends(std::span<const int32_t> ids, bool dummy_inserted) const;
};

}  // namespace fusellm::align
