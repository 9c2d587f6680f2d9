#pragma once
// Test helpers: write safetensors files byte by byte (valid ones laid out as the reference writer
// does, and raw ones for the malformed cases), and assert on fusellm::Error messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/core/tensor.hpp"

namespace fusellm::test {

namespace fs = std::filesystem;

struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
  std::vector<std::byte> data;
};

template <typename T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

inline void write_bytes(const fs::path& p, std::string_view s) {
  std::ofstream out(p, std::ios::binary);
  out.write(s.data(), std::streamsize(s.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

// 8-byte little-endian length (`len`, default the header's size), the header text, the buffer.
inline void write_raw(const fs::path& p, const std::string& header, const std::vector<std::byte>& buffer,
                      std::optional<uint64_t> len = std::nullopt) {
  std::string s(8, '\0');
  const uint64_t n = len.value_or(header.size());
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  s += header;
  s.append(reinterpret_cast<const char*>(buffer.data()), buffer.size());
  write_bytes(p, s);
}

// A valid file: tensors packed in the given order, header padded with spaces to a multiple of 8
// (as safetensors' serialize does) unless `pad` is false.
inline void write_safetensors(const fs::path& p, const std::vector<Entry>& entries,
                              const std::map<std::string, std::string>& metadata = {}, bool pad = true) {
  nlohmann::json h = nlohmann::json::object();
  std::vector<std::byte> buffer;
  for (const Entry& e : entries) {
    const size_t begin = buffer.size();
    buffer.insert(buffer.end(), e.data.begin(), e.data.end());
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {begin, buffer.size()}}};
  }
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string text = h.dump();
  if (pad) text.append((8 - text.size() % 8) % 8, ' ');
  write_raw(p, text, buffer);
}

// The message of the fusellm::Error that f throws ("" and a test failure when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a fusellm::Error";
  return "";
}

inline void expect_has_all(const std::string& msg, std::initializer_list<std::string_view> parts) {
  for (std::string_view p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "message lacks \"" << p << "\":\n  " << msg;
}

// EXPECT_FAILS_WITH(statement, "part", "other part"): statement throws fusellm::Error whose
// message contains every part.
#define EXPECT_FAILS_WITH(stmt, ...)                                              \
  do {                                                                            \
    SCOPED_TRACE(#stmt);                                                          \
    ::fusellm::test::expect_has_all(::fusellm::test::error_of([&] { stmt; }), {__VA_ARGS__}); \
  } while (0)

// A fresh directory per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("fusellm_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

}  // namespace fusellm::test
