#pragma once
// Sparse next-token distributions, the currency between teachers and the student
// (DESIGN.md section 2): for each of T positions, up to k (id, probability) pairs over some
// vocabulary. An empty slot has id -1 and probability 0. Rows are kept sorted by probability,
// descending, ties by ascending id, so equal inputs give bit-equal rows on every backend.
#include <Kokkos_Core.hpp>
#include <cstdint>

namespace fusellm {

template <class MemorySpace = Kokkos::HostSpace>
struct SparseRows {
  Kokkos::View<int32_t**, Kokkos::LayoutRight, MemorySpace> ids;   // [T, k]
  Kokkos::View<float**, Kokkos::LayoutRight, MemorySpace> probs;   // [T, k]
  // Optional "other" bucket: probability mass outside the kept ids (0 when not tracked).
  Kokkos::View<float*, MemorySpace> tail;                          // [T] or empty

  SparseRows() = default;
  SparseRows(const std::string& label, int64_t T, int64_t k, bool with_tail = false)
      : ids(label + ".ids", T, k), probs(label + ".probs", T, k),
        tail(label + ".tail", with_tail ? T : 0) {
    Kokkos::deep_copy(ids, -1);
  }
  KOKKOS_INLINE_FUNCTION int64_t rows() const { return int64_t(ids.extent(0)); }
  KOKKOS_INLINE_FUNCTION int64_t k() const { return int64_t(ids.extent(1)); }
};

}  // namespace fusellm
