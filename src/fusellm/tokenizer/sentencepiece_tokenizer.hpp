#pragma once
// A SentencePiece model (tokenizer.model) read through Debian's libsentencepiece, for checkpoints
// that ship no tokenizer.json (OpenLLaMA). Encoding follows transformers' slow LlamaTokenizer
// (legacy): the text is split on the model's control/unknown pieces written literally ("<s>",
// "</s>", "<unk>"), every other chunk goes through SentencePiece, and <s> (BOS) is prepended when
// add_special_tokens. Offsets come from SentencePiece's pieces (byte spans of the input).
#include <memory>
#include <string>
#include <vector>

#include "fusellm/tokenizer/tokenizer.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace fusellm::tok {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  Encoding encode(std::string_view text, bool add_special_tokens = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const override;
  int64_t vocab_size() const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  std::string describe() const override;

 private:
  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<std::pair<std::string, int32_t>> specials_;  // control and unknown pieces
};

}  // namespace fusellm::tok
