// fusellm score --model DIR [--model DIR ...] [--weights ...] FILE: per-token log-probabilities
// of a text under a model, and its perplexity and bits per UTF-8 byte (the unit the FuseLLM
// paper's Pythia experiment reports).
//
// The text is tokenized with the model's own tokenizer (BOS added when the tokenizer adds it).
// Token i's log-prob is log softmax(logits[i-1])[id_i]; the first token has none unless it is a
// BOS. Texts longer than the context are scored in consecutive windows of the context length
// (each window restarts the context; said on stderr). Perplexity = exp(mean NLL over scored
// tokens); bits per byte = sum NLL / ln 2 / UTF-8 bytes of the text.
//
// With several --model, the text is scored under the paper's ensemble baseline,
// p = sum_j w_j softmax(z_j) (model/ensemble.hpp), in the same output formats. The models must
// share the tokenizer: without --tokenizer each model's own is loaded, and they must have the
// same vocabulary (every id's string) and give the same ids for the text. The default window is
// the smallest context of the models.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/ensemble.hpp"
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

// The ensemble needs one tokenizer: `other` (model `other_dir`'s) must have `first`'s vocabulary
// and encode the text to the same ids.
void check_same_tokenizer(const Tokenizer& first, const std::string& first_dir, const Tokenizer& other,
                          const std::string& other_dir, const Encoding& enc, const std::string& text) {
  const auto refuse = [&](const std::string& what) {
    fail("{}: its tokenizer differs from {}'s ({}): the ensemble needs models that share one tokenizer "
         "(or pass --tokenizer to use one for all)",
         other_dir, first_dir, what);
  };
  if (other.vocab_size() != first.vocab_size())
    refuse(fmt::format("{} tokens, {} has {}", other.vocab_size(), first_dir, first.vocab_size()));
  for (int64_t id = 0; id < first.vocab_size(); ++id)
    if (other.id_to_token(int32_t(id)) != first.id_to_token(int32_t(id)))
      refuse(fmt::format("id {} is '{}', {} has '{}'", id, other.id_to_token(int32_t(id)), first_dir,
                         first.id_to_token(int32_t(id))));
  if (other.encode(text, true).ids != enc.ids) refuse("it encodes the text to other ids");
}
// A log-prob that is not finite comes from logits that are not (log softmax of finite fp32
// logits, computed in double, is finite): NaN or Inf weights, or an overflow in the forward
// pass. A perplexity of inf or nan would read as a (bad) score; it is an error of the model.
[[noreturn]] void refuse_non_finite(const ScoreOptions& o, std::span<const std::span<const float>> rows, int64_t pos,
                                    double lp) {
  for (size_t j = 0; j < rows.size(); ++j) {
    const auto bad = std::find_if(rows[j].begin(), rows[j].end(), [](float v) { return !std::isfinite(v); });
    if (bad != rows[j].end())
      fail("{}: the model gives a non-finite logit ({} at vocabulary id {}) predicting token {} of {}: its weights "
           "hold NaN or Inf, or its forward pass overflows",
           o.models[j], *bad, bad - rows[j].begin(), pos, o.file);
  }
  fail("{}: token {}: log-probability {} is not finite (the logits are finite)", o.file, pos, lp);
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
  sub->callback([o] {
    const std::vector<double> weights =
        as_usage_error([&] { return mixture_weights(o->weights, o->models.size(), "--weights"); });
    const std::string text = read_utf8_file(o->file);
    if (text.empty()) fail("{}: the file is empty: no text to score", o->file);
    const auto tok = Tokenizer::load(o->tokenizer.empty() ? o->models[0] : o->tokenizer);
    const Encoding enc = tok->encode(text, true);
    const auto& ids = enc.ids;
    if (o->tokenizer.empty())
      for (size_t j = 1; j < o->models.size(); ++j)
        check_same_tokenizer(*tok, o->models[0], *Tokenizer::load(o->models[j]), o->models[j], enc, text);
    std::vector<std::unique_ptr<CausalLM>> models;
    int64_t context = 0;
    for (const std::string& dir : o->models) {
      models.push_back(CausalLM::load(dir));
      const ModelInfo& info = models.back()->info();
      const int64_t V = info.vocab_size;
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= V)
          fail("{}: token {} has id {}, outside the vocabulary of {} in {} (tokenizer and model disagree)", o->file,
               i, ids[i], V, dir);
      if (info.max_positions > 0) context = context > 0 ? std::min(context, info.max_positions) : info.max_positions;
    }
    int64_t window = o->window > 0 ? o->window : context;
    if (window <= 0) window = 2048;
    if (int64_t(ids.size()) > window)
      spdlog::info("{} tokens > window {}: scoring in {} windows", ids.size(), window,
                   (int64_t(ids.size()) + window - 1) / window);
    double nll = 0;
    int64_t scored = 0;
    for (int64_t start = 0; start < int64_t(ids.size()); start += window) {
      const int64_t len = std::min<int64_t>(window, int64_t(ids.size()) - start);
      std::vector<Tensor> logits;
      for (const auto& model : models)
        logits.push_back(model->forward(std::span<const int32_t>(ids).subspan(start, len)));
      std::vector<std::span<const float>> rows(logits.size());
      for (int64_t i = 1; i < len; ++i) {
        const int64_t pos = start + i;
        for (size_t j = 0; j < logits.size(); ++j) rows[j] = logits[j].row(i - 1);
        // One model: weight 1, log 1 = 0, so this is that model's log softmax exactly.
        const double lp = ensemble_log_prob(rows, weights, ids[pos]);
        if (!std::isfinite(lp)) refuse_non_finite(*o, rows, pos, lp);
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
    // lm-evaluation-harness's perplexity over no token fails (the mean of nothing); torch's mean
    // cross-entropy over no label is nan. Neither is a score: say why there is none.
    if (scored == 0)
      fail("{}: no token to score: the text gives {} token(s) and a token's log-prob needs a token before it "
           "(the first token has none unless the tokenizer adds a BOS)",
           o->file, ids.size());
    const double bytes = double(text.size());
    const double ppl = std::exp(nll / double(scored));
    const double bpb = nll / std::log(2.0) / bytes;
    if (o->json) {
      nlohmann::json j{{"file", o->file}, {"tokens", ids.size()}, {"scored_tokens", scored},
                       {"nll", nll}, {"perplexity", ppl}, {"bits_per_byte", bpb}, {"bytes", text.size()}};
      if (models.size() > 1) j["ensemble"] = {{"models", o->models}, {"weights", weights}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      if (models.size() > 1) {
        std::printf("ensemble of %zu models:", models.size());
        for (size_t j = 0; j < models.size(); ++j) std::printf(" %s (%.4g)", o->models[j].c_str(), weights[j]);
        std::printf("\n");
      }
      std::printf("file %s: %zu tokens (%lld scored), %zu bytes\n", o->file.c_str(), ids.size(),
                  (long long)scored, text.size());
      std::printf("mean NLL %.4f nats/token, perplexity %.3f, bits per byte %.4f\n", nll / double(scored), ppl, bpb);
    }
  });
}

}  // namespace fusellm::cli
