#include "fusellm/core/tensor.hpp"

#include <fmt/ranges.h>

namespace fusellm {
std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }
}  // namespace fusellm
