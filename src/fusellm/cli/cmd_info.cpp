// fusellm info DIR: what a Hugging Face checkpoint directory holds (family, size, vocabulary,
// dtypes, shards, tokenizer), read without running the model. --json for machines.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fusellm/cli/commands.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::cli {

namespace fs = std::filesystem;

void add_info(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "describe a Hugging Face checkpoint directory");
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  sub->add_option("dir", *dir, "checkpoint directory (config.json + *.safetensors or pytorch_model*.bin)")->required();
  sub->add_flag("--json", *as_json, "print one JSON object");
  sub->callback([dir, as_json] {
    nlohmann::json out;
    out["dir"] = *dir;
    const auto cfg = HFConfig::load(*dir);
    out["model_type"] = cfg.get_string("model_type", "");
    const Checkpoint ckpt(*dir);
    out["format"] = ckpt.format();
    out["shards"] = ckpt.shard_files();
    out["tensors"] = ckpt.names().size();
    // Tensors in the files (tied views counted once) and the model's parameters (what
    // transformers' num_parameters() counts: no buffers a .bin may also hold, the tied head once).
    out["checkpoint_elements"] = ckpt.num_parameters();
    out["dtypes"] = ckpt.dtype_counts();
    // The full model load validates every tensor against config.json: info is also a check.
    const auto model = CausalLM::load(*dir);
    const auto& mi = model->info();
    out["family"] = mi.family;
    out["vocab_size"] = mi.vocab_size;
    out["hidden_size"] = mi.hidden_size;
    out["layers"] = mi.num_layers;
    out["heads"] = mi.num_heads;
    out["kv_heads"] = mi.num_kv_heads;
    out["max_positions"] = mi.max_positions;
    out["parameters"] = mi.num_parameters;
    if (fs::exists(fs::path(*dir) / "tokenizer.json") || fs::exists(fs::path(*dir) / "tokenizer.model")) {
      const auto tok = Tokenizer::load(*dir);
      out["tokenizer"] = tok->describe();
      out["tokenizer_vocab_size"] = tok->vocab_size();
    } else {
      out["tokenizer"] = nullptr;
    }
    if (*as_json) {
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    std::printf("checkpoint   %s\n", dir->c_str());
    std::printf("family       %s (model_type %s)\n", mi.family.c_str(), out["model_type"].get<std::string>().c_str());
    std::printf("parameters   %lld (%.1f M)\n", (long long)mi.num_parameters, double(mi.num_parameters) / 1e6);
    if (ckpt.num_parameters() != mi.num_parameters)
      std::printf("             the files hold %lld elements: buffers the model does not use\n",
                  (long long)ckpt.num_parameters());
    std::printf("shape        %lld layers, hidden %lld, %lld heads (%lld kv), context %lld\n",
                (long long)mi.num_layers, (long long)mi.hidden_size, (long long)mi.num_heads,
                (long long)mi.num_kv_heads, (long long)mi.max_positions);
    std::printf("vocabulary   %lld rows in the output head\n", (long long)mi.vocab_size);
    std::string dt;
    for (auto& [k, v] : ckpt.dtype_counts()) dt += k + " x" + std::to_string(v) + " ";
    std::printf("dtypes       %s\n", dt.c_str());
    std::printf("format       %s\n", ckpt.format().c_str());
    std::printf("shards       %zu:", ckpt.shard_files().size());
    for (auto& s : ckpt.shard_files()) std::printf(" %s", s.c_str());
    std::printf("\n");
    if (out["tokenizer"].is_null())
      std::printf("tokenizer    none in this directory\n");
    else
      std::printf("tokenizer    %s\n", out["tokenizer"].get<std::string>().c_str());
  });
}

}  // namespace fusellm::cli
