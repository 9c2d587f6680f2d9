// fusellm init --from DIR --out DIR [--seed N] [--dtype f32|bf16]: a model of DIR's config.json
// with freshly initialized weights (model/init_weights.hpp: transformers' from_config() rules),
// written as a Hugging Face checkpoint with DIR's config.json and tokenizer files. What a
// pretraining run starts from: the demo's source models, a base model, a target.
#include <cstdio>
#include <filesystem>

#include "fusellm/cli/commands.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/model/init_weights.hpp"

namespace fusellm::cli {

namespace fs = std::filesystem;

void add_init(CLI::App& app) {
  auto* sub = app.add_subcommand("init", "a model with fresh random weights, from a config.json and a tokenizer");
  struct Args {
    std::string from, out, dtype = "f32";
    uint64_t seed = 0;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("--from", a->from, "directory with config.json and the tokenizer files")->required();
  sub->add_option("--out", a->out, "output directory (created; must be empty unless --force)")->required();
  sub->add_option("--seed", a->seed, "seed of the weights (the same seed gives the same model everywhere)");
  sub->add_option("--dtype", a->dtype, "tensor type written: f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_flag("--force", a->force, "replace the model files of a non-empty --out");
  sub->callback([a] {
    if (!fs::exists(fs::path(a->from) / "config.json")) fail("{}: no config.json in this directory", a->from);
    if (!a->force && fs::exists(a->out) && !fs::is_empty(a->out))
      fail("{}: not empty; refusing to overwrite a model (pass --force to replace its model files)", a->out);
    const model::Arch arch = model::read_arch(a->from);
    const double std_dev = model::initializer_range(HFConfig::load((fs::path(a->from) / "config.json").string()));
    const model::DecoderParams params = model::plan_decoder_params(arch, model::base_prefix(arch));
    const std::vector<float> flat = model::init_parameters(arch, params, std_dev, a->seed);
    ExportOptions opt;
    opt.dtype = a->dtype == "bf16" ? DType::BF16 : DType::F32;
    const ExportResult r = export_hf(model::fresh_checkpoint_entries(arch, params, flat), a->from, a->from, a->out, opt);
    std::printf("initialized a %s model (%lld parameters, std %g, seed %llu) in %s:\n", arch.model_type.c_str(),
                static_cast<long long>(params.table.total()), std_dev, static_cast<unsigned long long>(a->seed),
                a->out.c_str());
    for (const std::string& f : r.files) std::printf("  %s\n", f.c_str());
  });
}

}  // namespace fusellm::cli
