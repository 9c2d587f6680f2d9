// safetensors reading: round trips of every float dtype, checkpoints (single, sharded, one file of
// another name), every malformed input the loader must reject with a message naming the file and
// the tensor or field, and a fixture written by the real safetensors/torch writer.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "fusellm/core/dtype.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "unit/io/safetensors_writer.hpp"

using namespace fusellm;
using namespace fusellm::test;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(f32_to_f16(f));
  return out;
}
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(f32_to_bf16(f));
  return out;
}

void expect_same_bits(std::span<const float> got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
        << "element " << i << ": " << got[i] << " vs " << want[i];
}

std::vector<float> read_all(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  if (!t) throw std::runtime_error("no tensor " + name);
  std::vector<float> out(size_t(numel(t->shape)));
  convert_to_f32(*t, out);
  return out;
}

// Values every dtype represents exactly: signed zeros, f16 subnormals, the f16 range edges, inf.
const std::vector<float> kValues = {0.f, -0.f, 1.f, -2.5f, 0.1015625f, 65504.f, -65504.f,
                                    std::ldexp(1.f, -24), -std::ldexp(3.f, -24), std::ldexp(1.f, -14),
                                    kInf, -kInf};

}  // namespace

class Safetensors : public TempDirTest {};

// ---- round trips ------------------------------------------------------------------------------

TEST_F(Safetensors, RoundTripsEveryFloatDType) {
  std::vector<double> f64(kValues.begin(), kValues.end());
  write_safetensors(path("m.safetensors"),
                    {{"f32", "F32", {3, 4}, bytes_of(kValues)},
                     {"f16", "F16", {12}, bytes_of(to_f16(kValues))},
                     {"bf16", "BF16", {2, 2, 3}, bytes_of(to_bf16({1.f, -2.5f, 0.1015625f, 3.f, 0.f, -0.f,
                                                                   std::ldexp(1.f, -130), kInf, -kInf, 256.f,
                                                                   -1.f, 0.5f}))},
                     {"f64", "F64", {12}, bytes_of(f64)}},
                    {{"format", "pt"}});
  const SafetensorsFile f(path("m.safetensors"));
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("f32")->shape, (Shape{3, 4}));
  EXPECT_EQ(f.find("f32")->dtype, DType::F32);
  EXPECT_EQ(f.find("bf16")->shape, (Shape{2, 2, 3}));
  EXPECT_EQ(f.find("f16")->file, path("m.safetensors"));
  EXPECT_EQ(f.find("missing"), nullptr);
  expect_same_bits(read_all(f, "f32"), kValues);
  expect_same_bits(read_all(f, "f16"), kValues);
  expect_same_bits(read_all(f, "f64"), kValues);
  expect_same_bits(read_all(f, "bf16"), {1.f, -2.5f, 0.1015625f, 3.f, 0.f, -0.f, std::ldexp(1.f, -130), kInf,
                                         -kInf, 256.f, -1.f, 0.5f});
}

TEST_F(Safetensors, NanSurvivesConversion) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  write_safetensors(path("m.safetensors"), {{"h", "F16", {1}, bytes_of(std::vector<uint16_t>{0x7e00})},
                                            {"b", "BF16", {1}, bytes_of(to_bf16({nan}))},
                                            {"d", "F64", {1}, bytes_of(std::vector<double>{double(nan)})}});
  const SafetensorsFile f(path("m.safetensors"));
  for (const char* n : {"h", "b", "d"}) EXPECT_TRUE(std::isnan(read_all(f, n)[0])) << n;
}

// The vectorized f16 path must agree bit for bit with the reference f16_to_f32 on every half,
// NaN payloads included; 2^20+ elements also take the OpenMP-chunked path.
TEST_F(Safetensors, F16ConversionMatchesReferenceOnEveryHalf) {
  const size_t n = (size_t(1) << 20) + 12345;
  std::vector<uint16_t> halves(n);
  for (size_t i = 0; i < n; ++i) halves[i] = uint16_t(i * 40503u);  // odd multiplier: every value
  write_safetensors(path("m.safetensors"), {{"h", "F16", {int64_t(n)}, bytes_of(halves)}});
  const SafetensorsFile f(path("m.safetensors"));
  const std::vector<float> got = read_all(f, "h");
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(f16_to_f32(halves[i])))
        << std::hex << "half 0x" << halves[i];
  }
}

