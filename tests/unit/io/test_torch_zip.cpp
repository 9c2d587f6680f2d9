// PyTorch zip checkpoints (pytorch_model.bin): a tiny Llama saved by transformers with
// safe_serialization=False, single and sharded, in fp32, fp16 and bf16, reads as the same tensors,
// bit for bit, as the same model saved as safetensors; storages are read in place from the map;
// and every file tests/reference/gen_torch_bin.py made to be refused is, with the file named.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>

#include "error_of.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/io/torch_zip.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

const fs::path kDir = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fixtures" / "torch_bin";

class TorchBin : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TorchBin, SameTensorsAsSafetensors) {
  const auto& [dtype, layout] = GetParam();
  const Checkpoint bin((kDir / ("llama_" + dtype) / layout).string());
  const Checkpoint ref((kDir / ("llama_" + dtype) / "safetensors").string());
  EXPECT_EQ(bin.format(), "torch zip");
  EXPECT_EQ(ref.format(), "safetensors");
  ASSERT_EQ(bin.names(), ref.names());
  EXPECT_EQ(bin.dtype_counts(), ref.dtype_counts());
  EXPECT_EQ(bin.num_parameters(), ref.num_parameters());
  for (const std::string& n : ref.names()) {
    const TensorInfo &a = bin.info(n), &b = ref.info(n);
    EXPECT_EQ(a.dtype, b.dtype) << n;
    EXPECT_EQ(a.shape, b.shape) << n;
    ASSERT_EQ(a.bytes.size(), b.bytes.size()) << n;
    EXPECT_EQ(std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()), 0) << n;
    const Tensor x = bin.load_f32(n), y = ref.load_f32(n);
    EXPECT_EQ(std::memcmp(x.data(), y.data(), sizeof(float) * size_t(x.size())), 0) << n;
  }
  if (layout == "bin_sharded") {
    EXPECT_GT(bin.shard_files().size(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchBin,
                         ::testing::Combine(::testing::Values("f32", "f16", "bf16"),
                                            ::testing::Values("bin", "bin_sharded")),
                         [](const auto& p) { return std::get<0>(p.param) + "_" + std::get<1>(p.param); });

// torch writes storages STORED at 64-byte aligned offsets: each is read in place, so its bytes
// sit in the page-aligned map at a 64-byte boundary, and nothing was copied.
TEST(TorchZipFile, StoragesAreMappedInPlace) {
  const TorchZipFile f((kDir / "llama_f32" / "bin" / "pytorch_model.bin").string());
  EXPECT_EQ(f.mapped_storages(), f.tensors().size());
  for (const auto& [name, t] : f.tensors()) EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes.data()) % 64, 0u) << name;
}

struct Bad {
  const char* file;
  std::vector<const char*> says;
};

class TorchBinRefused : public ::testing::TestWithParam<Bad> {};

TEST_P(TorchBinRefused, WithAnErrorNamingTheFile) {
  const std::string path = (kDir / "bad" / GetParam().file).string();
  const std::string e = error_of([&] { TorchZipFile f(path); });
  ASSERT_NE(e, "") << path;
  EXPECT_NE(e.find(path), std::string::npos) << e;
  for (const char* s : GetParam().says) EXPECT_NE(e.find(s), std::string::npos) << e;
  std::printf("  %s\n", e.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, TorchBinRefused,
    ::testing::Values(Bad{"os_system.bin", {"global 'posix.system' is not allowed", "byte 2"}},
                      Bad{"builtins_eval.bin", {"global 'builtins.eval' is not allowed"}},
                      Bad{"entry_out_of_bounds.bin", {"entry 'archive/data/0' is out of bounds"}},
                      Bad{"short_storage.bin", {"storage is shorter than its tensor", "'w'"}},
                      Bad{"truncated.bin", {"not a readable zip archive"}},
                      Bad{"legacy.bin", {"legacy format", "torch.save(torch.load("}},
                      Bad{"transposed.bin", {"tensor 't' is not contiguous (shape [3, 2], stride [1, 3])"}}),
    [](const auto& p) { return fs::path(p.param.file).stem().string(); });

// good.bin as torch wrote it (STORED, read in place) and rewritten with DEFLATE (read into a buffer).
class TorchZipGood : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchZipGood, Reads) {
  const TorchZipFile f((kDir / "bad" / GetParam()).string());
  EXPECT_EQ(f.mapped_storages(), GetParam() == "good.bin" ? 1u : 0u);
  ASSERT_EQ(f.tensors().size(), 1u);
  const TensorInfo& w = f.tensors().at("w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, Shape{10});
  Tensor t(w.shape);
  convert_to_f32(w, t.span());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t[i], float(i));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TorchZipGood, ::testing::Values("good.bin", "deflated.bin"),
                         [](const auto& p) { return fs::path(p.param).stem().string(); });

// Views of one storage (as tied weights are saved): one storage entry, read once, at each offset.
TEST(TorchZipFile, ViewsShareTheirStorage) {
  const TorchZipFile f((kDir / "bad" / "shared.bin").string());
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.mapped_storages(), 1u);
  const TensorInfo &w = f.tensors().at("w"), &part = f.tensors().at("part"), &m = f.tensors().at("matrix");
  EXPECT_EQ(part.bytes.data(), w.bytes.data() + 2 * sizeof(float));
  EXPECT_EQ(m.bytes.data(), w.bytes.data());
  EXPECT_EQ(m.shape, (Shape{2, 5}));
  Tensor t(part.shape);
  convert_to_f32(part, t.span());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t[i], float(i + 2));
}

// A directory whose pytorch_model.bin is in the legacy format: the Checkpoint error names it.
TEST(TorchZipCheckpoint, LegacyFileInADirectory) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_torch_legacy_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kDir / "bad" / "legacy.bin", dir / "pytorch_model.bin", fs::copy_options::overwrite_existing);
  const std::string e = error_of([&] { Checkpoint c(dir.string()); });
  EXPECT_NE(e.find((dir / "pytorch_model.bin").string()), std::string::npos) << e;
  EXPECT_NE(e.find("legacy format"), std::string::npos) << e;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fusellm
