// Every malformed or unsupported part of a tokenizer.json is a fusellm::Error that names the file
// and the part ("tok/tokenizer.json: model.merges[1]: ..."), never a crash or a silently wrong
// tokenizer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace {

using nlohmann::json;
const std::string kOrigin = "tok/tokenizer.json";

// A small valid byte-level BPE tokenizer.json to break in one place at a time.
json base() {
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"a", "b", "c", "ab", "abc", "\xc4\xa0", "<unk>"}) vocab[t] = id++;
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array({json{{"id", 7},
                                                 {"content", "<s>"},
                                                 {"single_word", false},
                                                 {"lstrip", false},
                                                 {"rstrip", false},
                                                 {"normalized", false},
                                                 {"special", true}}})},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
              {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", json::array({"a b", "ab c"})}}}};
}

// Loads j (or the raw text) and returns the error message; fails the test when it loads.
std::string load_error(const std::string& text) {
  try {
    fusellm::Tokenizer::from_json_string(text, kOrigin);
  } catch (const fusellm::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a fusellm::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "loaded without an error";
  return "";
}
std::string load_error(const json& j) { return load_error(j.dump()); }

#define EXPECT_MENTIONS(msg, part)                                                         \
  do {                                                                                     \
    const std::string m_ = (msg);                                                          \
    EXPECT_EQ(m_.rfind(kOrigin + ": ", 0), 0u) << "does not start with the file: " << m_; \
    EXPECT_NE(m_.find(part), std::string::npos) << "missing \"" << (part) << "\" in: " << m_; \
  } while (0)

TEST(TokenizerErrors, BaseLoads) {
  auto t = fusellm::Tokenizer::from_json_string(base().dump(), kOrigin);
  EXPECT_EQ(t->encode("abc").ids, std::vector<int32_t>{4});
}

TEST(TokenizerErrors, NotJsonOrWrongShape) {
  EXPECT_MENTIONS(load_error(std::string("{\"model\": ")), "not valid JSON");
  EXPECT_MENTIONS(load_error(std::string("[1, 2]")), "expected a JSON object");
  json j = base();
  j["version"] = "2.0";
  EXPECT_MENTIONS(load_error(j), "version");
}

TEST(TokenizerErrors, Model) {
  json j = base();
  j.erase("model");
  EXPECT_MENTIONS(load_error(j), "model: missing");
  j = base();
  j["model"] = nullptr;
  EXPECT_MENTIONS(load_error(j), "model: expected a model");
  j = base();
  j["model"]["type"] = "Unigram";
  EXPECT_MENTIONS(load_error(j), "model: unsupported type \"Unigram\"");
  j["model"]["type"] = "WordPiece";
  EXPECT_MENTIONS(load_error(j), "model: unsupported type \"WordPiece\"");
  j = base();
  j["model"]["vocab"] = json::array();
  EXPECT_MENTIONS(load_error(j), "model.vocab: expected an object");
  j = base();
  j["model"]["vocab"]["b"] = -3;
  EXPECT_MENTIONS(load_error(j), "model.vocab: token \"b\"");
  j = base();
  j["model"].erase("merges");
  EXPECT_MENTIONS(load_error(j), "model: missing field \"merges\"");
  j = base();
  j["model"]["dropout"] = 0.1;
  EXPECT_MENTIONS(load_error(j), "model: field \"dropout\"");
  j = base();
  j["model"]["fuse_unk"] = "yes";
  EXPECT_MENTIONS(load_error(j), "model: field \"fuse_unk\": expected true or false");
}

TEST(TokenizerErrors, BadMerges) {
  json j = base();
  j["model"]["merges"] = json::array({"a b", "abc"});
  EXPECT_MENTIONS(load_error(j), "model.merges[1]: expected \"<left> <right>\"");
  j["model"]["merges"] = json::array({"a  b"});
  EXPECT_MENTIONS(load_error(j), "model.merges[0]: expected");
  j["model"]["merges"] = json::array({"a b", 5});
  EXPECT_MENTIONS(load_error(j), "model.merges[1]: expected");
  j["model"]["merges"] = json::array({json::array({"a"})});
  EXPECT_MENTIONS(load_error(j), "model.merges[0]: expected");
  j["model"]["merges"] = json::array({"a zz"});
  EXPECT_MENTIONS(load_error(j), "model.merges[0]: merge \"a zz\": \"zz\" is not in the vocabulary");
  j["model"]["merges"] = json::array({json::array({"b", "c"})});
  EXPECT_MENTIONS(load_error(j), "model.merges[0]: merge \"b c\": the merged token \"bc\" is not in the vocabulary");
  j["model"]["merges"] = "a b";
  EXPECT_MENTIONS(load_error(j), "model.merges: expected an array");
}

TEST(TokenizerErrors, Normalizers) {
  json j = base();
  j["normalizer"] = {{"type", "Foo"}};
  EXPECT_MENTIONS(load_error(j), "normalizer: unsupported type \"Foo\" (supported: ");
  j["normalizer"] = {{"typ", "NFC"}};
  EXPECT_MENTIONS(load_error(j), "normalizer: missing field \"type\"");
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}, {{"type", "Precompiled"}}})}};
  EXPECT_MENTIONS(load_error(j), "normalizer.normalizers[1]: unsupported type \"Precompiled\"");
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "(unclosed"}}}, {"content", "x"}};
  EXPECT_MENTIONS(load_error(j), "normalizer: invalid regex \"(unclosed\"");
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Glob", "*"}}}, {"content", "x"}};
  EXPECT_MENTIONS(load_error(j), "normalizer.pattern: expected {\"String\": ...} or {\"Regex\": ...}");
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}};
  EXPECT_MENTIONS(load_error(j), "normalizer: missing field \"content\"");
  j["normalizer"] = {{"type", "Strip"}, {"strip_right", true}};
  EXPECT_MENTIONS(load_error(j), "normalizer: missing field \"strip_left\"");
  j["normalizer"] = {{"type", "Prepend"}, {"prepend", 3}};
  EXPECT_MENTIONS(load_error(j), "normalizer: field \"prepend\": expected a string");
  j["normalizer"] = "NFC";
  EXPECT_MENTIONS(load_error(j), "normalizer: expected an object");
}

