// CausalLM::load: config.json's model_type picks the family; the family turns the config into an
// Arch, and the one Decoder lays out and loads the tensors by the family's name table.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <utility>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm {

namespace {

using ArchFn = model::Arch (*)(const HFConfig&);

const std::vector<std::pair<std::string, ArchFn>>& families() {
  static const std::vector<std::pair<std::string, ArchFn>> f = {
      {"llama", model::llama_arch},   {"mistral", model::llama_arch}, {"qwen2", model::llama_arch},
      {"mpt", model::mpt_arch},       {"gpt_neox", model::gpt_neox_arch}, {"gpt2", model::gpt2_arch},
  };
  return f;
}

}  // namespace

std::vector<std::string> CausalLM::supported_model_types() {
  std::vector<std::string> out;
  for (const auto& [name, fn] : families()) out.push_back(name);
  return out;
}

std::unique_ptr<CausalLM> CausalLM::load(const std::string& dir) { return model::load_decoder(dir); }

namespace model {

Arch read_arch(const std::string& dir) {
  const HFConfig cfg = HFConfig::load((std::filesystem::path(dir) / "config.json").string());
  const std::string type = cfg.get_string("model_type");
  refuse_common(cfg);
  for (const auto& [name, fn] : families()) {
    if (name != type) continue;
    Arch a = fn(cfg);
    // A field no table knows may change the computation in the publisher's code: say so once.
    for (const std::string& f : a.unknown_fields)
      spdlog::warn("{}: field '{}' is unknown to fusellm's {} loader and not used; if it changes the computation, "
                   "the logits will differ from its publisher's",
                   cfg.path(), f, a.family);
    return a;
  }
  fail("{}: field 'model_type': unsupported model type \"{}\" (supported: {})", cfg.path(), type,
       fmt::join(CausalLM::supported_model_types(), ", "));
}

std::unique_ptr<Decoder> load_decoder(const std::string& dir, LayerRange range, const Backend& backend) {
  Arch arch = read_arch(dir);
  const std::string type = arch.model_type;
  const Checkpoint ck(dir);
  return with_context(fmt::format("loading a {} model", type),
                      [&] { return std::make_unique<Decoder>(std::move(arch), ck, backend, range); });
}

}  // namespace model

}  // namespace fusellm
