// libFuzzer target: arbitrary bytes as a tokenizer.json. Tokenizer::from_json_string must either
// throw fusellm::Error or return a tokenizer that encodes a fixed sample text (accents, CJK, emoji,
// combining marks, runs of whitespace, digits, special-token look-alikes) and decodes the result;
// any other exception, a sanitizer report or a hang is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace {
const char* const kSamples[] = {
    ("Hello world! <s>The caf\xc3\xa9 na\xc3\xafve cafe\xcc\x81 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
     "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd  tabs\t\tand\n\nnew lines 12345 </s><|endoftext|>x"),
    "",
    " ",
    "\xe2\x96\x81leading\xe2\x96\x81meta \xc4\xa0G <0x41> [UNK] ##ab ab</w>",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<fusellm::Tokenizer> tok;
  try {
    tok = fusellm::Tokenizer::from_json_string(text, "fuzz/tokenizer.json");
  } catch (const fusellm::Error&) {
    return 0;  // rejected, as designed
  }
  for (const char* sample : kSamples) {
    for (bool special : {true, false}) {
      try {
        const fusellm::Encoding e = tok->encode(sample, special);
        if (e.tokens.size() != e.ids.size() || e.char_offsets.size() != e.ids.size() ||
            e.byte_offsets.size() != e.ids.size() || e.special.size() != e.ids.size())
          __builtin_trap();  // an Encoding whose fields disagree
        (void)tok->decode(e.ids, true);
        (void)tok->decode(e.ids, false);
        for (int32_t id : e.ids) (void)tok->id_to_token(id);
      } catch (const fusellm::Error&) {
        // e.g. an unk_token missing from the vocabulary, met at encode time as in the library
      }
    }
  }
  (void)tok->decode({-1, 0, 1, 2, 1 << 30}, false);
  (void)tok->vocab_size();
  (void)tok->describe();
  (void)tok->token_to_id("<s>");
  return 0;
}
