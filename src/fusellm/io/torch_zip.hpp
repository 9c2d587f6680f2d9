#pragma once
// PyTorch's zip checkpoint format (torch >= 1.6, torch/serialization.py _save with
// _use_new_zipfile_serialization=True, the default), as transformers writes pytorch_model.bin:
//   <archive>/data.pkl     the state dict pickled with protocol 2; storages as persistent ids
//   <archive>/byteorder    "little" (torch >= 2.1; absent means little)
//   <archive>/data/<key>   the bytes of storage <key>, written STORED and 64-byte aligned
//   <archive>/version, .data/serialization_id, ...   not needed to read tensors
// The archive is read with libzip; data.pkl by torch_pickle.hpp, which runs nothing. Storages
// stored uncompressed point into the file's memory map; compressed ones (not written by torch,
// but valid zip) are read into buffers. Each tensor must be contiguous (torch.save keeps strides;
// transformers saves .contiguous() tensors) and lie inside its storage.
// The legacy format (a bare pickle, _use_new_zipfile_serialization=False) is refused with the
// command that converts it.
#include <map>
#include <string>
#include <vector>

#include "fusellm/core/mapped_file.hpp"
#include "fusellm/io/weight_file.hpp"

namespace fusellm {

class TorchZipFile : public WeightFile {
 public:
  explicit TorchZipFile(const std::string& path);  // throws Error naming the file
  const std::string& path() const override { return file_.path(); }
  const std::map<std::string, TensorInfo>& tensors() const override { return tensors_; }
  const char* format() const override { return "torch zip"; }
  size_t mapped_storages() const { return mapped_; }  // storages read in place (the rest were copied)

 private:
  MappedFile file_;
  std::map<std::string, std::vector<std::byte>> copies_;  // storage key -> bytes of a compressed entry
  std::map<std::string, TensorInfo> tensors_;
  size_t mapped_ = 0;
};

}  // namespace fusellm
