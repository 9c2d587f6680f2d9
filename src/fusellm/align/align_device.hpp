#pragma once
// Host -> Kokkos memory copies shared by the align wrappers (vocab_mapping.cpp, align_tokens.cpp).
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kokkos/align_common.hpp"

namespace fusellm::align::detail {

// A managed copy of `v` in Mem. (create_mirror_view_and_copy would hand back the unmanaged host
// wrapper itself when Mem is host memory, aliasing a vector that may not outlive the view.)
template <class Mem, class T>
Kokkos::View<const T*, Mem> to_device(const std::vector<T>& v) {
  Kokkos::View<const T*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> host(v.data(), v.size());
  Kokkos::View<T*, Mem> d(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fusellm::align::copy"), v.size());
  Kokkos::deep_copy(d, host);
  return d;
}

// Strings as one byte buffer + offsets [n + 1] in Mem.
template <class Mem>
AlignStrings<Mem> strings_to_device(const std::vector<std::string>& strs) {
  std::vector<int64_t> off(strs.size() + 1, 0);
  for (size_t i = 0; i < strs.size(); ++i) off[i + 1] = off[i] + int64_t(strs[i].size());
  std::vector<uint8_t> chars(size_t(off.back()));
  for (size_t i = 0; i < strs.size(); ++i) std::copy(strs[i].begin(), strs[i].end(), chars.begin() + off[i]);
  return {to_device<Mem>(chars), to_device<Mem>(off)};
}

}  // namespace fusellm::align::detail
