// The tokenizer stages one at a time: small hand-built tokenizer.json files (one per normalizer,
// pre-tokenizer, model option, added-token flag, post-processor and decoder) whose expected ids,
// offsets and decodings were computed with the Python `tokenizers` library by
// tests/reference/gen_tokenizer_unit.py (tests/fixtures/tokenizer_unit/), plus direct checks of
// the internal pieces (alignments, regex iteration, lossy UTF-8, the added-token trie).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/added_vocabulary.hpp"
#include "fusellm/tokenizer/bpe.hpp"
#include "fusellm/tokenizer/byte_level.hpp"
#include "fusellm/tokenizer/decoders.hpp"
#include "fusellm/tokenizer/normalized_string.hpp"
#include "fusellm/tokenizer/regex.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/tokenizer/unicode.hpp"

#include "bounded_run.hpp"
#include "error_of.hpp"

namespace {

using nlohmann::json;
namespace tk = fusellm::tok;

const std::string kDir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/tokenizer_unit";

const json& cases() {
  static const json j = [] {
    std::ifstream in(kDir + "/cases.json", std::ios::binary);
    if (!in) return json::object();
    return json::parse(in);
  }();
  return j;
}

std::vector<std::string> case_names() {
  std::vector<std::string> v;
  if (cases().contains("cases"))
    for (const auto& c : cases()["cases"]) v.push_back(c["name"].get<std::string>());
  if (v.empty()) v.push_back("missing_fixture");
  return v;
}

const json& case_by_name(const std::string& name) {
  for (const auto& c : cases()["cases"])
    if (c["name"] == name) return c;
  static const json none;
  return none;
}

std::string show(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else o.push_back(char(c));
  }
  return o;
}

// Byte offsets must be the char offsets converted to UTF-8 positions.
std::vector<std::pair<int64_t, int64_t>> chars_to_bytes(const std::string& s,
                                                        const std::vector<std::pair<int64_t, int64_t>>& chars) {
  std::vector<std::size_t> pos;
  for (std::size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) pos.push_back(i);
  pos.push_back(s.size());
  std::vector<std::pair<int64_t, int64_t>> out;
  for (auto [a, b] : chars) out.emplace_back(int64_t(pos.at(std::size_t(a))), int64_t(pos.at(std::size_t(b))));
  return out;
}

class StageCase : public ::testing::TestWithParam<std::string> {};

// What the tokenizer gives for each input of a case, as JSON: computed in a bounded child
// process (tests/bounded_run.hpp) so that a stage that never ends fails the case instead of
// hanging the suite or exhausting memory.
json encode_and_decode(const fusellm::Tokenizer& tok, const json& inputs) {
  json results = json::array();
  for (const auto& in : inputs) {
    json r;
    try {
      const fusellm::Encoding e = tok.encode(in["text"].get<std::string>(), in["add_special_tokens"].get<bool>());
      const auto ids = in["ids"].get<std::vector<int32_t>>();
      r = {{"ids", e.ids},
           {"tokens", e.tokens},
           {"char_offsets", e.char_offsets},
           {"byte_offsets", e.byte_offsets},
           {"n_special", e.special.size()},
           {"decoded", tok.decode(ids, true)},
           {"decoded_keep_special", tok.decode(ids, false)}};
    } catch (const fusellm::Error& ex) {
      r = {{"error", ex.what()}};
    }
    results.push_back(std::move(r));
  }
  return results;
}

