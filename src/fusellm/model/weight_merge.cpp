// Weight merging: see weight_merge.hpp.
#include "fusellm/model/weight_merge.hpp"

#include <filesystem>
#include <map>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"

namespace fusellm {

namespace {

namespace fs = std::filesystem;

// config.json fields that record how a checkpoint was saved or initialized, not the network
// the weights belong to: two fine-tunes of one base differ in them and still merge.
const std::set<std::string> kIgnoredConfigFields = {"_name_or_path",     "transformers_version", "torch_dtype",
                                                    "use_cache",         "initializer_range",    "architectures",
                                                    "_commit_hash",      "auto_map"};

void check_same_config(const HFConfig& first, const HFConfig& other) {
  const nlohmann::json& a = first.json();
  const nlohmann::json& b = other.json();
  if (!a.is_object() || !b.is_object()) fail("{}: expected a JSON object", a.is_object() ? other.path() : first.path());
  // model_type first: the most telling difference when the families differ.
  const auto type = [](const nlohmann::json& j) { return j.contains("model_type") ? j["model_type"].dump() : "(none)"; };
  if (type(a) != type(b))
    fail("{}: field 'model_type' is {}, but {} has {}: weight merging needs models of the same architecture",
         other.path(), type(b), first.path(), type(a));
  std::set<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.insert(k);
  for (const auto& [k, v] : b.items()) keys.insert(k);
  for (const std::string& k : keys) {
    if (kIgnoredConfigFields.count(k)) continue;
    const std::string va = a.contains(k) ? a[k].dump() : "(absent)";
    const std::string vb = b.contains(k) ? b[k].dump() : "(absent)";
    if (va != vb)
      fail("{}: field '{}' is {}, but {} has {}: weight merging needs models of the same architecture", other.path(),
           k, vb, first.path(), va);
  }
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

// The first model's dtype: its most common floating-point tensor dtype.
DType checkpoint_dtype(const Checkpoint& ck) {
  std::map<DType, int64_t> count;
  for (const std::string& n : ck.names()) ++count[ck.info(n).dtype];
  DType best = DType::F32;
  int64_t most = -1;
  for (const auto& [t, c] : count)
    if (is_float(t) && c > most) best = t, most = c;
  return best == DType::F64 ? DType::F32 : best;
}

}  // namespace

MergeResult merge_checkpoints(std::span<const std::string> dirs, std::span<const double> weights,
                              const std::string& out_dir, std::optional<DType> dtype) {
  if (dirs.empty()) fail("merge: no models");
  if (weights.size() != dirs.size()) fail("merge: {} weights for {} models", weights.size(), dirs.size());
  // The inputs are mmap'd while the output is written; writing over one of them is refused.
  for (const std::string& d : dirs)
    if (fs::exists(out_dir) && fs::equivalent(d, out_dir))
      fail("merge: the output directory {} is one of the input models", out_dir);

  std::vector<HFConfig> configs;
  std::vector<Checkpoint> cks;
  configs.reserve(dirs.size());
  cks.reserve(dirs.size());
  for (const std::string& d : dirs) {
    configs.push_back(HFConfig::load(d));
    cks.emplace_back(d);
  }
  for (size_t j = 1; j < dirs.size(); ++j) check_same_config(configs[0], configs[j]);

  const std::vector<std::string> names = cks[0].names();
  for (size_t j = 1; j < cks.size(); ++j) {
    for (const std::string& n : names) {
      if (!cks[j].has(n))
        fail("{}: tensor '{}' of {} is missing: weight merging needs the same tensors in every model", dirs[j], n,
             dirs[0]);
      const TensorInfo& a = cks[0].info(n);
      const TensorInfo& b = cks[j].info(n);
      if (a.shape != b.shape)
        fail("{}: tensor '{}' has shape {}, but {} has {}: weight merging needs the same shapes", b.file, n,
             shape_str(b.shape), a.file, shape_str(a.shape));
    }
    for (const std::string& n : cks[j].names())
      if (!cks[0].has(n))
        fail("{}: has tensor '{}', which {} does not: weight merging needs the same tensors in every model", dirs[j],
             n, dirs[0]);
  }
  for (const std::string& n : names)
    for (size_t j = 0; j < cks.size(); ++j)
      if (!is_float(cks[j].info(n).dtype))
        fail("{}: tensor '{}' has dtype {}; weight merging averages floating-point tensors only",
             cks[j].info(n).file, n, dtype_name(cks[j].info(n).dtype));

  MergeResult res;
  res.dtype = dtype ? *dtype : checkpoint_dtype(cks[0]);
  // Each merged tensor is computed when the writer reaches it (SafetensorsEntry::produce): memory
  // holds one tensor's accumulator, never the whole merged model.
  std::vector<double> acc;
  auto merge_tensor = [&](const std::string& n, std::span<float> out) {
    const size_t count = out.size();
    acc.assign(count, 0.0);
    // Fixed order (model 0, 1, ...) in double: the result does not depend on threads, and the
    // rounding to fp32 happens once, as torch's float64 sum then .float() does.
    for (size_t j = 0; j < cks.size(); ++j) {
      convert_to_f32(cks[j].info(n), out);
      const double w = weights[j];
      for (size_t i = 0; i < count; ++i) acc[i] += w * double(out[i]);
    }
    for (size_t i = 0; i < count; ++i) out[i] = float(acc[i]);
  };
  std::vector<SafetensorsEntry> entries;
  entries.reserve(names.size());
  for (const std::string& n : names) {
    SafetensorsEntry e;
    e.name = n;
    e.shape = cks[0].info(n).shape;
    e.produce = [&merge_tensor, n](std::span<float> out) { merge_tensor(n, out); };
    res.parameters += numel(e.shape);
    entries.push_back(std::move(e));
  }
  ExportOptions opt;
  opt.dtype = res.dtype;
  res.files = export_hf(entries, dirs[0], dirs[0], out_dir, opt);
  res.tensors = names.size();
  return res;
}

}  // namespace fusellm
