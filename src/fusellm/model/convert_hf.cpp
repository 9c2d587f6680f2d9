// Checkpoint conversion to safetensors: see convert_hf.hpp. The tensors are produced one at a time
// while the writer reaches them (SafetensorsEntry::produce), so a 7B model is never whole in
// memory in fp32.
#include "fusellm/model/convert_hf.hpp"

#include <fmt/ranges.h>

#include <filesystem>
#include <set>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/decoder_params.hpp"

namespace fusellm {

namespace fs = std::filesystem;

ExportResult convert_hf(const std::string& model_dir, const std::string& out_dir, const ConvertOptions& opt) {
  std::error_code ec;
  if (fs::exists(out_dir, ec) && (!fs::is_directory(out_dir, ec) || !fs::is_empty(out_dir, ec)))
    fail("{}: exists and is not an empty directory (convert writes into a new or empty one, replacing nothing)",
         out_dir);
  const model::Arch arch = model::read_arch(model_dir);
  const Checkpoint ck(model_dir);
  // The model's parameters by the family's table: a tied head is the embedding's region, so it
  // is not in the table and is written once.
  const model::DecoderParams params = model::plan_decoder_params(arch, ck);
  std::vector<SafetensorsEntry> tensors;
  std::set<std::string_view> dtypes;
  for (const ParamEntry& e : params.table.entries()) {
    const TensorInfo& t = ck.info(e.name);
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      fail("{}: tensor '{}' is {}; only F32, F16 and BF16 parameters are converted", t.file, e.name,
           dtype_name(t.dtype));
    if (numel(t.shape) != e.size)
      fail("{}: tensor '{}' has shape {}, expected {} values", t.file, e.name, shape_str(t.shape), e.size);
    dtypes.insert(dtype_name(t.dtype));
    tensors.push_back({e.name, t.shape, {}, [&t](std::span<float> out) { convert_to_f32(t, out); }});
  }
  ExportOptions eo;
  eo.max_shard_bytes = opt.max_shard_bytes;
  if (opt.dtype) {
    eo.dtype = *opt.dtype;
  } else {
    // One file has one dtype per tensor, but the writer rounds every tensor to one: keep works
    // for the checkpoints publishers ship (a single dtype); a mixed one needs a choice.
    if (dtypes.size() != 1)
      fail("{}: the parameters are of several dtypes ({}): pass --dtype f32, bf16 or f16", model_dir,
           fmt::join(dtypes, ", "));
    eo.dtype = *dtype_from_name(*dtypes.begin());
  }
  // fp32 -> the stored dtype is exact for values read from that dtype, so keep writes the bytes read.
  return export_hf(tensors, model_dir, model_dir, out_dir, eo);
}

}  // namespace fusellm
