// The safetensors writer against the reader: written tensors read back bit-identical (F32) or
// as torch's bf16 rounding (BF16); the header padded to 8 bytes with spaces, metadata kept;
// writes are atomic (no temporary left, an existing file replaced whole); bad input refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/io/safetensors_writer.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fusellm_stw_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<float> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

TEST(SafetensorsWriter, F32RoundTripIsBitIdentical) {
  const fs::path dir = temp_dir("f32");
  auto a = random_values(6 * 5, 1), b = random_values(7, 2);
  a[0] = std::numeric_limits<float>::denorm_min();
  a[1] = -0.f;
  a[2] = std::numeric_limits<float>::infinity();
  const std::vector<SafetensorsEntry> t = {{"w.weight", {6, 5}, a}, {"b.bias", {7}, b}, {"scalar", {}, std::span(b).first(1)}};
  const std::string path = (dir / "x.safetensors").string();
  write_safetensors(path, t, DType::F32, {{"format", "pt"}});
  const SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 3u);
  for (const SafetensorsEntry& e : t) {
    const TensorInfo* info = f.find(e.name);
    ASSERT_NE(info, nullptr) << e.name;
    EXPECT_EQ(info->dtype, DType::F32);
    EXPECT_EQ(info->shape, e.shape);
    ASSERT_EQ(info->bytes.size(), e.data.size() * 4);
    EXPECT_EQ(std::memcmp(info->bytes.data(), e.data.data(), info->bytes.size()), 0) << e.name;
  }
  // Header length is a multiple of 8 and the padding is spaces.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string h(n, '\0');
  in.read(h.data(), std::streamsize(n));
  EXPECT_EQ(h.front(), '{');
  EXPECT_EQ(h.find_last_not_of(' '), h.rfind('}'));
  // Nothing but the file in the directory: no temporary left.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

TEST(SafetensorsWriter, BF16RoundsToNearestEven) {
  const fs::path dir = temp_dir("bf16");
  const auto a = random_values(33, 3);
  const std::vector<SafetensorsEntry> t = {{"a", {3, 11}, a}};
  const std::string path = (dir / "x.safetensors").string();
  write_safetensors(path, t, DType::BF16);
  const SafetensorsFile f(path);
  const TensorInfo* info = f.find("a");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, DType::BF16);
  std::vector<float> back(a.size());
  convert_to_f32(*info, back);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(a[i])));
  fs::remove_all(dir);
}

TEST(SafetensorsWriter, ReplacesAnExistingFileWhole) {
  const fs::path dir = temp_dir("replace");
  const std::string path = (dir / "x.safetensors").string();
  const auto a = random_values(100, 4), b = random_values(3, 5);
  write_safetensors(path, std::vector<SafetensorsEntry>{{"a", {100}, a}});
  write_safetensors(path, std::vector<SafetensorsEntry>{{"b", {3}, b}});
  const SafetensorsFile f(path);
  EXPECT_EQ(f.find("a"), nullptr);
  ASSERT_NE(f.find("b"), nullptr);
  fs::remove_all(dir);
}

TEST(SafetensorsWriter, RefusesBadInput) {
  const fs::path dir = temp_dir("bad");
  const std::string path = (dir / "x.safetensors").string();
  const auto a = random_values(4, 6);
  EXPECT_THROW(write_safetensors(path, std::vector<SafetensorsEntry>{{"a", {5}, a}}), Error);  // size
  EXPECT_THROW(write_safetensors(path, std::vector<SafetensorsEntry>{{"a", {4}, a}, {"a", {4}, a}}), Error);
  EXPECT_THROW(write_safetensors(path, std::vector<SafetensorsEntry>{{"a", {4}, a}}, DType::I32), Error);
  EXPECT_THROW(write_safetensors((dir / "no/such/dir/x.safetensors").string(),
                                 std::vector<SafetensorsEntry>{{"a", {4}, a}}),
               Error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);  // no temporaries
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fusellm
