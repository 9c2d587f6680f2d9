// fusellm merge --model DIR --model DIR [...] [--weights w1,w2,...] --out DIR [--dtype ...]: the
// paper's weight-merging baseline, theta = sum_j w_j theta_j over checkpoints of one
// architecture, written as a Hugging Face checkpoint with the first model's config and tokenizer
// (model/weight_merge.hpp). Weights default to uniform and are normalized to sum 1.
#include <cstdio>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/model/mixture_weights.hpp"
#include "fusellm/model/weight_merge.hpp"

namespace fusellm::cli {

void add_merge(CLI::App& app) {
  auto* sub = app.add_subcommand("merge", "weight merging: the weighted average of same-architecture checkpoints");
  struct Args {
    std::vector<std::string> models;
    std::string weights, out, dtype = "same";
  };
  auto a = std::make_shared<Args>();
  sub->add_option("--model", a->models, "Hugging Face checkpoint directory (give it once per model)")
      ->required()
      ->allow_extra_args(false);
  sub->add_option("--weights", a->weights, "w1,w2,...: one non-negative weight per --model (default: uniform)");
  sub->add_option("--out", a->out, "output directory (created; earlier model files in it are replaced)")->required();
  sub->add_option("--dtype", a->dtype, "tensor type written: f32, bf16, f16, or same (the first model's)")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "same"}));
  sub->callback([a] {
    const std::vector<double> w = as_usage_error([&] { return mixture_weights(a->weights, a->models.size(), "--weights"); });
    std::optional<DType> dtype;
    if (a->dtype == "f32") dtype = DType::F32;
    if (a->dtype == "bf16") dtype = DType::BF16;
    if (a->dtype == "f16") dtype = DType::F16;
    const MergeResult r = merge_checkpoints(a->models, w, a->out, dtype);
    std::printf("merged %zu models (%zu tensors, %lld parameters, %s) into %s:\n", a->models.size(), r.tensors,
                static_cast<long long>(r.parameters), std::string(dtype_name(r.dtype)).c_str(), a->out.c_str());
    for (size_t j = 0; j < a->models.size(); ++j) std::printf("  weight %.6g  %s\n", w[j], a->models[j].c_str());
    for (const std::string& f : r.files.files) std::printf("  wrote %s\n", f.c_str());
  });
}

}  // namespace fusellm::cli
