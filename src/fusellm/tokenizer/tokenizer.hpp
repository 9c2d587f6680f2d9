#pragma once
// A Hugging Face tokenizer read from tokenizer.json, run as the `tokenizers` library runs it:
// normalizer -> pre-tokenizer -> model (BPE) -> post-processor, with added/special tokens split
// out first, and a decoder for the way back. Each stage lives in its own file of this folder.
// Offsets are carried through every stage and refer to the *input* text.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fusellm {

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;  // vocabulary strings (e.g. "Ġthe", "▁the", "<0x0A>")
  // Offsets into the input text: [begin, end) in bytes of the UTF-8 input, and the same in
  // Unicode code points (what the Python `tokenizers` library reports as `offsets`).
  std::vector<std::pair<int64_t, int64_t>> byte_offsets;
  std::vector<std::pair<int64_t, int64_t>> char_offsets;
  std::vector<uint8_t> special;  // 1 where the token is a special token
};

class Tokenizer {
 public:
  // `path` is tokenizer.json or a directory holding it (or, failing that, a SentencePiece
  // tokenizer.model, read through libsentencepiece). Errors name the file and the part.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // A tokenizer.json given as text; origin names it in errors (a path, or "<string>").
  static std::unique_ptr<Tokenizer> from_json_string(std::string_view json, const std::string& origin = "<string>");
  virtual ~Tokenizer() = default;

  virtual Encoding encode(std::string_view text, bool add_special_tokens = true) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const = 0;

  virtual int64_t vocab_size() const = 0;  // including added tokens
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;  // "" when out of range
  virtual std::string describe() const = 0;                // "BPE (byte-level), 50277 tokens, ..."
};

}  // namespace fusellm
