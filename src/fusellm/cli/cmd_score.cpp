// fusellm score --model DIR [--model DIR ...] [--weights ...] FILE: per-token log-probabilities
// of a text under a model, and its perplexity and bits per UTF-8 byte (the unit the FuseLLM
// paper's Pythia experiment reports).
//
// The text is tokenized with the model's own tokenizer (BOS added when the tokenizer adds it) and
// scored by eval/text_score.hpp (windows, perplexity, bits per byte); this file is the command's
// options and output formats.
//
// With several --model, the text is scored under the paper's ensemble baseline,
// p = sum_j w_j softmax(z_j) (model/ensemble.hpp), in the same output formats. The models must
// share the tokenizer: without --tokenizer each model's own is loaded, and they must have the
// same vocabulary (every id's string) and give the same ids for the text. The default window is
// the smallest context of the models.
#include <cstdio>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/eval/text_score.hpp"
#include "fusellm/model/mixture_weights.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::cli {

namespace {
struct ScoreOptions {
  std::vector<std::string> models;
  std::string weights;
  std::string tokenizer;
  std::string file;
  int64_t window = 0;
  bool json = false;
  bool quiet = false;
};

void print_token(const ScoreOptions& o, const Encoding& enc, const eval::TokenScore& t) {
  if (o.quiet) return;
  if (o.json) {
    nlohmann::json j{{"pos", t.pos}, {"id", t.id}, {"token", enc.tokens[size_t(t.pos)]}, {"logprob", t.logprob}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%6lld %8d %-24s %10.4f\n", (long long)t.pos, t.id, enc.tokens[size_t(t.pos)].c_str(), t.logprob);
  }
}

void print_summary(const ScoreOptions& o, const std::vector<double>& weights, const eval::TextScore& s) {
  if (o.json) {
    nlohmann::json j{{"file", o.file},   {"tokens", s.tokens},           {"scored_tokens", s.scored},
                     {"nll", s.nll},     {"perplexity", s.perplexity()}, {"bits_per_byte", s.bits_per_byte()},
                     {"bytes", s.bytes}};
    if (o.models.size() > 1) j["ensemble"] = {{"models", o.models}, {"weights", weights}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  if (o.models.size() > 1) {
    std::printf("ensemble of %zu models:", o.models.size());
    for (size_t j = 0; j < o.models.size(); ++j) std::printf(" %s (%.4g)", o.models[j].c_str(), weights[j]);
    std::printf("\n");
  }
  std::printf("file %s: %lld tokens (%lld scored), %lld bytes\n", o.file.c_str(), (long long)s.tokens,
              (long long)s.scored, (long long)s.bytes);
  std::printf("mean NLL %.4f nats/token, perplexity %.3f, bits per byte %.4f\n", s.mean_nll(), s.perplexity(),
              s.bits_per_byte());
}

void run_score(const ScoreOptions& o) {
  const std::vector<double> weights =
      as_usage_error([&] { return mixture_weights(o.weights, o.models.size(), "--weights"); });
  const std::string text = read_utf8_file(o.file);
  if (text.empty()) fail("{}: the file is empty: no text to score", o.file);
  const auto tok = Tokenizer::load(o.tokenizer.empty() ? o.models[0] : o.tokenizer);
  const Encoding enc = tok->encode(text, true);
  if (o.tokenizer.empty())
    for (size_t j = 1; j < o.models.size(); ++j)
      eval::check_same_tokenizer(*tok, o.models[0], *Tokenizer::load(o.models[j]), o.models[j], enc, text);
  std::vector<std::unique_ptr<CausalLM>> owned;
  std::vector<eval::NamedModel> models;
  for (const std::string& dir : o.models) {
    owned.push_back(CausalLM::load(dir));
    models.push_back({owned.back().get(), dir});
  }
  const eval::ScoreRequest req{models, weights, enc.ids, int64_t(text.size()), o.window, o.file};
  const eval::TextScore s = eval::score_ids(req, [&](const eval::TokenScore& t) { print_token(o, enc, t); });
  print_summary(o, weights, s);
}

}  // namespace

void add_score(CLI::App& app) {
  auto o = std::make_shared<ScoreOptions>();
  auto* sub = app.add_subcommand("score", "per-token log-probs, perplexity and bits per byte of a text");
  sub->add_option("--model", o->models, "Hugging Face checkpoint directory; several: score their ensemble")
      ->required()
      ->allow_extra_args(false);
  sub->add_option("--weights", o->weights, "ensemble weights w1,w2,...: one per --model (default: uniform)");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer directory (default: the model's)");
  sub->add_option("file", o->file, "UTF-8 text file")->required();
  sub->add_option("--window", o->window, "tokens per forward pass (default: the context, the smallest of the models')")
      ->check(at_least(2, "each window's first token has no log-prob, so a window of 1 scores nothing"));
  sub->add_flag("--json", o->json, "JSON lines: one per token, then a summary object");
  sub->add_flag("-q,--quiet", o->quiet, "only the summary");
  sub->callback([o] { run_score(*o); });
}

}  // namespace fusellm::cli