TEST_P(StageCase, MatchesLibrary) {
  ASSERT_TRUE(cases().contains("cases")) << kDir << "/cases.json missing: run tests/reference/gen_tokenizer_unit.py";
  const json& c = case_by_name(GetParam());
  ASSERT_FALSE(c.is_null());
  std::unique_ptr<fusellm::Tokenizer> tok;
  try {
    tok = fusellm::Tokenizer::from_json_string(c["tokenizer"].dump(), GetParam());
  } catch (const fusellm::Error& e) {
    FAIL() << "load: " << e.what();
  }
  EXPECT_EQ(tok->vocab_size(), c["vocab_size"].get<int64_t>());
  // Added tokens are reported by content (the library's value can carry stripped whitespace).
  std::map<int32_t, std::string> added;
  for (const auto& a : c["tokenizer"]["added_tokens"]) added[a["id"].get<int32_t>()] = a["content"].get<std::string>();

  const auto run = fusellm::testing::run_bounded([&] { return encode_and_decode(*tok, c["inputs"]).dump(); });
  ASSERT_TRUE(run.finished) << "encode/decode of the case's inputs: " << run.why;
  const json results = json::parse(run.out);
  ASSERT_EQ(results.size(), c["inputs"].size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    const json& in = c["inputs"][i];
    const json& r = results[i];
    const std::string text = in["text"].get<std::string>();
    const bool add = in["add_special_tokens"].get<bool>();
    SCOPED_TRACE("text \"" + show(text) + "\"" + (add ? "" : " (no special tokens)"));
    if (r.contains("error")) {
      ADD_FAILURE() << "encode/decode: " << r["error"].get<std::string>();
      continue;
    }
    const auto ids = in["ids"].get<std::vector<int32_t>>();
    std::vector<std::pair<int64_t, int64_t>> offsets;
    for (const auto& o : in["offsets"]) offsets.emplace_back(o[0].get<int64_t>(), o[1].get<int64_t>());
    auto tokens = in["tokens"].get<std::vector<std::string>>();
    for (std::size_t k = 0; k < tokens.size() && k < ids.size(); ++k)
      if (added.count(ids[k])) tokens[k] = added[ids[k]];
    const auto got_ids = r["ids"].get<std::vector<int32_t>>();
    const auto char_offsets = r["char_offsets"].get<std::vector<std::pair<int64_t, int64_t>>>();
    const auto byte_offsets = r["byte_offsets"].get<std::vector<std::pair<int64_t, int64_t>>>();
    EXPECT_EQ(got_ids, ids);
    EXPECT_EQ(r["tokens"].get<std::vector<std::string>>(), tokens);
    EXPECT_EQ(char_offsets, offsets);
    ASSERT_EQ(byte_offsets.size(), got_ids.size());
    ASSERT_EQ(r["n_special"].get<std::size_t>(), got_ids.size());
    if (char_offsets == offsets) EXPECT_EQ(byte_offsets, chars_to_bytes(text, offsets));
    EXPECT_EQ(r["decoded"].get<std::string>(), in["decoded"].get<std::string>());
    EXPECT_EQ(r["decoded_keep_special"].get<std::string>(), in["decoded_keep_special"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Library, StageCase, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

// tokenizer.json files the library refuses to load (an empty char field: Metaspace replacement,
// CharDelimiterSplit delimiter, Strip content): fusellm refuses them too, naming part and field.
TEST(LibraryRefuses, EmptyCharFields) {
  ASSERT_TRUE(cases().contains("refused")) << "run tests/reference/gen_tokenizer_unit.py";
  ASSERT_FALSE(cases()["refused"].empty());
  for (const auto& r : cases()["refused"]) {
    SCOPED_TRACE(r["name"].get<std::string>() + " (the library: " + r["library_error"].get<std::string>() + ")");
    const std::string msg = fusellm::testing::error_of(
        [&] { fusellm::Tokenizer::from_json_string(r["tokenizer"].dump(), "t/tokenizer.json"); });
    const std::string want = r["part"].get<std::string>() + ": field \"" + r["field"].get<std::string>() + "\"";
    EXPECT_NE(msg.find(want), std::string::npos) << "want \"" << want << "\" in: " << msg;
  }
}

// ---- token lookups and describe ------------------------------------------------------------
TEST(TokenizerApi, LookupsAndDescribe) {
  const json& c = case_by_name("added_tokens");
  ASSERT_FALSE(c.is_null());
  auto tok = fusellm::Tokenizer::from_json_string(c["tokenizer"].dump());
  const auto& vocab = c["tokenizer"]["model"]["vocab"];
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    ASSERT_EQ(tok->token_to_id(it.key()), it.value().get<int32_t>());
    ASSERT_EQ(tok->id_to_token(it.value().get<int32_t>()), it.key());
  }
  for (const auto& a : c["tokenizer"]["added_tokens"]) {
    EXPECT_EQ(tok->token_to_id(a["content"].get<std::string>()), a["id"].get<int32_t>());
    EXPECT_EQ(tok->id_to_token(a["id"].get<int32_t>()), a["content"].get<std::string>());
  }
  EXPECT_EQ(tok->token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(tok->id_to_token(-1), "");
  EXPECT_EQ(tok->id_to_token(1 << 30), "");
  const std::string d = tok->describe();
  EXPECT_NE(d.find("BPE (byte-level)"), std::string::npos) << d;
  EXPECT_NE(d.find("added tokens"), std::string::npos) << d;
  EXPECT_NE(d.find("pre-tokenizer ByteLevel"), std::string::npos) << d;
}

TEST(TokenizerApi, SpecialFlagMarksSpecialTokens) {
  const json& c = case_by_name("post_template");
  ASSERT_FALSE(c.is_null());
  auto tok = fusellm::Tokenizer::from_json_string(c["tokenizer"].dump());
  const auto e = tok->encode("hello");
  ASSERT_GE(e.ids.size(), 3u);
  EXPECT_EQ(e.special.front(), 1);
  EXPECT_EQ(e.special.back(), 1);
  for (std::size_t k = 1; k + 1 < e.ids.size(); ++k) EXPECT_EQ(e.special[k], 0);
  const auto e2 = tok->encode("hello", false);
  for (auto s : e2.special) EXPECT_EQ(s, 0);
}

TEST(TokenizerApi, InvalidUtf8InputIsAnError) {
  const json& c = case_by_name("pre_bytelevel");
  auto tok = fusellm::Tokenizer::from_json_string(c["tokenizer"].dump());
  for (const std::string bad : {std::string("a\xff" "b"), std::string("\xc3"), std::string("\xed\xa0\x80"),
                                std::string("\xc0\xaf")}) {
    try {
      tok->encode(bad);
      ADD_FAILURE() << "no error for " << show(bad);
    } catch (const fusellm::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
    }
  }
}

TEST(TokenizerApi, ConcurrentEncodesAgree) {
  // encode is const and shared across threads (word cache, regex regions, scratch buffers).
  const json& c = case_by_name("added_tokens");
  auto tok = fusellm::Tokenizer::from_json_string(c["tokenizer"].dump());
  std::vector<std::string> texts;
  for (const auto& in : c["inputs"]) texts.push_back(in["text"].get<std::string>());
  for (const auto& cs : cases()["cases"])
    for (const auto& in : cs["inputs"]) texts.push_back(in["text"].get<std::string>());
  std::vector<std::vector<int32_t>> want;
  for (const auto& t : texts) want.push_back(tok->encode(t).ids);
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep)
        for (std::size_t i = 0; i < texts.size(); ++i)
          if (tok->encode(texts[(i + std::size_t(k) * 7) % texts.size()]).ids != want[(i + std::size_t(k) * 7) % texts.size()])
            ++bad[k];
    });
  for (auto& t : threads) t.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(bad[k], 0) << "thread " << k;
}

// ---- loading from a directory ----------------------------------------------------------------
TEST(TokenizerLoad, DirectoryPrefersTokenizerJson) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("fusellm_tok_unit_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kDir + "/spm/tokenizer.model", dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  auto sp = fusellm::Tokenizer::load(dir.string());
  EXPECT_NE(sp->describe().find("SentencePiece"), std::string::npos);
  {
    std::ofstream out(dir / "tokenizer.json");
    out << case_by_name("pre_bytelevel")["tokenizer"].dump();
  }
  auto hf = fusellm::Tokenizer::load(dir.string());
  EXPECT_NE(hf->describe().find("BPE"), std::string::npos);
  auto direct = fusellm::Tokenizer::load((dir / "tokenizer.model").string());
  EXPECT_NE(direct->describe().find("SentencePiece"), std::string::npos);
  fs::remove_all(dir);
}

// ---- SentencePiece (tokenizer.model) -----------------------------------------------------------
TEST(SentencePieceTokenizer, MatchesSlowLlamaTokenizer) {
  std::ifstream in(kDir + "/spm/expected.json");
  ASSERT_TRUE(in) << "run tests/reference/gen_tokenizer_unit.py";
  const json ex = json::parse(in);
  auto tok = fusellm::Tokenizer::load(kDir + "/spm/tokenizer.model");
  EXPECT_EQ(tok->vocab_size(), ex["vocab_size"].get<int64_t>());
  for (const auto& r : ex["inputs"]) {
    const std::string text = r["text"].get<std::string>();
    SCOPED_TRACE("text \"" + show(text) + "\"");
    const auto e = tok->encode(text);
    EXPECT_EQ(e.ids, r["ids"].get<std::vector<int32_t>>());
    if (r.contains("offsets")) {
      std::vector<std::pair<int64_t, int64_t>> offsets;
      for (const auto& o : r["offsets"]) offsets.emplace_back(o[0].get<int64_t>(), o[1].get<int64_t>());
      EXPECT_EQ(e.char_offsets, offsets);
    }
    EXPECT_EQ(tok->decode(e.ids, true), r["decoded"].get<std::string>());
    EXPECT_EQ(e.special.at(0), 1);
    const auto plain = tok->encode(text, false);
    EXPECT_EQ(plain.ids.size() + 1, e.ids.size());
  }
  EXPECT_EQ(tok->token_to_id("<s>"), 1);
  EXPECT_EQ(tok->id_to_token(1), "<s>");
  EXPECT_EQ(tok->token_to_id("definitely not a piece"), std::nullopt);
}

// ---- internals -------------------------------------------------------------------------------
TEST(NormalizedString, PrependAlignsWithFirstChar) {
  // "é" (2 bytes) then "x": the prepended "▁" (3 bytes) maps to the first char, as tokenizers'
  // NormalizedString::prepend does.
  const std::string in = "\xc3\xa9x";
  tk::NormalizedString n(in, 0, in.size());
  n.prepend("\xe2\x96\x81");
  ASSERT_EQ(n.get(), "\xe2\x96\x81\xc3\xa9x");
  EXPECT_EQ(n.to_original(0, 3), std::make_pair(std::size_t(0), std::size_t(2)));
  EXPECT_EQ(n.to_original(3, 5), std::make_pair(std::size_t(0), std::size_t(2)));
  EXPECT_EQ(n.to_original(5, 6), std::make_pair(std::size_t(2), std::size_t(3)));
}

TEST(NormalizedString, ReplaceAlignsWithLastByteOfMatch) {
  const std::string in = "a  b";
  tk::NormalizedString n(in, 0, in.size());
  std::vector<tk::Match> m;
  tk::find_matches(tk::Regex(" +"), n.get(), false, m);
  n.replace(m, "__");
  ASSERT_EQ(n.get(), "a__b");
  EXPECT_EQ(n.to_original(1, 3), std::make_pair(std::size_t(2), std::size_t(3)));
  EXPECT_EQ(n.to_original(3, 4), std::make_pair(std::size_t(3), std::size_t(4)));
}

TEST(NormalizedString, NfcComposedCharKeepsFirstCharAlignment) {
  // e + U+0301 -> é aligned with the "e" only; the following char keeps its own range.
  const std::string in = "e\xcc\x81x";
  tk::NormalizedString n(in, 0, in.size());
  n.nfc();
  ASSERT_EQ(n.get(), "\xc3\xa9x");
  EXPECT_EQ(n.to_original(0, 2), std::make_pair(std::size_t(0), std::size_t(1)));
  EXPECT_EQ(n.to_original(2, 3), std::make_pair(std::size_t(3), std::size_t(4)));
}

TEST(Regex, FindIterSkipsEmptyMatchAfterMatch) {
  // The onig crate's find_iter: "x*" on "axxb" gives (0,0) (1,3) (4,4).
  std::vector<std::pair<std::size_t, std::size_t>> out;
  tk::Regex("x*").find_iter("axxb", out);
  const std::vector<std::pair<std::size_t, std::size_t>> want{{0, 0}, {1, 3}, {4, 4}};
  EXPECT_EQ(out, want);
  out.clear();
  tk::Regex("a+|(?=b)").find_iter("aacb", out);
  const std::vector<std::pair<std::size_t, std::size_t>> want2{{0, 2}, {3, 3}};
  EXPECT_EQ(out, want2);
}

TEST(Regex, EscapeMatchesLiterally) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  tk::Regex(tk::escape_regex("a.b+(c)|[d]{1}^$#&-~\\")).find_iter("xa.b+(c)|[d]{1}^$#&-~\\y", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], std::make_pair(std::size_t(1), std::size_t(22)));
}