TEST(TokenizerErrors, PreTokenizers) {
  json j = base();
  j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer: unsupported type \"UnicodeScripts\" (supported: \"ByteLevel\"");
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"},
                                                        {"pattern", {{"Regex", "[a-"}}},
                                                        {"behavior", "Isolated"},
                                                        {"invert", false}}})}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer.pretokenizers[0]: invalid regex \"[a-\"");
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Merged"}, {"invert", false}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer: field \"behavior\": unknown value \"Merged\"");
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "__"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer: field \"replacement\": expected a single character");
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer: field \"prepend_scheme\": unknown value \"sometimes\"");
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", "yes"}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer: field \"add_prefix_space\": expected true or false");
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({"ByteLevel"})}};
  EXPECT_MENTIONS(load_error(j), "pre_tokenizer.pretokenizers[0]: expected an object");
}

TEST(TokenizerErrors, PostProcessorsAndDecoders) {
  json j = base();
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"special_tokens", json::object()}};
  EXPECT_MENTIONS(load_error(j), "post_processor.single[0]: special token \"<s>\" is not in \"special_tokens\"");
  j["post_processor"]["special_tokens"] = {{"<s>", {{"id", "<s>"}, {"ids", {7, 8}}, {"tokens", {"<s>"}}}}};
  EXPECT_MENTIONS(load_error(j), "post_processor.special_tokens.<s>: \"ids\" has 2 entries but \"tokens\" has 1");
  j["post_processor"] = {{"type", "TemplateProcessingX"}};
  EXPECT_MENTIONS(load_error(j), "post_processor: unsupported type \"TemplateProcessingX\"");
  j = base();
  j["decoder"] = {{"type", "CTC"}};
  EXPECT_MENTIONS(load_error(j), "decoder: unsupported type \"CTC\"");
  j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}};
  EXPECT_MENTIONS(load_error(j), "decoder: field \"content\": expected a single character");
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  EXPECT_MENTIONS(load_error(j), "decoder: field \"start\": expected a non-negative integer");
  j["decoder"] = {{"type", "Sequence"}, {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"Regex", "("}}}, {"content", ""}}})}};
  EXPECT_MENTIONS(load_error(j), "decoder.decoders[0]: invalid regex");
}

