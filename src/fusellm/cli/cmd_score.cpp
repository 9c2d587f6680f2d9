// fusellm score --model DIR FILE: per-token log-probabilities of a text under a model, and its
// perplexity and bits per UTF-8 byte (the unit the FuseLLM paper's Pythia experiment reports).
//
// The text is tokenized with the model's own tokenizer (BOS added when the tokenizer adds it).
// Token i's log-prob is log softmax(logits[i-1])[id_i]; the first token has none unless it is a
// BOS. Texts longer than the context are scored in consecutive windows of the context length
// (each window restarts the context; said on stderr). Perplexity = exp(mean NLL over scored
// tokens); bits per byte = sum NLL / ln 2 / UTF-8 bytes of the text.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "fusellm/cli/commands.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::cli {

namespace {
struct ScoreOptions {
  std::string model;
  std::string tokenizer;
  std::string file;
  int64_t window = 0;
  bool json = false;
  bool quiet = false;
};

// log softmax(row)[id], computed stably in double.
double log_prob(std::span<const float> row, int32_t id) {
  float mx = row[0];
  for (float v : row) mx = std::max(mx, v);
  double s = 0;
  for (float v : row) s += std::exp(double(v) - mx);
  return double(row[id]) - mx - std::log(s);
}
}  // namespace

void add_score(CLI::App& app) {
  auto o = std::make_shared<ScoreOptions>();
  auto* sub = app.add_subcommand("score", "per-token log-probs, perplexity and bits per byte of a text");
  sub->add_option("--model", o->model, "Hugging Face checkpoint directory")->required();
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer directory (default: the model's)");
  sub->add_option("file", o->file, "UTF-8 text file")->required();
  sub->add_option("--window", o->window, "tokens per forward pass (default: the model's context)");
  sub->add_flag("--json", o->json, "JSON lines: one per token, then a summary object");
  sub->add_flag("-q,--quiet", o->quiet, "only the summary");
  sub->callback([o] {
    const std::string text = read_text_file(o->file);
    const auto tok = Tokenizer::load(o->tokenizer.empty() ? o->model : o->tokenizer);
    const auto model = CausalLM::load(o->model);
    const Encoding enc = tok->encode(text, true);
    const auto& ids = enc.ids;
    const int64_t V = model->info().vocab_size;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= V)
        fail("{}: token {} has id {}, outside the model's vocabulary of {} (tokenizer and model disagree)",
             o->file, i, ids[i], V);
    int64_t window = o->window > 0 ? o->window : model->info().max_positions;
    if (window <= 0) window = 2048;
    if (int64_t(ids.size()) > window)
      spdlog::info("{} tokens > window {}: scoring in {} windows", ids.size(), window,
                   (int64_t(ids.size()) + window - 1) / window);
    double nll = 0;
    int64_t scored = 0;
    for (int64_t start = 0; start < int64_t(ids.size()); start += window) {
      const int64_t len = std::min<int64_t>(window, int64_t(ids.size()) - start);
      const Tensor logits = model->forward(std::span<const int32_t>(ids).subspan(start, len));
      for (int64_t i = 1; i < len; ++i) {
        const int64_t pos = start + i;
        const double lp = log_prob(logits.row(i - 1), ids[pos]);
        nll -= lp;
        ++scored;
        if (o->quiet) continue;
        if (o->json) {
          nlohmann::json j{{"pos", pos}, {"id", ids[pos]}, {"token", enc.tokens[pos]}, {"logprob", lp}};
          std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else {
          std::printf("%6lld %8d %-24s %10.4f\n", (long long)pos, ids[pos], enc.tokens[pos].c_str(), lp);
        }
      }
    }
    const double bytes = double(text.size());
    const double ppl = scored ? std::exp(nll / scored) : NAN;
    const double bpb = bytes > 0 ? nll / std::log(2.0) / bytes : NAN;
    if (o->json) {
      nlohmann::json j{{"file", o->file}, {"tokens", ids.size()}, {"scored_tokens", scored},
                       {"nll", nll}, {"perplexity", ppl}, {"bits_per_byte", bpb}, {"bytes", text.size()}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("file %s: %zu tokens (%lld scored), %zu bytes\n", o->file.c_str(), ids.size(),
                  (long long)scored, text.size());
      std::printf("mean NLL %.4f nats/token, perplexity %.3f, bits per byte %.4f\n",
                  scored ? nll / scored : NAN, ppl, bpb);
    }
  });
}

}  // namespace fusellm::cli
