#pragma once
// Scoring a text under a model, or under the paper's ensemble of models (model/ensemble.hpp):
// per-token log-probabilities, perplexity and bits per UTF-8 byte of a text (`fusellm score`),
// with non-overlapping windows; and the one-forward-pass continuation score that `fusellm eval`
// builds lm-evaluation-harness's loglikelihood and loglikelihood_rolling on (eval/rolling_windows,
// eval/multiple_choice: those follow the harness's windows and BOS/EOS prefix; score_ids does not).
//
// Token i's log-prob is log softmax(logits[i-1])[id_i]; the first token of the text has none
// (unless it is a BOS the tokenizer added). Texts longer than the window are scored in
// consecutive windows (each window restarts the context, so the first token of each window has
// no log-prob either). perplexity = exp(mean NLL over scored tokens); bits per byte =
// sum NLL / ln 2 / UTF-8 bytes of the text.
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::eval {

struct TokenScore {
  int64_t pos = 0;       // index in the text's ids
  int32_t id = 0;
  double logprob = 0.0;  // natural log
};

struct TextScore {
  int64_t tokens = 0;  // ids of the text
  int64_t scored = 0;  // tokens with a log-prob
  int64_t bytes = 0;   // UTF-8 bytes of the text
  double nll = 0.0;    // sum over scored tokens, nats
  double mean_nll() const { return nll / double(scored); }
  double perplexity() const { return std::exp(mean_nll()); }
  double bits_per_byte() const { return nll / std::log(2.0) / double(bytes); }
};

// A model and the name errors give it (its directory).
struct NamedModel {
  const CausalLM* model = nullptr;
  std::string name;
};

struct ScoreRequest {
  std::span<const NamedModel> models;  // one: that model; several: their ensemble
  std::span<const double> weights;     // one per model (mixture_weights.hpp)
  std::span<const int32_t> ids;        // the text's ids, checked against every model's vocabulary
  int64_t bytes = 0;                   // the text's UTF-8 bytes
  int64_t window = 0;                  // tokens per forward pass; <= 0: default_window(models)
  std::string file;                    // names the text in errors
};

// The smallest context (max_positions) of the models, or 2048 when none states one.
int64_t default_window(std::span<const NamedModel> models);

// The log-probs of req.ids[t] for t >= first_target (>= 1), each given req.ids[0, t), from one
// forward pass per model over req.ids[0, n-1): the last id is only a target, as
// lm-evaluation-harness's HFLM._loglikelihood_tokens feeds (context + continuation)[:-1], so a
// window of n ids needs a context of n-1 positions. Returns their sum (nats); `on_token` sees each
// with pos = t + pos_offset. Errors as score_ids.
double score_continuation(const ScoreRequest& req, int64_t first_target,
                          const std::function<void(const TokenScore&)>& on_token = {}, int64_t pos_offset = 0);

// Scores the text; `on_token` (optional) sees every scored token in order. Error (naming the
// file and the model) on an id outside a model's vocabulary, a non-finite log-prob, or a text
// with no token to score.
TextScore score_ids(const ScoreRequest& req, const std::function<void(const TokenScore&)>& on_token = {});

// The ensemble needs one tokenizer: `other` (from `other_dir`) must have `first`'s vocabulary
// (every id's string) and encode `text` to `first_enc`'s ids. Error naming both otherwise.
void check_same_tokenizer(const Tokenizer& first, const std::string& first_dir, const Tokenizer& other,
                          const std::string& other_dir, const Encoding& first_enc, const std::string& text);

}  // namespace fusellm::eval
