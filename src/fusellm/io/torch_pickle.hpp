#pragma once
// The pickle of a PyTorch zip checkpoint (`<archive>/data.pkl`), read without running it.
//
// torch.save (torch/serialization.py, _save) pickles the state dict with protocol 2 and replaces
// every storage by a persistent id ('storage', <storage type>, <key>, <location>, <numel>), whose
// bytes live in the zip entry `<archive>/data/<key>`; each tensor is a call
// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks).
// This reader is a small stack machine over the opcodes such a pickle uses (Python's
// Lib/pickletools.py names them) that never calls anything: GLOBAL only resolves to one of the
// allowed names below, and REDUCE of an allowed name builds a descriptor. Every other global
// (posix.system, builtins.eval, ...) is an error at its GLOBAL opcode, before any REDUCE.
//
// Allowed globals (everything a transformers-saved state dict uses, torch 1.6 to 2.5):
//   collections.OrderedDict            the state dict itself, and each tensor's empty backward_hooks
//   torch._utils._rebuild_tensor_v2    a tensor: storage, offset, size, stride, requires_grad, hooks[, metadata]
//   torch._utils._rebuild_parameter    an nn.Parameter around a tensor (torch.save(dict(named_parameters())))
//   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage   the storage's element type
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/tensor.hpp"

namespace fusellm {

// One tensor of the state dict, as the pickle describes it (offset and stride in elements).
struct TorchTensorRef {
  std::string name;
  std::string storage_key;    // the zip entry <archive>/data/<storage_key>
  DType dtype;
  int64_t storage_numel = 0;  // elements of the whole storage, as the persistent id says
  int64_t offset = 0;
  Shape shape;
  std::vector<int64_t> stride;
};

// The tensors of a state-dict pickle, in the pickle's order. `origin` names the file in errors
// (unknown opcodes with their byte offset, refused globals, malformed tensors).
std::vector<TorchTensorRef> parse_torch_pickle(std::span<const std::byte> pkl, const std::string& origin);

// "collections.OrderedDict, torch._utils._rebuild_tensor_v2, ..." for messages and the README.
std::string torch_pickle_allowed_globals();

}  // namespace fusellm
