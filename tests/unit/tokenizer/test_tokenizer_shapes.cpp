// The paper's source-model tokenizers, by shape: tokenizers with the pipeline settings of
// Llama-2's tokenizer.json and tokenizer.model, OpenLLaMA v2's lone tokenizer.model and
// GPT-NeoX-20B's tokenizer.json (MPT-7B, Pythia), each with a vocabulary trained on local text, made
// by tests/reference/gen_tokenizer_shapes.py (tests/fixtures/tokenizer_shapes/; the generator's
// docstring lists every field). On hard texts (whitespace runs, tabs, CRLF, digits, combining marks,
// emoji, byte fallback, control characters, special tokens written in text) the ids and code-point
// offsets must equal `tokenizers`' (tokenizer.json) or transformers' slow LlamaTokenizer with
// sentencepiece's piece spans (tokenizer.model), and decoding must give the library's text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fusellm/tokenizer/tokenizer.hpp"

namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
using Offsets = std::vector<std::pair<int64_t, int64_t>>;

// FUSELLM_TOKSHAPES_FIXTURES=dir reads another fixture tree of the same layout (a stress set made with
// gen_tokenizer_shapes.py --random N --out dir).
const std::string kDir = [] {
  const char* d = std::getenv("FUSELLM_TOKSHAPES_FIXTURES");
  return d && *d ? std::string(d) : std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/tokenizer_shapes";
}();

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::string esc(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (c < 0x20 || c == 0x7f) o += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else o.push_back(char(c));
  }
  return o;
}

std::string show(const Ids& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string show(const Offsets& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    s += (i ? "," : "") + ("(" + std::to_string(v[i].first) + "," + std::to_string(v[i].second) + ")");
  return s + "]";
}

// Every text of texts.jsonl against line i of <shape>/expected.jsonl: ids with and without the
// template's special tokens (`lead`: how many the template prepends), offsets (where the generator
// could compose them) and the decoding. Returns the number of texts checked; failures name the text.
// keep_special_decoding: also decode(ids, skip_special_tokens=false) (recorded for tokenizer.json).
std::size_t check_shape(const fusellm::Tokenizer& tok, const std::string& shape, std::size_t lead,
                        bool keep_special_decoding) {
  const auto texts = read_jsonl(kDir + "/texts.jsonl");
  const auto expected = read_jsonl(kDir + "/" + shape + "/expected.jsonl");
  EXPECT_FALSE(texts.empty()) << kDir << "/texts.jsonl missing: run tests/reference/gen_tokenizer_shapes.py";
  EXPECT_EQ(texts.size(), expected.size()) << shape;
  std::size_t n = 0;
  for (std::size_t i = 0; i < texts.size() && i < expected.size(); ++i, ++n) {
    const std::string text = texts[i].at("text").get<std::string>();
    const json& ex = expected[i];
    SCOPED_TRACE(shape + " text " + std::to_string(i) + " \"" + esc(text) + "\"");
    fusellm::Encoding e;
    try {
      e = tok.encode(text, true);
    } catch (const std::exception& err) {
      ADD_FAILURE() << "encode threw: " << err.what();
      continue;
    }
    const auto ids = ex.at("ids").get<Ids>();
    EXPECT_EQ(show(e.ids), show(ids));
    if (ex.contains("offsets")) {
      Offsets offs;
      for (const auto& o : ex["offsets"]) offs.emplace_back(o.at(0).get<int64_t>(), o.at(1).get<int64_t>());
      EXPECT_EQ(show(e.char_offsets), show(offs));
    }
    const Ids plain = ex.contains("ids_plain")
                          ? ex["ids_plain"].get<Ids>()
                          : Ids(ids.begin() + std::ptrdiff_t(std::min(lead, ids.size())), ids.end());
    EXPECT_EQ(show(tok.encode(text, false).ids), show(plain));
    const std::string decoded = ex.at("decoded").get<std::string>();
    EXPECT_EQ(esc(tok.decode(ids, true)), esc(decoded));
    if (keep_special_decoding)
      EXPECT_EQ(esc(tok.decode(ids, false)), esc(ex.value("decoded_keep_special", decoded)));
  }
  return n;
}

TEST(TokenizerShapes, Llama2TokenizerJson) {
  const auto tok = fusellm::Tokenizer::load(kDir + "/llama2_json");
  EXPECT_EQ(tok->vocab_size(), 2000);
  EXPECT_EQ(tok->token_to_id("<s>"), 1);
  EXPECT_EQ(tok->token_to_id("<0x0A>"), 13);
  EXPECT_GE(check_shape(*tok, "llama2_json", 1, true), 100u);
}

// The same file with <unk> <s> </s> normalized=true (hf-internal-testing/llama-tokenizer, early LLaMA
// conversions): special-token text is matched after the normalizer has run.
TEST(TokenizerShapes, Llama2TokenizerJsonNormalizedSpecials) {
  const auto tok = fusellm::Tokenizer::load(kDir + "/llama2_json_normalized_specials");
  EXPECT_GE(check_shape(*tok, "llama2_json_normalized_specials", 1, true), 100u);
}

TEST(TokenizerShapes, Llama2TokenizerModel) {
  const auto tok = fusellm::Tokenizer::load(kDir + "/llama2_model/tokenizer.model");
  EXPECT_NE(tok->describe().find("SentencePiece"), std::string::npos) << tok->describe();
  EXPECT_EQ(tok->vocab_size(), 2000);
  EXPECT_GE(check_shape(*tok, "llama2_model", 1, false), 100u);
}

// OpenLLaMA ships only tokenizer.model: the directory is what a user points fusellm at.
TEST(TokenizerShapes, OpenLlamaModelDirectory) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const auto& f : fs::directory_iterator(kDir + "/openllama_model")) files.push_back(f.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"expected.jsonl", "tokenizer.model"}));
  const auto tok = fusellm::Tokenizer::load(kDir + "/openllama_model");
  EXPECT_NE(tok->describe().find("SentencePiece"), std::string::npos) << tok->describe();
  EXPECT_GE(check_shape(*tok, "openllama_model", 1, false), 100u);
}

TEST(TokenizerShapes, GptNeox20bTokenizerJson) {
  const auto tok = fusellm::Tokenizer::load(kDir + "/neox_json");
  EXPECT_EQ(tok->vocab_size(), 2023);
  EXPECT_EQ(tok->token_to_id("<|endoftext|>"), 0);
  EXPECT_EQ(tok->token_to_id("<|padding|>"), 1);
  EXPECT_EQ(tok->token_to_id("  "), 2022);                       // the last space-run added token
  EXPECT_EQ(tok->token_to_id(std::string(24, ' ')), 2000);        // the first
  EXPECT_GE(check_shape(*tok, "neox_json", 0, true), 100u);
}

}  // namespace
