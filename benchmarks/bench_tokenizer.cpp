// Tokenization throughput of fusellm's tokenizer, single-threaded: every held-out document of a
// fixture (tests/fixtures/tokenizers/docs.jsonl) encoded separately, as benchmarks/bench_tokenizer.py
// does with the Rust `tokenizers` library. benchmarks/run_tokenizer_bench.sh runs both.
//
//   bench_tokenizer [--fixture NAME | --tokenizer PATH] [--docs FILE] [--min-seconds S] [--json]
//
// Prints MB/s (of UTF-8 input) and tokens/s; the best of the repeats, each repeat being one pass
// over all documents (at least --min-seconds in total, default 3).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fusellm/tokenizer/tokenizer.hpp"

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--fixture NAME | --tokenizer PATH] [--docs FILE] [--min-seconds S] [--json]\n"
               "  NAME: a directory under tests/fixtures/tokenizers (default bytelevel)\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string fixtures = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/tokenizers";
  std::string fixture = "bytelevel", tokenizer_path, docs_path = fixtures + "/docs.jsonl";
  double min_seconds = 3.0;
  bool json_out = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage(argv[0]));
      return argv[++i];
    };
    if (a == "--fixture") fixture = next();
    else if (a == "--tokenizer") tokenizer_path = next();
    else if (a == "--docs") docs_path = next();
    else if (a == "--min-seconds") min_seconds = std::atof(next().c_str());
    else if (a == "--json") json_out = true;
    else return usage(argv[0]);
  }
  if (tokenizer_path.empty()) tokenizer_path = fixtures + "/" + fixture;

  std::vector<std::string> docs;
  {
    std::ifstream in(docs_path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", docs_path.c_str());
      return 1;
    }
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) docs.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  }
  std::size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();

  std::unique_ptr<fusellm::Tokenizer> tok;
  try {
    tok = fusellm::Tokenizer::load(tokenizer_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load failed: %s\n", e.what());
    return 1;
  }

  // One warm-up pass, then repeats until min_seconds; report the fastest pass.
  auto pass = [&](std::size_t& tokens) {
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) tokens += tok->encode(d).ids.size();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::size_t tokens = 0;
  pass(tokens);
  double best = 1e300, total = 0;
  int reps = 0;
  while (total < min_seconds || reps < 3) {
    const double s = pass(tokens);
    best = std::min(best, s);
    total += s;
    ++reps;
  }
  const double mbps = double(bytes) / best / 1e6;
  const double tps = double(tokens) / best;
  if (json_out) {
    nlohmann::json j = {{"impl", "fusellm"}, {"tokenizer", tokenizer_path}, {"docs", docs.size()},
                        {"bytes", bytes}, {"tokens", tokens}, {"threads", 1}, {"best_seconds", best},
                        {"repeats", reps}, {"mb_per_s", mbps}, {"tokens_per_s", tps}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("fusellm %-40s %zu docs, %.2f MB, %zu tokens, 1 thread, best of %d: %.4f s  ->  %.2f MB/s, %.0f tokens/s\n",
                tok->describe().substr(0, 40).c_str(), docs.size(), double(bytes) / 1e6, tokens, reps, best, mbps,
                tps);
  }
  return 0;
}
