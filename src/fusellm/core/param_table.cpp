#include "fusellm/core/param_table.hpp"

#include "fusellm/core/error.hpp"

namespace fusellm {

TensorView::TensorView(std::span<float> data, Shape shape) : data_(data), shape_(std::move(shape)) {
  if (int64_t(data_.size()) != numel(shape_))
    fail("TensorView: {} values do not fill shape {}", data_.size(), shape_str(shape_));
}

int ParamTable::add(std::string name, Shape shape) {
  if (find(name)) fail("parameter table: '{}' is added twice", name);
  for (const int64_t d : shape)
    if (d < 0) fail("parameter table: '{}' has a negative dimension in {}", name, shape_str(shape));
  ParamEntry e;
  e.size = numel(shape);
  e.name = std::move(name);
  e.shape = std::move(shape);
  e.offset = total_;
  total_ += e.size;
  entries_.push_back(std::move(e));
  return int(entries_.size()) - 1;
}

const ParamEntry* ParamTable::find(std::string_view name) const {
  for (const ParamEntry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

TensorView ParamTable::view(std::span<float> flat, int i) const {
  if (int64_t(flat.size()) != total_)
    fail("parameter table: a buffer of {} floats for a table of {}", flat.size(), total_);
  const ParamEntry& e = (*this)[i];
  return TensorView(flat.subspan(size_t(e.offset), size_t(e.size)), e.shape);
}

}  // namespace fusellm
