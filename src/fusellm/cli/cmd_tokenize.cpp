// fusellm tokenize --tokenizer DIR [FILE...]: ids, tokens and offsets as JSON lines.
// Each FILE is one document; with no FILE, each line of stdin is one document (or, with
// --jsonl, each stdin line is a JSON object whose "text" field is the document).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::cli {

namespace {
struct TokenizeOptions {
  std::string tokenizer;
  std::vector<std::string> files;
  bool no_special = false;
  bool jsonl = false;
  bool byte_offsets = false;
  bool decode = false;
};

void emit(const Tokenizer& tok, const TokenizeOptions& o, const std::string& text, const nlohmann::json& source) {
  const Encoding e = tok.encode(text, !o.no_special);
  nlohmann::json j;
  j["source"] = source;
  j["ids"] = e.ids;
  j["tokens"] = e.tokens;
  j["offsets"] = o.byte_offsets ? e.byte_offsets : e.char_offsets;
  if (o.decode) j["decoded"] = tok.decode(e.ids, true);
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}
}  // namespace

void add_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* sub = app.add_subcommand("tokenize", "tokenize text; print ids, tokens and offsets as JSON lines");
  sub->add_option("--tokenizer", o->tokenizer, "directory with tokenizer.json (or tokenizer.model), or the file")
      ->required();
  auto* files = sub->add_option("files", o->files, "documents (one per file); stdin lines when none");
  sub->add_flag("--no-special", o->no_special, "do not add special tokens (BOS, templates)");
  sub->add_flag("--jsonl", o->jsonl, "stdin lines are JSON objects with a \"text\" field")->excludes(files);
  sub->add_flag("--byte-offsets", o->byte_offsets, "offsets in UTF-8 bytes (default: characters, as HF)");
  sub->add_flag("--decode", o->decode, "also print the decoded text");
  sub->callback([o] {
    const auto tok = Tokenizer::load(o->tokenizer);
    if (!o->files.empty()) {
      for (const auto& f : o->files) emit(*tok, *o, read_utf8_file(f), f);
      return;
    }
    std::string line;
    int64_t n = 0;
    while (std::getline(std::cin, line)) {
      ++n;
      require_utf8(line, fmt::format("stdin line {}", n));
      if (!o->jsonl) {
        emit(*tok, *o, line, n);
        continue;
      }
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("stdin line {}: not JSON: {}", n, e.what());
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        fail("stdin line {}: expected an object with a string field \"text\"", n);
      emit(*tok, *o, j["text"].get<std::string>(), n);
    }
  });
}

}  // namespace fusellm::cli