TEST_F(Safetensors, LargeBF16AndF32TakeTheParallelPath) {
  const size_t n = (size_t(3) << 20) + 7;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(int(i % 256) - 128) * 0.5f;  // exact in bf16
  write_safetensors(path("m.safetensors"),
                    {{"b", "BF16", {int64_t(n)}, bytes_of(to_bf16(v))}, {"f", "F32", {int64_t(n)}, bytes_of(v)}});
  const SafetensorsFile f(path("m.safetensors"));
  EXPECT_EQ(read_all(f, "b"), v);
  EXPECT_EQ(read_all(f, "f"), v);
}

// Nothing requires the header length to be a multiple of 8, so tensor data may be unaligned.
TEST_F(Safetensors, ReadsUnalignedData) {
  const std::vector<float> v = {1.f, 2.f, 3.f};
  write_safetensors(path("m.safetensors"), {{"a", "U8", {1}, {std::byte{7}}}, {"x", "F32", {3}, bytes_of(v)}}, {},
                    /*pad=*/false);
  const SafetensorsFile f(path("m.safetensors"));
  EXPECT_EQ(read_all(f, "x"), v);
}

TEST_F(Safetensors, EmptyAndZeroSizedTensors) {
  write_raw(path("empty.safetensors"), "{}", {});
  EXPECT_TRUE(SafetensorsFile(path("empty.safetensors")).tensors().empty());
  write_raw(path("meta.safetensors"), R"({"__metadata__": {"a": "b"}})", {});
  EXPECT_EQ(SafetensorsFile(path("meta.safetensors")).metadata().at("a"), "b");

  // Zero-byte tensors sit on any boundary, also at the start and the end.
  write_safetensors(path("z.safetensors"), {{"z0", "F32", {0}, {}},
                                            {"x", "F16", {2}, bytes_of(std::vector<uint16_t>{0x3c00, 0x4000})},
                                            {"z1", "BF16", {4, 0, 3}, {}}});
  const SafetensorsFile f(path("z.safetensors"));
  EXPECT_TRUE(read_all(f, "z0").empty());
  EXPECT_TRUE(read_all(f, "z1").empty());
  EXPECT_EQ(read_all(f, "x"), (std::vector<float>{1.f, 2.f}));

  // A scalar has shape [] and one element.
  write_safetensors(path("s.safetensors"), {{"s", "F32", {}, bytes_of(std::vector<float>{4.5f})}});
  EXPECT_EQ(read_all(SafetensorsFile(path("s.safetensors")), "s"), std::vector<float>{4.5f});
}

TEST_F(Safetensors, ParsesFromMemory) {
  write_safetensors(path("m.safetensors"), {{"x", "F32", {2}, bytes_of(std::vector<float>{1.f, 2.f})}},
                    {{"k", "v"}});
  const MappedFile mf(path("m.safetensors"));
  std::map<std::string, std::string> meta;
  const auto tensors = parse_safetensors_header(mf.bytes(), "memory", &meta);
  EXPECT_EQ(tensors.at("x").file, "memory");
  EXPECT_EQ(meta.at("k"), "v");
  EXPECT_EQ(parse_safetensors_header(mf.bytes(), "memory", nullptr).size(), 1u);
}

