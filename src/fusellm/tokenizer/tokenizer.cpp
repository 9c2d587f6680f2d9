// Tokenizer::load: tokenizer.json (preferred) or a SentencePiece tokenizer.model.
#include "fusellm/tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/hf_tokenizer.hpp"
#include "fusellm/tokenizer/sentencepiece_tokenizer.hpp"

namespace fusellm {

std::unique_ptr<Tokenizer> Tokenizer::from_json_string(std::string_view text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", origin, e.what());
  }
  try {
    return std::make_unique<tok::HFTokenizer>(j, origin);
  } catch (const nlohmann::json::exception& e) {  // a type mismatch the checks above missed
    fail("{}: {}", origin, e.what());
  }
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) {
      p /= "tokenizer.json";
    } else if (fs::exists(p / "tokenizer.model", ec)) {
      return std::make_unique<tok::SentencePieceTokenizer>((p / "tokenizer.model").string());
    } else {
      fail("{}: no tokenizer.json or tokenizer.model in this directory", path);
    }
  } else if (!fs::exists(p, ec)) {
    fail("{}: no such file or directory", path);
  } else if (p.extension() == ".model") {
    return std::make_unique<tok::SentencePieceTokenizer>(p.string());
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("{}: cannot open for reading", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", p.string());
  return from_json_string(ss.str(), p.string());
}

}  // namespace fusellm