TEST(Utf8Lossy, MaximalSubpartsBecomeOneReplacementChar) {
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(tk::utf8_lossy("ok"), "ok");
  EXPECT_EQ(tk::utf8_lossy("\xe6\x97"), fffd);                      // truncated 3-byte char
  EXPECT_EQ(tk::utf8_lossy("\xe6\x97" "a"), fffd + "a");
  EXPECT_EQ(tk::utf8_lossy("\xff\xfe"), fffd + fffd);               // invalid bytes, one each
  EXPECT_EQ(tk::utf8_lossy("\xed\xa0\x80"), fffd + fffd + fffd);    // surrogate: lead then strays
  EXPECT_EQ(tk::utf8_lossy("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(tk::utf8_lossy("\xf0\x9f\x98"), fffd);
}

TEST(ByteLevelTable, IsGpt2BytesToUnicode) {
  const auto& t = tk::byte_level_table();
  EXPECT_EQ(t.chr[' '], char32_t(0x120));   // "Ġ"
  EXPECT_EQ(t.chr['\n'], char32_t(0x10A));  // "Ċ"
  EXPECT_EQ(t.chr['a'], char32_t('a'));
  EXPECT_EQ(t.chr[0xAD], char32_t(0x143));
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t.byte(t.chr[b]), b);
}

TEST(LongestMatchTrie, LeftmostLongest) {
  tk::LongestMatchTrie t;
  t.add("ab", 1);
  t.add("abc", 2);
  t.add("bcd", 3);
  auto h = t.find("xabcd", 0);
  EXPECT_EQ(h.b, 1u);
  EXPECT_EQ(h.e, 4u);
  EXPECT_EQ(h.value, 2);
  h = t.find("xabcd", 2);
  EXPECT_EQ(h.value, 3);
  EXPECT_EQ(t.find("zzz", 0).b, std::string_view::npos);
}

// Rust's str::replace / replacen, which the BPEDecoder and WordPiece decoders call: the empty
// pattern matches before every char and at the end (checked against Rust's documented results).
TEST(Decoders, RustReplace) {
  EXPECT_EQ(tk::rust_replace("ab", "", " "), " a b ");
  EXPECT_EQ(tk::rust_replace("", "", "_"), "_");
  EXPECT_EQ(tk::rust_replace("\u00e9x", "", "_"), "_\u00e9_x_");
  EXPECT_EQ(tk::rust_replace("ab", "", "_", 1), "_ab");
  EXPECT_EQ(tk::rust_replace("ab", "", "", 1), "ab");
  EXPECT_EQ(tk::rust_replace("a</w>b</w>", "</w>", " "), "a b ");
  EXPECT_EQ(tk::rust_replace("##a##b", "##", "", 1), "a##b");
  EXPECT_EQ(tk::rust_replace("aaa", "aa", "b"), "ba");
}

TEST(Unicode, RustCharClasses) {
  EXPECT_TRUE(tk::is_whitespace(0x3000));
  EXPECT_TRUE(tk::is_whitespace(0x85));
  EXPECT_FALSE(tk::is_whitespace(0x200B));  // zero width space is not White_Space
  EXPECT_TRUE(tk::is_numeric(0xB2));        // ² (No)
  EXPECT_TRUE(tk::is_numeric(0x2163));      // Ⅳ (Nl)
  EXPECT_TRUE(tk::is_combining_mark(0x903));  // Mc
  EXPECT_FALSE(tk::is_mark_nonspacing_unicode8(0x903));
  EXPECT_TRUE(tk::is_mark_nonspacing_unicode8(0x301));
  EXPECT_FALSE(tk::is_mark_nonspacing_unicode8(0x8D4));  // Mn, but new in Unicode 9.0
  EXPECT_TRUE(tk::is_other_unicode8(0x200B));             // Cf
  EXPECT_TRUE(tk::is_other_unicode8(0xE000));             // Co
  EXPECT_FALSE(tk::is_other_unicode8(0x8E2));             // Cf, but new in Unicode 9.0
  EXPECT_FALSE(tk::is_other_unicode8(0x378));             // unassigned (Cn)
  EXPECT_TRUE(tk::is_regex_word(0x200D));   // Join_Control is \w for the regex crate
  char32_t out[3];
  ASSERT_EQ(tk::to_lowercase(0x130, out), 2);
  EXPECT_EQ(out[0], char32_t('i'));
  EXPECT_EQ(out[1], char32_t(0x307));
  ASSERT_EQ(tk::to_lowercase(0x3A3, out), 1);
  EXPECT_EQ(out[0], char32_t(0x3C3));  // Σ -> σ without final-sigma context
  EXPECT_EQ(tk::compose_pair('e', 0x301), char32_t(0xE9));
  EXPECT_EQ(tk::compose_pair(0x915, 0x93C), char32_t(0));  // U+0958 is a composition exclusion
}

}  // namespace
