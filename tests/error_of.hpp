#pragma once
// The message of the fusellm::Error that f() throws, or "" when it throws none (tests that expect
// success compare with ""). Other exceptions propagate and fail the test.
#include <string>
#include <utility>

#include "fusellm/core/error.hpp"

namespace fusellm::testing {

template <class F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace fusellm::testing
