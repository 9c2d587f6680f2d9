#pragma once
// The model under evaluation as lm-evaluation-harness's HFLM sees it: the checkpoint, its own
// tokenizer (from the model directory), its special tokens, and max_length (HFLM.max_length: the
// --max-length given, else the model's context: config.json's n_positions /
// max_position_embeddings / n_ctx, MPT's max_seq_len).
//
// Text is encoded without special tokens (HFLM.tok_encode: add_special_tokens=False for causal
// models unless add_bos_token is set), so a tokenizer whose post-processor adds a BOS does not
// add it here: the rolling windows start from the prefix token instead, and multiple-choice
// contexts start with the context's first token.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/eval/special_tokens.hpp"
#include "fusellm/model/backend.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::eval {

struct EvalModel {
  std::string dir;
  std::unique_ptr<CausalLM> model;
  // The paper's ensemble baseline (model/ensemble.hpp): further models that share the tokenizer,
  // whose next-token probabilities are averaged with `model`'s, weighted by `weights` (one per
  // model, `model` first). Empty for one model. Scoring (loglikelihood, rolling windows) uses the
  // mixture; generation refuses it.
  std::vector<std::unique_ptr<CausalLM>> members;
  std::vector<std::string> member_dirs;
  std::vector<double> weights;
  std::unique_ptr<Tokenizer> tokenizer;
  SpecialTokens special;
  int64_t max_length = 0;

  // Error naming the directory when it has no tokenizer.json or tokenizer.model; max_length <= 0:
  // the model's context (2048 when config.json states none, HFLM's _DEFAULT_MAX_LENGTH).
  // The forward passes run on `backend` (device/compute_backend.hpp picks it from --device).
  static EvalModel load(const std::string& dir, int64_t max_length = 0,
                        const model::Backend& backend = model::cpu_backend());
  // An ensemble: dirs[0] as load() gives it, the others' models added as members (each must
  // have dirs[0]'s tokenizer: Error naming both otherwise); max_length the smallest context
  // unless given. weights: one per dir, summing to 1.
  static EvalModel load_ensemble(const std::vector<std::string>& dirs, const std::vector<double>& weights,
                                 int64_t max_length = 0, const model::Backend& backend = model::cpu_backend());
  bool is_ensemble() const { return !members.empty(); }

  std::vector<int32_t> encode(std::string_view text) const;  // add_special_tokens=False
  std::string decode(const std::vector<int32_t>& ids) const;  // skip_special_tokens=True
};

}  // namespace fusellm::eval
