#pragma once
// One file of a checkpoint, whatever its format (safetensors, torch zip): a name -> tensor table
// whose bytes stay valid, in place, for as long as the file object lives. Checkpoint holds a list
// of these, so its callers see one code path for every format.
#include <map>
#include <span>
#include <string>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/tensor.hpp"

namespace fusellm {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  std::span<const std::byte> bytes;  // contiguous, little-endian; inside the file's mapping or buffer
  std::string file;                  // the path of the file it lives in
};

class WeightFile {
 public:
  virtual ~WeightFile() = default;
  virtual const std::string& path() const = 0;
  virtual const std::map<std::string, TensorInfo>& tensors() const = 0;
  virtual const char* format() const = 0;  // "safetensors", "torch zip"
};

}  // namespace fusellm
