// fusellm convert --model DIR --out DIR [--dtype keep|f32|bf16|f16] [--max-shard-size BYTES]: a
// checkpoint directory (PyTorch .bin, single or sharded, or safetensors) written once as
// safetensors with its config, generation config and tokenizer files (model/convert_hf.hpp).
#include <cstdio>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/model/convert_hf.hpp"

namespace fusellm::cli {

void add_convert(CLI::App& app) {
  auto* sub = app.add_subcommand("convert", "write a checkpoint directory (e.g. pytorch_model*.bin) as safetensors");
  struct Args {
    std::string model, out, dtype = "keep";
    int64_t max_shard_bytes = 5'000'000'000;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("--model", a->model, "checkpoint directory (config.json + weights)")->required();
  sub->add_option("--out", a->out, "output directory (new or empty)")->required();
  sub->add_option("--dtype", a->dtype, "tensor type written: keep (the stored one), f32, bf16 or f16")
      ->check(CLI::IsMember({"keep", "f32", "bf16", "f16"}));
  sub->add_option("--max-shard-size", a->max_shard_bytes, "bytes per safetensors shard (save_pretrained: 5GB)")
      ->check(at_least(1, "bytes per shard"));
  sub->callback([a] {
    ConvertOptions opt;
    if (a->dtype != "keep") opt.dtype = a->dtype == "bf16" ? DType::BF16 : a->dtype == "f16" ? DType::F16 : DType::F32;
    opt.max_shard_bytes = a->max_shard_bytes;
    const ExportResult r = convert_hf(a->model, a->out, opt);
    std::printf("converted %s to %s (%.1f MB of tensors):\n", a->model.c_str(), a->out.c_str(),
                double(r.tensor_bytes) / 1e6);
    for (const std::string& f : r.files) std::printf("  %s\n", f.c_str());
  });
}

}  // namespace fusellm::cli
