#pragma once
// Errors: every failure a user can cause (a bad file, a bad field, a bad setting) is thrown as
// fusellm::Error with enough context to fix it: the file, the field, what was expected and what
// was found. The CLI catches it at the boundary, prints it and exits non-zero.
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace fusellm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// fail("{}: tensor '{}' has {} bytes, expected {}", path, name, n, m)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Rethrows with a prefix ("while loading /x/model: " + inner message).
template <typename F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace fusellm
