// eval/choice_task: the four dataset forms and the normalized one turned into (context,
// choices, gold) as the harness's templates do, and the errors for bad lines (file:line, field).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "error_of.hpp"
#include "fusellm/eval/choice_task.hpp"
#include "fusellm/eval/generation_task.hpp"

namespace fs = std::filesystem;
using namespace fusellm;
using fusellm::testing::error_of;

namespace {
const fs::path kSamples = fs::path(FUSELLM_SOURCE_DIR) / "examples" / "eval";

std::string write_task(const std::string& name, const std::string& lines) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_choice_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p) << lines;
  return p.string();
}
}  // namespace

TEST(ChoiceTask, ReadsTheShippedSamplesWithTheHarnessTemplates) {
  const auto arc = eval::read_choice_task((kSamples / "arc_sample.jsonl").string());
  EXPECT_EQ(arc.name, "arc_sample");
  EXPECT_EQ(arc.format, "arc");
  EXPECT_EQ(arc.docs[0].context, "Question: Which tool is used to measure the temperature of the air?\nAnswer:");
  EXPECT_EQ(arc.docs[2].gold, 2);  // answerKey "3" among labels "1", "2", "3"
  const auto obqa = eval::read_choice_task((kSamples / "openbookqa_sample.jsonl").string());
  EXPECT_EQ(obqa.docs[1].gold, 1);  // answerKey " B": lstrip
  EXPECT_EQ(obqa.docs[0].context, "The sun is responsible for");
  const auto hs = eval::read_choice_task((kSamples / "hellaswag_sample.jsonl").string());
  EXPECT_EQ(hs.format, "hellaswag");
  EXPECT_EQ(hs.docs[1].context, "Computers: A user opens a terminal. The user");  // capitalize()
  EXPECT_EQ(hs.docs[0].choices[1], "throws the kettle out of the window. and leaves.");
  EXPECT_EQ(hs.docs[0].choices[3], "reads a book about ships.");
  EXPECT_EQ(hs.docs[1].choices[1], " eats the keyboard.");  // "[step]" dropped after the strip: the space stays
  const auto bq = eval::read_choice_task((kSamples / "boolq_sample.jsonl").string());
  EXPECT_EQ(bq.docs[1].choices, (std::vector<std::string>{"no", "yes"}));
  EXPECT_EQ(bq.docs[1].gold, 0);
  EXPECT_TRUE(bq.docs[1].context.ends_with(
      "higher altitudes the boiling point is lower.\nQuestion: does water boil at 50 degrees celsius at sea level?\nAnswer:"))
      << bq.docs[1].context;
  const auto gen = eval::read_generation_task((kSamples / "bbh_sample.jsonl").string());
  EXPECT_EQ(gen.docs[0].prompt, "Q: not ( True ) and ( True ) is\nA: Let's think step by step.");
}

TEST(ChoiceTask, HellaswagPreprocessAsItsUtils) {
  EXPECT_EQ(eval::hellaswag_preprocess("  A [title] B [x] C  D "), "A. B C D");
  EXPECT_EQ(eval::hellaswag_preprocess("keep [open\nbracket]"), "keep [open\nbracket]");
}

TEST(ChoiceTask, RefusesAMissingFieldNamingFileLineAndField) {
  const std::string p = write_task("missing.jsonl",
                                   "{\"question\": \"q\", \"choices\": {\"text\": [\"a\"], \"label\": [\"A\"]}, "
                                   "\"answerKey\": \"A\"}\n\n{\"question\": \"q\", \"choices\": {\"text\": [\"a\"], "
                                   "\"label\": [\"A\"]}}\n");
  const std::string e = error_of([&] { eval::read_choice_task(p); });
  EXPECT_NE(e.find("missing.jsonl:3: field 'answerKey' is missing"), std::string::npos) << e;
  EXPECT_NE(e.find("ARC form"), std::string::npos) << e;
}

TEST(ChoiceTask, RefusesAnEmptyChoiceList) {
  const std::string p = write_task("empty.jsonl", "{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n");
  const std::string e = error_of([&] { eval::read_choice_task(p); });
  EXPECT_NE(e.find("empty.jsonl:1: the choice list is empty"), std::string::npos) << e;
}

TEST(ChoiceTask, RefusesAGoldOutOfRange) {
  const std::string p = write_task("gold.jsonl", "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n"
                                                 "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n");
  const std::string e = error_of([&] { eval::read_choice_task(p); });
  EXPECT_NE(e.find("gold.jsonl:2: gold index 2 is out of range: there are 2 choices"), std::string::npos) << e;
}

TEST(ChoiceTask, RefusesAnAnswerKeyThatIsNoLabelAndAnUnknownForm) {
  const std::string p = write_task("key.jsonl", "{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], "
                                                "\"label\": [\"A\", \"B\"]}, \"answerKey\": \"E\"}\n");
  EXPECT_NE(error_of([&] { eval::read_choice_task(p); }).find("key.jsonl:1: answerKey 'E' is not one of choices.label [A, B]"),
            std::string::npos);
  const std::string u = write_task("unknown.jsonl", "{\"foo\": 1}\n");
  EXPECT_NE(error_of([&] { eval::read_choice_task(u); }).find("unknown.jsonl:1: cannot tell the task's form"),
            std::string::npos);
  const std::string bad = write_task("bad.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\nnot json\n");
  EXPECT_NE(error_of([&] { eval::read_choice_task(bad); }).find("bad.jsonl:2: not a JSON object"), std::string::npos);
  const std::string none = write_task("none.jsonl", "\n  \n");
  EXPECT_NE(error_of([&] { eval::read_choice_task(none); }).find("none.jsonl: the task file has no document"),
            std::string::npos);
}
