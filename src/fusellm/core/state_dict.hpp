#pragma once
// The state of a component as a checkpoint stores it, in the manner of PyTorch's state_dict: fp32
// tensors by name in named groups ("model", "optim/m"), texts by name, and key/values. The trainer
// fills one from its parts (the optimizer and the schedule adapt themselves into it: optim/), the
// checkpoint store (ckpt/) writes and reads it, and neither knows the other. A distributed job's
// rank fills one with its shard.
//
// StateDictRef references the caller's memory (no copy of 7B parameters), for saving;
// StateDict owns what was loaded.
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fusellm/core/tensor.hpp"

namespace fusellm {

// A tensor to save, by reference. data.size() must equal numel(shape).
struct TensorRef {
  std::string name;
  Shape shape;
  std::span<const float> data;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

using StateValue = std::variant<int64_t, uint64_t, double, std::string>;

// Key/values in the order they were set (a checkpoint's checksum of them follows that order).
class KeyValues {
 public:
  void set(const std::string& key, StateValue v);  // replaces the value of an existing key in its place
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  const StateValue* find(const std::string& key) const;
  // The value of key, or Error naming `where`, the key and what is wrong (missing, another type).
  int64_t i64(const std::string& key, const std::string& where) const;
  uint64_t u64(const std::string& key, const std::string& where) const;
  double f64(const std::string& key, const std::string& where) const;
  const std::string& str(const std::string& key, const std::string& where) const;
  const std::vector<std::pair<std::string, StateValue>>& entries() const { return entries_; }
  bool operator==(const KeyValues&) const = default;

 private:
  std::vector<std::pair<std::string, StateValue>> entries_;
};

template <class T>
struct BasicStateDict {
  std::vector<std::pair<std::string, std::vector<T>>> groups;  // tensor groups, in order
  std::vector<std::pair<std::string, std::string>> texts;      // name -> text (bytes)
  KeyValues values;

  // The group of that name, appended empty when absent.
  std::vector<T>& group(const std::string& name) {
    for (auto& [n, g] : groups)
      if (n == name) return g;
    return groups.emplace_back(name, std::vector<T>{}).second;
  }
  const std::vector<T>* find_group(const std::string& name) const {
    for (const auto& [n, g] : groups)
      if (n == name) return &g;
    return nullptr;
  }
  const std::string* find_text(const std::string& name) const {
    for (const auto& [n, t] : texts)
      if (n == name) return &t;
    return nullptr;
  }
};

using StateDictRef = BasicStateDict<TensorRef>;
using StateDict = BasicStateDict<NamedTensor>;

}  // namespace fusellm
