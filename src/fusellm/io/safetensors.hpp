#pragma once
// Hugging Face safetensors checkpoints, memory-mapped.
//
// File layout (https://github.com/huggingface/safetensors, format section):
//   8 bytes  little-endian u64 N = header length
//   N bytes  UTF-8 JSON: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
//                         "__metadata__": {str: str}}   (optional)
//   rest     the byte buffer; data_offsets are relative to its start.
// Every tensor's byte range must lie inside the buffer, match dtype size * prod(shape), and not
// overlap another; violations are errors naming the file and the tensor.
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/mapped_file.hpp"
#include "fusellm/core/tensor.hpp"
#include "fusellm/io/weight_file.hpp"

namespace fusellm {

class SafetensorsFile : public WeightFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // maps and validates; throws Error
  const std::string& path() const override { return file_.path(); }
  const std::map<std::string, TensorInfo>& tensors() const override { return tensors_; }
  const char* format() const override { return "safetensors"; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;

 private:
  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a header held in memory against a buffer size (no file): used by the
// loader and by the libFuzzer target. `origin` names the file in error messages.
std::map<std::string, TensorInfo> parse_safetensors_header(std::span<const std::byte> file_bytes,
                                                           const std::string& origin,
                                                           std::map<std::string, std::string>* metadata);

// Converts any float dtype (F32, F16, BF16, F64) to fp32 into `out` (numel elements).
void convert_to_f32(const TensorInfo& t, std::span<float> out);

// A checkpoint directory, its file chosen as transformers' from_pretrained does: model.safetensors,
// or the shards listed by model.safetensors.index.json ("weight_map": tensor name -> shard file
// name); else pytorch_model.bin or the shards of pytorch_model.bin.index.json, read by
// TorchZipFile (torch_zip.hpp) without running their pickles.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);  // throws Error naming the dir/file
  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws Error naming the tensor
  // fp32 copy; when `expect` is given the shape must equal it (error names tensor, both shapes).
  Tensor load_f32(const std::string& name, const std::optional<Shape>& expect = std::nullopt) const;
  std::vector<std::string> names() const;
  std::vector<std::string> shard_files() const;  // file names, in order
  int64_t num_parameters() const;
  std::map<std::string, int64_t> dtype_counts() const;  // dtype name -> number of tensors
  std::string format() const;  // "safetensors" or "torch zip"

 private:
  std::string dir_;
  std::vector<std::unique_ptr<WeightFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace fusellm
