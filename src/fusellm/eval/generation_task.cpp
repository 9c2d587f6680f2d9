#include "fusellm/eval/generation_task.hpp"

#include "fusellm/eval/answer_match.hpp"
#include "fusellm/eval/generate.hpp"
#include "fusellm/eval/task_file.hpp"

namespace fusellm::eval {

GenerationTask read_generation_task(const std::string& path) {
  std::vector<TaskLine> lines = read_task_file(path);
  GenerationTask t{task_name(path), path, lines.front().has("prompt") ? "normalized" : "bbh", {}};
  const std::string told = ", told by line " + std::to_string(lines.front().line());
  for (TaskLine& l : lines) {
    if (t.format == "bbh") {
      l.set_format("BBH form" + told);
      t.docs.push_back({l.where(), "Q: " + l.string("input") + "\nA: Let's think step by step.", l.string("target")});
    } else {
      l.set_format("normalized form" + told);
      t.docs.push_back({l.where(), l.string("prompt"), l.string("target")});
    }
  }
  return t;
}

std::vector<std::string> bbh_until() { return {"</s>", "Q:", "<|im_end|>"}; }

GenerationResult score_generation(const EvalModel& m, const GenerationDoc& doc, const std::vector<std::string>& until,
                                  int64_t max_gen_toks) {
  GenerationResult r;
  r.generation = generate_until(m, doc.prompt, until, max_gen_toks, doc.where).text;
  r.answer = extract_bbh_answer(r.generation);
  r.exact_match = bbh_exact_match(r.answer, doc.target);
  return r;
}

}  // namespace fusellm::eval
