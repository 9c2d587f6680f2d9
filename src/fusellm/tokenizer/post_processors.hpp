#pragma once
// Post-processors (tokenizer.json "post_processor"), as tokenizers' `processors` module, for a
// single sequence: special tokens around it (TemplateProcessing, Roberta, Bert) and the
// ByteLevel offset trimming. Offsets here are character offsets, as the library has them when
// it post-processes an encoding for Python.
#include <memory>
#include <string>
#include <vector>

#include "fusellm/tokenizer/json_util.hpp"

namespace fusellm::tok {

struct EncodingDraft {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
  std::vector<std::pair<int64_t, int64_t>> offsets;  // chars
  std::vector<uint8_t> special;
  void push(int32_t id, std::string token, std::pair<int64_t, int64_t> off, bool sp) {
    ids.push_back(id);
    tokens.push_back(std::move(token));
    offsets.push_back(off);
    special.push_back(sp ? 1 : 0);
  }
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(EncodingDraft& e, bool add_special_tokens) const = 0;
  virtual std::string describe() const = 0;
};

// null -> nullptr. vocab_lookup checks that special-token ids make sense.
std::unique_ptr<PostProcessor> make_post_processor(const json& j, const Ctx& c);

// ByteLevel's `process_offsets`: leading/trailing spaces ("Ġ" or whitespace) of each token are
// cut from its offsets (but the prefix space of the first token when add_prefix_space).
void byte_level_trim_offsets(EncodingDraft& e, bool add_prefix_space);

}  // namespace fusellm::tok