TEST(TokenizerErrors, AddedTokens) {
  json j = base();
  j["added_tokens"][0]["id"] = 99;  // the library would give "<s>" id 7 (next after the vocab)
  EXPECT_MENTIONS(load_error(j), "added_tokens[0]: \"<s>\": id 99 is out of range");
  j["added_tokens"][0]["id"] = -1;
  EXPECT_MENTIONS(load_error(j), "added_tokens[0]: \"<s>\": id -1 is out of range");
  j["added_tokens"][0]["id"] = "7";
  EXPECT_MENTIONS(load_error(j), "added_tokens[0]: \"<s>\": id \"7\" is out of range");
  j = base();
  j["added_tokens"][0].erase("content");
  EXPECT_MENTIONS(load_error(j), "added_tokens[0]: missing field \"content\"");
  j = base();
  j["added_tokens"][0]["special"] = 1;
  EXPECT_MENTIONS(load_error(j), "added_tokens[0]: field \"special\": expected true or false");
  j = base();
  j["added_tokens"] = {{"content", "x"}};
  EXPECT_MENTIONS(load_error(j), "added_tokens: expected an array");
}

TEST(TokenizerErrors, AddedTokenNormalizingToNothing) {
  // With Strip, a normalized "  " would be an empty pattern matching between every two bytes.
  json j = base();
  j["normalizer"] = {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}};
  j["added_tokens"].push_back(json{{"id", 8}, {"content", "  "}, {"single_word", false}, {"lstrip", false},
                                   {"rstrip", false}, {"normalized", true}, {"special", false}});
  EXPECT_MENTIONS(load_error(j), "added_tokens: token \"  \" (normalized: true) normalizes to an empty string");
}

TEST(TokenizerErrors, NestingIsBounded) {
  json n = {{"type", "NFC"}};
  for (int i = 0; i < 200; ++i) n = {{"type", "Sequence"}, {"normalizers", json::array({n})}};
  json j = base();
  j["normalizer"] = n;
  EXPECT_MENTIONS(load_error(j), "nested too deeply");
}

TEST(TokenizerErrors, UnkTokenMissingFromVocabularyAtEncode) {
  json j = base();
  j["model"]["unk_token"] = "[UNK]";
  auto t = fusellm::Tokenizer::from_json_string(j.dump(), kOrigin);
  EXPECT_EQ(t->encode("ab").ids, std::vector<int32_t>{3});  // no unknown char: fine
  j["pre_tokenizer"] = nullptr;
  j["normalizer"] = nullptr;
  t = fusellm::Tokenizer::from_json_string(j.dump(), kOrigin);
  try {
    t->encode("az");
    ADD_FAILURE() << "no error";
  } catch (const fusellm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unk_token \"[UNK]\" is not in the vocabulary"), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, LoadPaths) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("fusellm_tok_err_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto error_of = [](const std::string& path) -> std::string {
    try {
      fusellm::Tokenizer::load(path);
    } catch (const fusellm::Error& e) {
      return e.what();
    }
    return "loaded";
  };
  EXPECT_NE(error_of((dir / "nope.json").string()).find("no such file"), std::string::npos);
  EXPECT_NE(error_of(dir.string()).find("no tokenizer.json or tokenizer.model"), std::string::npos);
  {
    std::ofstream(dir / "tokenizer.model") << "not a model";
  }
  EXPECT_NE(error_of(dir.string()).find("cannot load the SentencePiece model"), std::string::npos);
  {
    json j = base();
    j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
    std::ofstream(dir / "tokenizer.json") << j.dump();
  }
  const std::string m = error_of(dir.string());
  EXPECT_NE(m.find((dir / "tokenizer.json").string() + ": pre_tokenizer: unsupported type \"UnicodeScripts\""),
            std::string::npos)
      << m;
  fs::remove_all(dir);
}

}  // namespace