TEST_F(Safetensors, ConvertRejectsIntegersAndWrongSizes) {
  write_safetensors(path("m.safetensors"), {{"ids", "I32", {2}, bytes_of(std::vector<int32_t>{1, 2})},
                                            {"x", "F32", {2}, bytes_of(std::vector<float>{1.f, 2.f})}});
  const SafetensorsFile f(path("m.safetensors"));
  std::vector<float> out(2);
  EXPECT_FAILS_WITH(convert_to_f32(*f.find("ids"), out), path("m.safetensors"), "'ids'", "I32",
                    "not a floating-point");
  std::vector<float> small(1);
  EXPECT_FAILS_WITH(convert_to_f32(*f.find("x"), small), "'x'", "2 elements", "holds 1");
  TensorInfo forged = *f.find("x");
  forged.shape = {3};
  std::vector<float> three(3);
  EXPECT_FAILS_WITH(convert_to_f32(forged, three), "'x'", "8 bytes for 3 elements");
}

// ---- malformed files: each error names the file, the tensor or field, and what was expected ----

class SafetensorsBad : public TempDirTest {
 protected:
  // Writes `header` with a zero buffer of `buffer_bytes` and returns the loader's error.
  std::string load_error(const std::string& header, size_t buffer_bytes = 0,
                         std::optional<uint64_t> len = std::nullopt) {
    write_raw(path("bad.safetensors"), header, std::vector<std::byte>(buffer_bytes), len);
    return error_of([&] { SafetensorsFile f(path("bad.safetensors")); });
  }
  std::string file() const { return path("bad.safetensors"); }
};

TEST_F(SafetensorsBad, FileShorterThanLength) {
  for (size_t n : {0, 1, 7}) {
    write_bytes(path("short.safetensors"), std::string(n, '\x01'));
    expect_has_all(error_of([&] { SafetensorsFile f(path("short.safetensors")); }),
                   {path("short.safetensors"), std::to_string(n) + " bytes", "8-byte"});
  }
}

TEST_F(SafetensorsBad, HeaderLengthPastEnd) {
  expect_has_all(load_error("{}", 0, 3), {file(), "header length 3", "past the end", "at most 2"});
  expect_has_all(load_error("{}", 0, uint64_t(-1)), {file(), "header length 18446744073709551615", "limit"});
  expect_has_all(load_error("{}", 0, 100'000'001), {file(), "limit"});
}

TEST_F(SafetensorsBad, HeaderNotJson) {
  expect_has_all(load_error(R"({"a": )"), {file(), "not valid JSON", "byte"});
  expect_has_all(load_error(""), {file(), "not valid JSON"});
  expect_has_all(load_error("{} trailing"), {file(), "not valid JSON"});
  // nlohmann reports a number beyond double as out_of_range, not parse_error (found by fuzzing).
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}})", 4),
                 {file(), "not valid JSON", "overflow"});
}

TEST_F(SafetensorsBad, HeaderNotObject) {
  expect_has_all(load_error("[1, 2]"), {file(), "must be a JSON object", "found array"});
  expect_has_all(load_error("42"), {file(), "must be a JSON object", "found number"});
}

TEST_F(SafetensorsBad, HeaderNotUtf8) {
  expect_has_all(load_error("{\"a\xff\": 1}"), {file(), "not valid UTF-8", "byte 3"});
  expect_has_all(load_error("{\"\xc0\xaf\": 1}"), {file(), "not valid UTF-8"});      // overlong '/'
  expect_has_all(load_error("{\"\xed\xa0\x80\": 1}"), {file(), "not valid UTF-8"});  // surrogate
  expect_has_all(load_error("{\"\xe2\x82"), {file(), "not valid UTF-8"});            // truncated
}

TEST_F(SafetensorsBad, HeaderTooDeep) {
  expect_has_all(load_error(std::string(100, '[') + std::string(100, ']')), {file(), "100 levels"});
}

TEST_F(SafetensorsBad, EntryNotObjectOrIncomplete) {
  expect_has_all(load_error(R"({"w": [1]})"), {file(), "tensor 'w'", "expected an object", "[1]"});
  expect_has_all(load_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4),
                 {file(), "tensor 'w'", "field 'dtype' is missing"});
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4),
                 {file(), "tensor 'w'", "field 'shape' is missing"});
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [1]}})", 4),
                 {file(), "tensor 'w'", "field 'data_offsets' is missing"});
}

