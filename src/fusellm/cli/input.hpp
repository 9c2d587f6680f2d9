#pragma once
// What the subcommands share to check their command line and their text inputs.
//
// A flag's value out of range is a usage error (exit 2, as a malformed command line): CLI11 runs
// the check and names the flag. An input text that is not UTF-8 is refused naming the file and
// the byte offset, as Python's `open(path, encoding="utf-8").read()` refuses it (`transformers`
// users read text that way), instead of failing later inside the tokenizer with no file name.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "fusellm/core/error.hpp"

namespace fusellm::cli {

// An integer flag's lower bound: below it, CLI11 reports "--flag: must be at least LO (why),
// found V". The unset default (e.g. -1 for "none") is not checked.
CLI::Validator at_least(int64_t lo, const std::string& why);

// f(), with a fusellm::Error it throws (a flag's value refused by the library's own parser, such
// as --weights) turned into a usage error (exit 2). Only for parsing flag values.
template <class F>
auto as_usage_error(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw CLI::ValidationError(e.what());
  }
}

// `what` ("notes.txt", "stdin line 3"): the first invalid UTF-8 sequence in `text`, with its byte
// offset, its line and the byte found, as an Error.
void require_utf8(std::string_view text, const std::string& what);

// A text file's bytes, refused as above when they are not UTF-8.
std::string read_utf8_file(const std::string& path);

}  // namespace fusellm::cli
