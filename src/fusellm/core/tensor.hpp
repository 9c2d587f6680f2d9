#pragma once
// A plain fp32 host tensor: row-major, contiguous, owning its memory. The CPU forward pass and
// the tests use it; the kernels take std::span or Kokkos Views over its data.
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"

namespace fusellm {

using Shape = std::vector<int64_t>;

inline int64_t numel(const Shape& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>());
}
std::string shape_str(const Shape& s);  // "[4, 7]"

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float fill = 0.f) : shape_(std::move(shape)), data_(numel(shape_), fill) {}
  Tensor(Shape shape, std::vector<float> data) : shape_(std::move(shape)), data_(std::move(data)) {
    if (int64_t(data_.size()) != numel(shape_))
      fail("Tensor: {} values do not fill shape {}", data_.size(), shape_str(shape_));
  }

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return int(shape_.size()); }
  int64_t size() const { return int64_t(data_.size()); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  std::span<float> span() { return data_; }
  std::span<const float> span() const { return data_; }
  // Row r of a tensor seen as [dim0*...*dim(-2), dim(-1)].
  std::span<float> row(int64_t r) { return {data_.data() + r * dim(-1), size_t(dim(-1))}; }
  std::span<const float> row(int64_t r) const { return {data_.data() + r * dim(-1), size_t(dim(-1))}; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }
  void reshape(Shape s) {
    if (numel(s) != size()) fail("Tensor: cannot reshape {} to {}", shape_str(shape_), shape_str(s));
    shape_ = std::move(s);
  }

 private:
  Shape shape_;
  std::vector<float> data_;
};

}  // namespace fusellm
