#include "fusellm/eval/eval_model.hpp"

#include <filesystem>

#include "fusellm/core/error.hpp"
#include "fusellm/eval/text_score.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm::eval {

EvalModel EvalModel::load(const std::string& dir, int64_t max_length, const model::Backend& backend) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("{}: not a model directory", dir);
  if (!fs::exists(fs::path(dir) / "tokenizer.json") && !fs::exists(fs::path(dir) / "tokenizer.model"))
    fail("{}: no tokenizer.json (nor tokenizer.model) in the model directory: fusellm eval tokenizes with the "
         "model's own tokenizer, as lm-evaluation-harness loads it with AutoTokenizer from the same directory",
         dir);
  EvalModel m;
  m.dir = dir;
  m.tokenizer = Tokenizer::load(dir);
  m.model = model::load_decoder(dir, {}, backend);
  m.special = special_tokens(dir, *m.tokenizer);
  const int64_t context = m.model->info().max_positions;
  m.max_length = max_length > 0 ? max_length : context > 0 ? context : 2048;
  return m;
}

EvalModel EvalModel::load_ensemble(const std::vector<std::string>& dirs, const std::vector<double>& weights,
                                   int64_t max_length, const model::Backend& backend) {
  if (dirs.empty()) fail("eval: no model");
  if (weights.size() != dirs.size()) fail("eval: {} weights for {} models", weights.size(), dirs.size());
  EvalModel m = load(dirs[0], max_length, backend);
  if (dirs.size() == 1) return m;
  // A text with words, digits, spaces and punctuation: tokenizers that differ encode it differently.
  const std::string probe = "The quick brown fox, 42 times:\n  int main(void) { return 0; }";
  const Encoding first = m.tokenizer->encode(probe, true);
  int64_t context = m.model->info().max_positions;
  for (size_t i = 1; i < dirs.size(); ++i) {
    EvalModel other = load(dirs[i], max_length, backend);
    check_same_tokenizer(*m.tokenizer, dirs[0], *other.tokenizer, dirs[i], first, probe);
    const int64_t c = other.model->info().max_positions;
    if (c > 0 && (context <= 0 || c < context)) context = c;
    m.members.push_back(std::move(other.model));
    m.member_dirs.push_back(dirs[i]);
  }
  if (max_length <= 0 && context > 0) m.max_length = context;
  m.weights = weights;
  return m;
}

std::vector<int32_t> EvalModel::encode(std::string_view text) const { return tokenizer->encode(text, false).ids; }

std::string EvalModel::decode(const std::vector<int32_t>& ids) const { return tokenizer->decode(ids, true); }

}  // namespace fusellm::eval
