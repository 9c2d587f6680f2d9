// The state-dict pickle reader on hand-written pickles (opcodes as Python's pickletools names
// them) and on the data.pkl of a real transformers checkpoint (the fuzz target's seed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <cstring>

#include "error_of.hpp"
#include "fusellm/io/torch_pickle.hpp"

namespace fusellm {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using namespace std::string_literals;  // pickles hold NUL bytes

std::vector<std::byte> bytes(const std::string& s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::string unicode(const std::string& s) {  // BINUNICODE
  const uint32_t n = uint32_t(s.size());
  return "X" + std::string(reinterpret_cast<const char*>(&n), 4) + s;
}

// {name: _rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', 6), offset, size, stride, False, OrderedDict())}
std::string one_tensor(const std::string& size, const std::string& stride, char offset = '\0') {
  return std::string("\x80\x02}(") + unicode("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + unicode("storage") +
         "ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + "K\x06tQK" + std::string(1, offset) + size +
         stride + "\x89" + "ccollections\nOrderedDict\n)RtRu.";
}

std::string parse_error(const std::string& pkl) {
  return error_of([&] { parse_torch_pickle(bytes(pkl), "f.bin"); });
}

TEST(TorchPickle, ReadsAHandWrittenStateDict) {
  const auto t = parse_torch_pickle(bytes(one_tensor("K\x02K\x03\x86", "K\x03K\x01\x86")), "f.bin");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].name, "w");
  EXPECT_EQ(t[0].storage_key, "0");
  EXPECT_EQ(t[0].dtype, DType::F32);
  EXPECT_EQ(t[0].storage_numel, 6);
  EXPECT_EQ(t[0].shape, (Shape{2, 3}));
  EXPECT_EQ(t[0].stride, (std::vector<int64_t>{3, 1}));
}

TEST(TorchPickle, RefusesGlobalsOutsideTheList) {
  const std::string e = parse_error(std::string("\x80\x02") + "cposix\nsystem\n" + unicode("ls") + "\x85R.");
  EXPECT_NE(e.find("f.bin: data.pkl byte 2: global 'posix.system' is not allowed"), std::string::npos) << e;
  EXPECT_NE(e.find("torch._utils._rebuild_tensor_v2"), std::string::npos) << e;
  // STACK_GLOBAL (protocol 4) is checked the same way.
  const std::string e4 = parse_error(std::string("\x80\x04") + unicode("builtins") + unicode("eval") + "\x93.");
  EXPECT_NE(e4.find("global 'builtins.eval' is not allowed"), std::string::npos) << e4;
  // A storage type may be named but not called.
  const std::string e5 = parse_error(std::string("\x80\x02") + "ctorch\nFloatStorage\n)R.");
  EXPECT_NE(e5.find("'torch.FloatStorage' is a type"), std::string::npos) << e5;
}

TEST(TorchPickle, NamesAnUnknownOpcodeAndItsOffset) {
  const std::string e = parse_error(std::string("\x80\x02}") + "G");  // BINFLOAT
  EXPECT_NE(e.find("f.bin: data.pkl byte 3: opcode 0x47"), std::string::npos) << e;
}

TEST(TorchPickle, RefusesMalformedInput) {
  EXPECT_NE(parse_error("").find("ends without STOP"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02}X\xff\xff\x00\x00ab"s).find("truncated"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02t.").find("no MARK"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02h\x05.").find("memo entry 5"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02K\x01.").find("not hold a dict"), std::string::npos);
  EXPECT_NE(parse_error("\x80\x02}X\x01\x00\x00\x00kK\x01s."s).find("'k' is not a tensor"), std::string::npos);
  // A dict put inside itself: an error, and no cycle for the destructor to follow.
  EXPECT_NE(parse_error("\x80\x02}q\x00X\x01\x00\x00\x00kh\x00s."s).find("not a tensor"), std::string::npos);
}

// The data.pkl of the bf16 Llama fixture, as transformers 4.46.3 / torch 2.5.1 wrote it.
TEST(TorchPickle, ReadsARealDataPkl) {
  const fs::path p = fs::path(FUSELLM_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "fuzz_torch_pickle" / "bin.pkl";
  std::ifstream in(p, std::ios::binary);
  const std::string s{std::istreambuf_iterator<char>(in), {}};
  const auto t = parse_torch_pickle(bytes(s), p.string());
  EXPECT_EQ(t.size(), 21u);  // embed, 2 x (4 attention + 3 MLP + 2 norms), final norm, lm_head
  for (const auto& x : t) EXPECT_EQ(x.dtype, DType::BF16) << x.name;
  EXPECT_EQ(t[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(t[0].shape, (Shape{48, 16}));
}

}  // namespace
}  // namespace fusellm
