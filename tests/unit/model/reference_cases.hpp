#pragma once
// The reference cases of a model fixture (reference/cases.safetensors, written by
// tests/reference/gen_models.py and gen_torch_bin.py): per case the token ids, the document ids of
// packed cases and the logits transformers computed; and the error measure the tests apply.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/io/safetensors.hpp"

namespace fusellm::testing {

// The fixtures of tests/fixtures/models/ (gen_models.py), every one of which the CPU and the GPU
// forward tests run (test_model_reference checks that none on disk is missing here).
inline const std::vector<std::string> kReferenceModels = {
    "llama_gqa",         "llama_bias_tied_bf16", "qwen2_dynamic_sharded", "mistral_swa_fp16",
    "llama3_rope",       "mpt_alibi",            "mpt_clip_untied_fp16",  "mpt_mosaicml_bias5_ffn120",
    "mpt_mosaicml_bias12_ratio3", "neox_parallel", "neox_sequential_bf16", "neox_dynamic",
    "gpt2_tied",         "gpt2_inner_fp16_sharded",
};

struct Case {
  std::string name;
  std::vector<int32_t> ids, doc_ids;
  Tensor logits;
};

inline std::vector<int32_t> read_i32(const TensorInfo& t) {
  if (t.dtype != DType::I32) throw Error(t.name + ": expected I32");
  std::vector<int32_t> v(t.bytes.size() / 4);
  std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

inline std::vector<Case> read_cases(const std::filesystem::path& cases_file) {
  const SafetensorsFile f(cases_file.string());
  std::vector<Case> cases;
  for (const auto& [name, info] : f.tensors()) {
    const std::string suffix = ".logits";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix)) continue;
    Case c;
    c.name = name.substr(0, name.size() - suffix.size());
    c.logits = Tensor(info.shape);
    convert_to_f32(info, c.logits.span());
    c.ids = read_i32(*f.find(c.name + ".ids"));
    if (const TensorInfo* d = f.find(c.name + ".doc_ids")) c.doc_ids = read_i32(*d);
    cases.push_back(std::move(c));
  }
  return cases;
}

// max |got - ref| / max |ref|
inline double relative_error(const Tensor& got, const Tensor& ref) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, double(std::fabs(got[i] - ref[i])));
    scale = std::max(scale, double(std::fabs(ref[i])));
  }
  return diff / scale;
}

}  // namespace fusellm::testing
