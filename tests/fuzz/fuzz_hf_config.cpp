// libFuzzer target: arbitrary bytes as a checkpoint's config.json. Each model family's
// config -> Arch parser (llama/mistral/qwen2, mpt, gpt_neox, gpt2) must either return an Arch
// whose sizes are positive and consistent, or throw fusellm::Error naming the field; any other
// exception, a sanitizer report (a division by zero, an overflowing conversion) or a hang is a
// bug. Accepted configs also build a RoPE table for a few positions, which runs the scaling
// formulas (linear, dynamic NTK, llama3) on the fuzzed numbers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/ops.hpp"
#include "fusellm/model/arch.hpp"

namespace {

void check(const fusellm::model::Arch& a) {
  // What the forward pass divides by or allocates from: a parser that lets a zero or a negative
  // through hands the model code a crash.
  if (a.hidden <= 0 || a.layers <= 0 || a.heads <= 0 || a.kv_heads <= 0 || a.head_dim <= 0 || a.vocab <= 0 ||
      a.intermediate <= 0 || a.heads % a.kv_heads != 0 || a.rope.rotary_dim < 0 || a.rope.rotary_dim > a.head_dim)
    __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: read_json_file reports that, with the offset
  const fusellm::HFConfig c(std::move(j), "fuzz/config.json");
  using ArchFn = fusellm::model::Arch (*)(const fusellm::HFConfig&);
  for (ArchFn fn : {fusellm::model::llama_arch, fusellm::model::mpt_arch, fusellm::model::gpt_neox_arch,
                    fusellm::model::gpt2_arch}) {
    try {
      const fusellm::model::Arch a = fn(c);
      check(a);
      if (a.rope.rotary_dim > 0 && a.rope.rotary_dim <= 4096) {
        const std::vector<int32_t> pos{0, 1, 2, 3}, len{4, 4, 4, 4};
        (void)fusellm::model::rope_table(a.rope, pos, len);
      }
    } catch (const fusellm::Error&) {
      // Rejected config, as designed.
    }
  }
  return 0;
}