TEST_F(SafetensorsBad, UnknownDType) {
  expect_has_all(load_error(R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", 1),
                 {file(), "tensor 'w'", "unknown dtype \"F8_E4M3\"", "F32, F16, BF16"});
  expect_has_all(load_error(R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", 4),
                 {file(), "tensor 'w'", "dtype must be a string", "found 32"});
}

TEST_F(SafetensorsBad, ShapeNotNonNegativeIntegers) {
  for (const char* shape : {"[2, -1]", "[2.0]", "[\"2\"]", "7", "null", "[[2]]", "[9223372036854775808]"}) {
    const std::string h = std::string(R"({"w": {"dtype": "F32", "shape": )") + shape + R"(, "data_offsets": [0, 8]}})";
    expect_has_all(load_error(h, 8), {file(), "tensor 'w'", "shape must be a list of non-negative integers"});
  }
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
                 {file(), "tensor 'w'", "64 bits"});
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"),
                 {file(), "tensor 'w'", "bytes", "64 bits"});
}

TEST_F(SafetensorsBad, DataOffsetsNotBeginEnd) {
  for (const char* off : {"[8, 4]", "[0]", "[0, 4, 8]", "[-4, 4]", "[0, 4.0]", "\"0-4\"", "{}"}) {
    const std::string h = std::string(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": )") + off + "}}";
    expect_has_all(load_error(h, 8), {file(), "tensor 'w'", "data_offsets must be [begin, end]"});
  }
}

TEST_F(SafetensorsBad, ByteRangeOutOfBuffer) {
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4),
                 {file(), "tensor 'w'", "[0, 8]", "past the end of the data buffer (4 bytes)"});
  expect_has_all(load_error(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [18446744073709551615,
                 18446744073709551615]}})"),
                 {file(), "tensor 'w'", "past the end"});
}

TEST_F(SafetensorsBad, ByteCountMismatch) {
  expect_has_all(load_error(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", 8),
                 {file(), "tensor 'w'", "hold 8 bytes", "BF16", "[2, 3]", "needs 12"});
}

TEST_F(SafetensorsBad, OverlappingTensors) {
  expect_has_all(load_error(R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                            12),
                 {file(), "tensors 'a' and 'b' overlap", "[0, 8)", "[4, 12)"});
  // A zero-byte tensor inside another one is an overlap too (the reference: InvalidOffset).
  expect_has_all(load_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                            8),
                 {file(), "'a' and 'z' overlap"});
}

TEST_F(SafetensorsBad, HolesInBuffer) {
  expect_has_all(load_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                            12),
                 {file(), "tensor 'b'", "[4, 8) belong to no tensor", "incomplete buffer"});
  expect_has_all(load_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
                 {file(), "tensor 'a'", "[0, 4)"});
  expect_has_all(load_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 6),
                 {file(), "[4, 6) belong to no tensor", "incomplete buffer"});
  expect_has_all(load_error("{}", 1), {file(), "[0, 1)"});
}

TEST_F(SafetensorsBad, MetadataNotStrings) {
  expect_has_all(load_error(R"({"__metadata__": [1]})"), {file(), "'__metadata__'", "object of strings"});
  expect_has_all(load_error(R"({"__metadata__": {"format": 1}})"), {file(), "'__metadata__' field 'format'",
                                                                    "must be a string", "found 1"});
}

// ---- checkpoints --------------------------------------------------------------------------------

class CheckpointTest : public TempDirTest {
 protected:
  std::vector<std::byte> f32(std::vector<float> v) { return bytes_of(v); }
  void write_index(const std::string& text) { write_bytes(dir_ / "model.safetensors.index.json", text); }
  void two_shards() {
    write_safetensors(dir_ / "model-00001-of-00002.safetensors",
                      {{"embed.weight", "F32", {2, 2}, f32({1, 2, 3, 4})}, {"norm", "BF16", {2}, bytes_of(to_bf16({1, 2}))}});
    write_safetensors(dir_ / "model-00002-of-00002.safetensors",
                      {{"lm_head.weight", "F16", {3}, bytes_of(to_f16({0.5f, -1.f, 2.f}))}});
  }
  std::string dir() const { return dir_.string(); }
};

