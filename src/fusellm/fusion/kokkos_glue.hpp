#pragma once
// What the host-side fusion wrappers share: the execution space they run on (Kokkos' default:
// OpenMP here, CUDA in a CUDA-enabled Kokkos build), the sparse-row types on the host and on that
// space, and the moves between host spans and Views of the default memory space (no copy when that
// space is host-accessible).
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <span>
#include <string>

#include "fusellm/core/error.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::fusion {

using ExecSpace = Kokkos::DefaultExecutionSpace;
using DeviceMem = ExecSpace::memory_space;
using HostRows = SparseRows<Kokkos::HostSpace>;
using DeviceRows = SparseRows<DeviceMem>;

template <class T>
using DeviceView1 = Kokkos::View<T*, DeviceMem>;
template <class T>
using DeviceView2 = Kokkos::View<T**, Kokkos::LayoutRight, DeviceMem>;

inline constexpr bool kDeviceIsHost =
    Kokkos::SpaceAccessibility<ExecSpace, Kokkos::HostSpace>::accessible;

// A host span seen as a View the default execution space can read: the span itself when that
// space reads host memory, else a device copy.
template <class T>
DeviceView1<const T> to_device(std::span<const T> s, const std::string& label) {
  Kokkos::View<const T*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(s.data(),
                                                                                      s.size());
  if constexpr (kDeviceIsHost) {
    return h;
  } else {
    DeviceView1<T> d(label, s.size());
    Kokkos::deep_copy(d, h);
    return d;
  }
}
template <class T>
DeviceView2<const T> to_device(std::span<const T> s, int64_t rows, int64_t cols,
                               const std::string& label) {
  if (int64_t(s.size()) != rows * cols)
    fail("{}: {} values for a [{}, {}] matrix", label, s.size(), rows, cols);
  Kokkos::View<const T**, Kokkos::LayoutRight, Kokkos::HostSpace,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      h(s.data(), rows, cols);
  if constexpr (kDeviceIsHost) {
    return h;
  } else {
    DeviceView2<T> d(label, rows, cols);
    Kokkos::deep_copy(d, h);
    return d;
  }
}

// Templates so that the branch not taken is not compiled (the types differ on a GPU build).
template <class Rows = HostRows>
DeviceRows rows_to_device(const Rows& h) {
  if constexpr (kDeviceIsHost) {
    return h;
  } else {
    DeviceRows d;
    d.ids = Kokkos::create_mirror_view_and_copy(DeviceMem(), h.ids);
    d.probs = Kokkos::create_mirror_view_and_copy(DeviceMem(), h.probs);
    d.tail = Kokkos::create_mirror_view_and_copy(DeviceMem(), h.tail);
    return d;
  }
}
template <class Rows = DeviceRows>
HostRows rows_to_host(const Rows& d) {
  if constexpr (kDeviceIsHost) {
    return d;
  } else {
    HostRows h;
    h.ids = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d.ids);
    h.probs = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d.probs);
    h.tail = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), d.tail);
    return h;
  }
}

template <class V>
auto to_std_vector(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<typename V::non_const_value_type>(h.data(), h.data() + h.size());
}

}  // namespace fusellm::fusion
