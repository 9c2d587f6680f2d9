#include "fusellm/eval/eval_model.hpp"

#include <filesystem>

#include "fusellm/core/error.hpp"

namespace fusellm::eval {

EvalModel EvalModel::load(const std::string& dir, int64_t max_length) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("{}: not a model directory", dir);
  if (!fs::exists(fs::path(dir) / "tokenizer.json") && !fs::exists(fs::path(dir) / "tokenizer.model"))
    fail("{}: no tokenizer.json (nor tokenizer.model) in the model directory: fusellm eval tokenizes with the "
         "model's own tokenizer, as lm-evaluation-harness loads it with AutoTokenizer from the same directory",
         dir);
  EvalModel m;
  m.dir = dir;
  m.tokenizer = Tokenizer::load(dir);
  m.model = CausalLM::load(dir);
  m.special = special_tokens(dir, *m.tokenizer);
  const int64_t context = m.model->info().max_positions;
  m.max_length = max_length > 0 ? max_length : context > 0 ? context : 2048;
  return m;
}

std::vector<int32_t> EvalModel::encode(std::string_view text) const { return tokenizer->encode(text, false).ids; }

std::string EvalModel::decode(const std::vector<int32_t>& ids) const { return tokenizer->decode(ids, true); }

}  // namespace fusellm::eval