TEST_F(CheckpointTest, SingleFile) {
  write_safetensors(dir_ / "model.safetensors", {{"w", "F32", {2, 3}, f32({1, 2, 3, 4, 5, 6})},
                                                 {"b", "F16", {3}, bytes_of(to_f16({1, 2, 3}))}});
  const Checkpoint ck(dir());
  EXPECT_EQ(ck.dir(), dir());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"b", "w"}));
  EXPECT_EQ(ck.shard_files(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(ck.num_parameters(), 9);
  EXPECT_EQ(ck.dtype_counts(), (std::map<std::string, int64_t>{{"F16", 1}, {"F32", 1}}));
  EXPECT_TRUE(ck.has("w"));
  EXPECT_FALSE(ck.has("v"));
  const Tensor w = ck.load_f32("w", Shape{2, 3});
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(std::vector<float>(w.span().begin(), w.span().end()), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(ck.load_f32("b")[2], 3.f);
  EXPECT_FAILS_WITH(ck.load_f32("w", Shape{3, 2}), "model.safetensors", "tensor 'w'", "shape [2, 3]",
                    "expected [3, 2]");
  EXPECT_FAILS_WITH(ck.info("v"), dir(), "no tensor 'v'", "model.safetensors");
}

TEST_F(CheckpointTest, ShardedWithIndex) {
  two_shards();
  write_index(R"({"metadata": {"total_size": 30}, "weight_map": {
      "embed.weight": "model-00001-of-00002.safetensors", "norm": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  const Checkpoint ck(dir());
  EXPECT_EQ(ck.shard_files(),
            (std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}));
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"embed.weight", "lm_head.weight", "norm"}));
  EXPECT_EQ(ck.num_parameters(), 9);
  EXPECT_EQ(ck.dtype_counts(), (std::map<std::string, int64_t>{{"BF16", 1}, {"F16", 1}, {"F32", 1}}));
  EXPECT_EQ(ck.info("lm_head.weight").file, (dir_ / "model-00002-of-00002.safetensors").string());
  const Tensor h = ck.load_f32("lm_head.weight");
  EXPECT_EQ(h[0], 0.5f);
  EXPECT_EQ(h[1], -1.f);
  EXPECT_EQ(ck.load_f32("norm", Shape{2})[1], 2.f);
}

TEST_F(CheckpointTest, PrefersModelSafetensorsOverIndex) {
  two_shards();
  write_safetensors(dir_ / "model.safetensors", {{"only", "F32", {1}, f32({7})}});
  write_index(R"({"weight_map": {"x": "missing.safetensors"}})");
  EXPECT_EQ(Checkpoint{dir()}.names(), std::vector<std::string>{"only"});
}

TEST_F(CheckpointTest, OneSafetensorsFileOfAnotherName) {
  write_safetensors(dir_ / "pytorch_model.safetensors", {{"w", "F32", {1}, f32({7})}});
  write_bytes(dir_ / "config.json", "{}");
  const Checkpoint ck(dir());
  EXPECT_EQ(ck.shard_files(), std::vector<std::string>{"pytorch_model.safetensors"});
  EXPECT_EQ(ck.load_f32("w")[0], 7.f);
}

TEST_F(CheckpointTest, MissingOrEmptyDirectory) {
  EXPECT_FAILS_WITH(Checkpoint{path("nope")}, path("nope"), "does not exist");
  write_bytes(dir_ / "file", "x");
  EXPECT_FAILS_WITH(Checkpoint{path("file")}, path("file"), "not a directory");
  write_bytes(dir_ / "config.json", "{}");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, dir(), "no weights", "model.safetensors.index.json", "pytorch_model.bin.index.json");
}

TEST_F(CheckpointTest, SeveralFilesWithoutIndex) {
  two_shards();
  EXPECT_FAILS_WITH(Checkpoint{dir()}, dir(), "2 safetensors files", "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors", "no model.safetensors.index.json");
}

