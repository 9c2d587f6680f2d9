#pragma once
// The message of the fusellm::Error that f() throws, or "" when it throws none (tests that expect
// success compare with ""). Other exceptions propagate and fail the test.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

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

// Expects f() to throw a fusellm::Error whose message holds every one of parts; prints the message
// (the GPU check's logs show what a user would read).
template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  const std::string msg = error_of(std::forward<F>(f));
  if (msg.empty()) {
    ADD_FAILURE() << "no error thrown (expected one mentioning '" << parts.front() << "')";
    return;
  }
  std::printf("    error: %s\n", msg.c_str());
  for (const auto& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
}

}  // namespace fusellm::testing
