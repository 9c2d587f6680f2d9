#pragma once
// Named tensors laid out in ONE flat fp32 buffer: a table of (name, shape, offset) entries, each
// tensor a contiguous run of the buffer, in the order they were added, with no gaps.
//
// Why one buffer: a model's parameters and its gradients are then two allocations of the same
// layout, so a data-parallel optimizer shards them by offset range (ZeRO-1: rank r owns
// [begin_r, end_r) of both, a range that may cut a tensor), a collective reduces or gathers one
// contiguous span, a GPU backend holds the model in one device allocation and copies it in one
// transfer, and a checkpoint writes the table's named views. llm.c's params_memory /
// grads_memory with their param_sizes are the same idea; torch's FSDP flat_param too.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/core/tensor.hpp"

namespace fusellm {

struct ParamEntry {
  std::string name;    // Hugging Face name for the models the loaders read
  Shape shape;
  int64_t offset = 0;  // in floats, from the start of the buffer
  int64_t size = 0;    // numel(shape)
};

// A tensor seen through a flat buffer: its span and shape, owning nothing.
class TensorView {
 public:
  TensorView() = default;
  TensorView(std::span<float> data, Shape shape);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(size_t(i < 0 ? int(shape_.size()) + i : i)); }
  int rank() const { return int(shape_.size()); }
  int64_t size() const { return int64_t(data_.size()); }
  float* data() const { return data_.data(); }
  std::span<float> span() const { return data_; }
  float& operator[](int64_t i) const { return data_[size_t(i)]; }

 private:
  std::span<float> data_;
  Shape shape_;
};

class ParamTable {
 public:
  // Appends a tensor after the last one; returns its index. A repeated name is an Error.
  int add(std::string name, Shape shape);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry& operator[](int i) const { return entries_.at(size_t(i)); }
  int size() const { return int(entries_.size()); }
  int64_t total() const { return total_; }  // floats in the buffer
  const ParamEntry* find(std::string_view name) const;

  // Tensor i of a buffer laid out by this table (Error when the buffer is not total() long).
  TensorView view(std::span<float> flat, int i) const;

 private:
  std::vector<ParamEntry> entries_;
  int64_t total_ = 0;
};

}  // namespace fusellm
