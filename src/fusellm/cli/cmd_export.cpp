// fusellm export --checkpoint C --out DIR [--dtype f32|bf16] [--max-shard-size BYTES]: the target
// model of a training checkpoint as a Hugging Face checkpoint directory (safetensors +
// config.json + tokenizer files) that transformers loads (model/export_hf.hpp).
//
// C is a step directory (step-N, holding state.h5) or a checkpoint directory (its `latest`). Every
// checksum is verified before anything is written, the whole file's before HDF5 opens it. Unlike a
// resume, export does not fall back: when the checkpoint asked for is damaged it refuses, naming
// the damaged file and the newest checkpoint that verifies, so that the user exports an older step
// knowingly. Weights that are not finite (a checkpoint of a run that diverged, written before
// fusellm checked its updates) are refused too. The job file stored in the checkpoint names
// the target ([target].path, or the [[source]] it was initialized from), whose config.json and
// tokenizer ([target].tokenizer) go with the weights.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>

#include "fusellm/train/train_checkpoint.hpp"
#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/job/job_config.hpp"

namespace fusellm::cli {

namespace fs = std::filesystem;

void add_export(CLI::App& app) {
  auto* sub = app.add_subcommand("export", "write a training checkpoint's target model as a Hugging Face checkpoint");
  struct Args {
    std::string checkpoint, out, dtype = "f32";
    int64_t max_shard_bytes = 5'000'000'000;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("--checkpoint", a->checkpoint, "checkpoint directory, or one step-N directory in it")->required();
  sub->add_option("--out", a->out, "output directory (created; earlier model files in it are replaced)")->required();
  sub->add_option("--dtype", a->dtype, "tensor type written: f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_option("--max-shard-size", a->max_shard_bytes, "bytes per safetensors shard (save_pretrained: 5GB)")
      ->check(at_least(1, "bytes per shard"));
  sub->callback([a] {
    const bool step_dir = fs::exists(fs::path(a->checkpoint) / "state.h5");
    std::optional<TrainCheckpoint> ck;
    if (step_dir) {
      ck = TrainCheckpointStore::load(a->checkpoint);
    } else {
      if (!fs::is_directory(a->checkpoint)) fail("{}: no such checkpoint directory", a->checkpoint);
      ck = TrainCheckpointStore(a->checkpoint, 0).load_latest();
      if (!ck) fail("{}: holds no training checkpoint (no step-N directory with a completion marker)", a->checkpoint);
      if (!ck->warnings.empty()) {
        std::string why;
        for (const std::string& w : ck->warnings) why += "\n  " + w;
        fail("{}: its newest checkpoint cannot be used, nothing exported:{}\nThe newest checkpoint that verifies is {} "
             "(step {}); to export it, pass --checkpoint {}",
             a->checkpoint, why, ck->path, ck->state.step, ck->path);
      }
    }
    if (ck->model.empty()) fail("{}: the checkpoint holds no model tensors", ck->path);
    for (const NamedTensor& t : ck->model) {
      const std::span<const float> v = t.tensor.span();
      if (auto it = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }); it != v.end())
        fail("{}: tensor {} holds {} at index {}: refusing to export weights that are not finite (the run diverged; "
             "export an earlier checkpoint)",
             ck->path, t.name, *it, it - v.begin());
    }
    if (ck->state.job_toml.empty()) fail("{}: the checkpoint holds no job file (cannot find the target's config)", ck->path);
    JobParseOptions po;
    po.check_paths = false;
    const JobConfig job = with_context(fmt::format("{}: the job file stored in the checkpoint", ck->path),
                                       [&] { return parse_job(ck->state.job_toml, ck->path + "/job.toml", po); });
    std::string config_dir = job.target.path;
    if (config_dir.empty()) {
      const SourceConfig* s = job.find_source(job.target.init_from);
      if (!s) fail("{}: [target].init_from names no [[source]] ('{}')", ck->path, job.target.init_from);
      config_dir = s->path;
    }
    if (!fs::exists(fs::path(config_dir) / "config.json"))
      fail("{}: the target's config.json is not there (the job file stored in {} names this directory as the target)",
           (fs::path(config_dir) / "config.json").string(), ck->path);
    const std::string tokenizer_dir = job.target.tokenizer.empty() ? config_dir : job.target.tokenizer;

    // The checkpoint holds the trainer's (the decoder's) layout; the export the family's own
    // (model/decoder_params.hpp: GPT-2's Conv1D, GPT-NeoX's per-head query_key_value).
    const model::Arch arch = model::read_arch(config_dir);
    std::set<std::string> names;
    for (const NamedTensor& t : ck->model) names.insert(t.name);
    const model::DecoderParams params =
        model::plan_decoder_params(arch, [&](const std::string& n) { return names.count(n) > 0; });
    std::vector<SafetensorsEntry> tensors;
    tensors.reserve(ck->model.size());
    for (const NamedTensor& t : ck->model) {
      const ParamEntry* e = params.table.find(t.name);
      if (!e)
        fail("{}: tensor {} is not a tensor of the target's {} model ({}/config.json)", ck->path, t.name,
             arch.model_type, config_dir);
      tensors.push_back(model::checkpoint_entry(arch, params, int(e - params.table.entries().data()), t.tensor.span()));
    }
    ExportOptions opt;
    opt.dtype = a->dtype == "bf16" ? DType::BF16 : DType::F32;
    opt.max_shard_bytes = a->max_shard_bytes;
    const ExportResult r = export_hf(tensors, config_dir, tokenizer_dir, a->out, opt);
    std::printf("exported %s (step %lld, %zu tensors, %.1f MB %s) to %s:\n", ck->path.c_str(),
                static_cast<long long>(ck->state.step), tensors.size(), double(r.tensor_bytes) / 1e6,
                a->dtype.c_str(), a->out.c_str());
    for (const std::string& f : r.files) std::printf("  %s\n", f.c_str());
  });
}

}  // namespace fusellm::cli
