#include "fusellm/eval/choice_task.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>

#include "fusellm/core/error.hpp"
#include "fusellm/eval/python_text.hpp"
#include "fusellm/eval/task_file.hpp"

namespace fusellm::eval {

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) s.replace(i, from.size(), to);
  return s;
}

// re.sub(r"\[.*?\]", "", s): each "[" up to the nearest "]" on the same line ('.' stops at "\n").
std::string drop_brackets(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      const size_t j = s.find_first_of("]\n", i + 1);
      if (j != std::string::npos && s[j] == ']') {
        i = j;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// The form the first line's fields tell (see the header), or an error naming them.
std::string detect_format(const TaskLine& l) {
  if (l.has("query")) return "normalized";
  if (l.has("question_stem")) return "openbookqa";
  if (l.has("endings")) return "hellaswag";
  if (l.has("passage")) return "boolq";
  if (l.has("question") || l.has("answerKey")) return "arc";
  std::vector<std::string> keys;
  for (const auto& [k, v] : l.json().items()) keys.push_back(k);
  l.error(fmt::format("cannot tell the task's form from the fields [{}]: expected ARC (question, choices, answerKey), "
                      "OpenBookQA (question_stem, ...), HellaSwag (endings, ...), BoolQ (passage, ...) or "
                      "normalized (query, choices, gold)",
                      fmt::join(keys, ", ")));
}

// choices.label.index(key): the gold of ARC and OpenBookQA.
int64_t label_index(const TaskLine& l, const std::string& key) {
  const std::vector<std::string> labels = l.strings("choices", "label");
  const auto it = std::find(labels.begin(), labels.end(), key);
  if (it == labels.end()) l.error(fmt::format("answerKey '{}' is not one of choices.label [{}]", key, fmt::join(labels, ", ")));
  return it - labels.begin();
}

ChoiceDoc read_doc(const TaskLine& l, const std::string& format) {
  ChoiceDoc d;
  d.where = l.where();
  if (format == "arc" || format == "openbookqa") {
    const bool arc = format == "arc";
    d.context = arc ? "Question: " + l.string("question") + "\nAnswer:" : l.string("question_stem");
    d.choices = l.strings("choices", "text");
    const std::string key = l.string("answerKey");
    d.gold = label_index(l, arc ? key : std::string(py_lstrip(key)));
  } else if (format == "hellaswag") {
    d.context = hellaswag_preprocess(l.string("activity_label") + ": " + l.string("ctx_a") + " " +
                                     py_capitalize(l.string("ctx_b")));
    for (const std::string& e : l.strings("endings")) d.choices.push_back(hellaswag_preprocess(e));
    d.gold = l.integer("label");
  } else if (format == "boolq") {
    d.context = l.string("passage") + "\nQuestion: " + l.string("question") + "?\nAnswer:";
    d.choices = {"no", "yes"};
    if (!l.has("label") && l.has("answer")) {
      if (!l.json()["answer"].is_boolean()) l.error("field 'answer': expected true or false");
      d.gold = l.json()["answer"].get<bool>() ? 1 : 0;
    } else {
      d.gold = l.integer("label");
    }
  } else {
    d.context = l.string("query");
    d.choices = l.strings("choices");
    d.gold = l.integer("gold");
  }
  if (d.choices.empty()) l.error("the choice list is empty");
  for (size_t i = 0; i < d.choices.size(); ++i)
    if (d.choices[i].empty()) l.error(fmt::format("choice {} is empty (acc_norm divides by its length)", i));
  if (d.gold < 0 || d.gold >= int64_t(d.choices.size()))
    l.error(fmt::format("gold index {} is out of range: there are {} choices", d.gold, d.choices.size()));
  return d;
}

}  // namespace

std::string hellaswag_preprocess(const std::string& text) {
  std::string s = replace_all(std::string(py_strip(text)), " [title]", ". ");
  return replace_all(drop_brackets(s), "  ", " ");
}

ChoiceTask read_choice_task(const std::string& path) {
  std::vector<TaskLine> lines = read_task_file(path);
  ChoiceTask t{task_name(path), path, detect_format(lines.front()), {}};
  static const std::map<std::string, std::string> kNames{{"arc", "ARC"},
                                                         {"openbookqa", "OpenBookQA"},
                                                         {"hellaswag", "HellaSwag"},
                                                         {"boolq", "BoolQ"},
                                                         {"normalized", "normalized"}};
  for (TaskLine& l : lines) {
    l.set_format(kNames.at(t.format) + " form, told by line " + std::to_string(lines.front().line()));
    t.docs.push_back(read_doc(l, t.format));
  }
  return t;
}

}  // namespace fusellm::eval