TEST_F(CheckpointTest, BadIndex) {
  two_shards();
  const std::string index = path("model.safetensors.index.json");
  write_index(R"({"weight_map": )");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "invalid JSON at byte");
  write_index(R"([])");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "expected a JSON object");
  write_index(R"({"metadata": {}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "field 'weight_map' is missing");
  write_index(R"({"weight_map": []})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "field 'weight_map'", "expected an object");
  write_index(R"({"weight_map": {}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "field 'weight_map' is empty");
  write_index(R"({"weight_map": {"norm": 3}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "tensor 'norm'", "expected a shard file name", "found 3");
  write_index(R"({"weight_map": {"norm": "../model-00001-of-00002.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "tensor 'norm'", "not a file name inside");
  write_index(R"({"weight_map": {"norm": "/etc/passwd"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, index, "tensor 'norm'", "not a file name inside");
}

TEST_F(CheckpointTest, MissingShard) {
  two_shards();
  write_index(R"({"weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                                 "lm_head.weight": "model-00003-of-00003.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, path("model.safetensors.index.json"),
                    "shard 'model-00003-of-00003.safetensors'", "'lm_head.weight'", "does not exist");
}

TEST_F(CheckpointTest, TensorAbsentFromItsShard) {
  two_shards();
  write_index(R"({"weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                                 "final.weight": "model-00002-of-00002.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, path("model.safetensors.index.json"), "tensor 'final.weight'",
                    "shard 'model-00002-of-00002.safetensors'", "does not hold it");
  // Present, but in the other shard.
  write_index(R"({"weight_map": {"embed.weight": "model-00002-of-00002.safetensors",
                                 "norm": "model-00001-of-00002.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, "tensor 'embed.weight'", "shard 'model-00002-of-00002.safetensors'",
                    "it is in 'model-00001-of-00002.safetensors'");
}

TEST_F(CheckpointTest, SameTensorInTwoShards) {
  two_shards();
  write_safetensors(dir_ / "model-00002-of-00002.safetensors",
                    {{"lm_head.weight", "F16", {1}, bytes_of(to_f16({1}))}, {"norm", "F32", {2}, f32({1, 2})}});
  write_index(R"({"weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                                 "norm": "model-00001-of-00002.safetensors",
                                 "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, dir(), "tensor 'norm' is in two shards", "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors");
}

TEST_F(CheckpointTest, BadShardNamesTheShard) {
  two_shards();
  write_bytes(dir_ / "model-00002-of-00002.safetensors", "short");
  write_index(R"({"weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                                 "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  EXPECT_FAILS_WITH(Checkpoint{dir()}, path("model-00002-of-00002.safetensors"), "too short");
}

// ---- compatibility with the reference writer ----------------------------------------------------

// tests/fixtures/safetensors/reference.safetensors was written by safetensors.torch.save_file
// (tests/reference/gen_safetensors.py); reference.json holds torch's own fp32 conversion as bits.
TEST(SafetensorsReference, ReadsTorchWrittenFile) {
  const std::string dir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/safetensors";
  const nlohmann::json want = read_json_file(dir + "/reference.json");
  const SafetensorsFile f(dir + "/reference.safetensors");
  EXPECT_EQ(f.metadata(), (want["metadata"].get<std::map<std::string, std::string>>()));
  ASSERT_EQ(f.tensors().size(), want["tensors"].size());
  for (const auto& [name, w] : want["tensors"].items()) {
    SCOPED_TRACE(name);
    const TensorInfo* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(dtype_name(t->dtype), w["dtype"].get<std::string>());
    EXPECT_EQ(t->shape, w["shape"].get<Shape>());
    if (t->dtype == DType::I64) continue;
    const auto bits = w["f32_bits"].get<std::vector<uint32_t>>();
    std::vector<float> got(bits.size());
    convert_to_f32(*t, got);
    for (size_t i = 0; i < bits.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(got[i]), bits[i]) << "element " << i;
  }
}
