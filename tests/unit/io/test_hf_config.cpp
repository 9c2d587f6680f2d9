// config.json getters and the JSON/text readers: values, defaults, and errors that name the file
// and the field with what was expected and found.
#include <gtest/gtest.h>

#include "fusellm/io/hf_config.hpp"
#include "unit/io/safetensors_writer.hpp"

using namespace fusellm;
using namespace fusellm::test;

class HFConfigTest : public TempDirTest {
 protected:
  HFConfig write(const std::string& text) {
    write_bytes(dir_ / "config.json", text);
    return HFConfig::load(dir_.string());
  }
  std::string file() const { return path("config.json"); }
};

TEST_F(HFConfigTest, TypedGetters) {
  const HFConfig c = write(R"({"hidden_size": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000,
      "tie_word_embeddings": false, "model_type": "llama", "max_position_embeddings": 2048.0,
      "rope_scaling": null, "n_embd": 32, "negative": -3})");
  EXPECT_EQ(c.path(), file());
  EXPECT_EQ(c.get_int("hidden_size"), 64);
  EXPECT_EQ(c.get_int("negative"), -3);
  EXPECT_EQ(c.get_int("max_position_embeddings"), 2048);  // integral float accepted
  EXPECT_DOUBLE_EQ(c.get_float("rms_norm_eps"), 1e-6);
  EXPECT_DOUBLE_EQ(c.get_float("rope_theta"), 10000.0);  // an integer is a number
  EXPECT_FALSE(c.get_bool("tie_word_embeddings", true));
  EXPECT_EQ(c.get_string("model_type"), "llama");
  EXPECT_TRUE(c.has("hidden_size"));
  EXPECT_FALSE(c.has("rope_scaling"));  // null counts as absent
  EXPECT_FALSE(c.has("nope"));
  EXPECT_EQ(c.json()["n_embd"], 32);
}

TEST_F(HFConfigTest, DefaultsApplyToAbsentAndNull) {
  const HFConfig c = write(R"({"rope_scaling": null, "x": 5})");
  EXPECT_EQ(c.get_int("nope", 7), 7);
  EXPECT_EQ(c.get_int("rope_scaling", 7), 7);
  EXPECT_EQ(c.get_int("x", 7), 5);
  EXPECT_DOUBLE_EQ(c.get_float("nope", 0.5), 0.5);
  EXPECT_TRUE(c.get_bool("nope", true));
  EXPECT_EQ(c.get_string("nope", "gelu"), "gelu");
  EXPECT_EQ(c.get_string("rope_scaling", "none"), "none");
}

TEST_F(HFConfigTest, LoadsFileOrDirectory) {
  write(R"({"a": 1})");
  EXPECT_EQ(HFConfig::load(file()).get_int("a"), 1);
  EXPECT_EQ(HFConfig::load(dir_.string()).path(), file());
}

TEST_F(HFConfigTest, WrongTypeNamesFileFieldExpectedAndFound) {
  const HFConfig c = write(R"({"num_attention_heads": "x", "eps": "small", "flag": 1, "name": 3,
                                "frac": 2.5, "big": 18446744073709551615, "obj": {"a": [1, 2]}})");
  EXPECT_FAILS_WITH(c.get_int("num_attention_heads"),
                    file() + ": field 'num_attention_heads': expected an integer, found \"x\"");
  EXPECT_FAILS_WITH(c.get_int("num_attention_heads", 4), file(), "'num_attention_heads'", "expected an integer");
  EXPECT_FAILS_WITH(c.get_int("frac"), file() + ": field 'frac': expected an integer, found 2.5");
  EXPECT_FAILS_WITH(c.get_int("big"), "field 'big'", "out of range");
  EXPECT_FAILS_WITH(c.get_int("obj"), "field 'obj'", R"(found {"a":[1,2]})");
  EXPECT_FAILS_WITH(c.get_float("eps"), file() + ": field 'eps': expected a number, found \"small\"");
  EXPECT_FAILS_WITH(c.get_float("eps", 1.0), "field 'eps'", "expected a number");
  EXPECT_FAILS_WITH(c.get_bool("flag", false), file() + ": field 'flag': expected true or false, found 1");
  EXPECT_FAILS_WITH(c.get_string("name"), file() + ": field 'name': expected a string, found 3");
  EXPECT_FAILS_WITH(c.get_string("name", "d"), "field 'name'", "expected a string");
}

TEST_F(HFConfigTest, MissingRequiredField) {
  const HFConfig c = write(R"({"rope_scaling": null})");
  EXPECT_FAILS_WITH(c.get_int("vocab_size"), file() + ": field 'vocab_size' is missing");
  EXPECT_FAILS_WITH(c.get_float("rope_scaling"), file() + ": field 'rope_scaling' is missing");
  EXPECT_FAILS_WITH(c.get_string("model_type"), file() + ": field 'model_type' is missing");
  EXPECT_FAILS_WITH(c.field_error("k", "must be positive"), file() + ": field 'k': must be positive");
}

TEST_F(HFConfigTest, FirstPresentSynonym) {
  const HFConfig gpt2 = write(R"({"n_embd": 768, "hidden_size": null})");
  EXPECT_EQ(gpt2.get_int_any({"hidden_size", "n_embd"}), 768);
  EXPECT_FAILS_WITH(gpt2.get_int_any({"d_model", "dim"}), file(), "none of the fields 'd_model', 'dim'");
  const HFConfig bad = write(R"({"n_embd": "wide"})");
  EXPECT_FAILS_WITH(bad.get_int_any({"hidden_size", "n_embd"}), "field 'n_embd'", "expected an integer");
}

TEST_F(HFConfigTest, BadFiles) {
  EXPECT_FAILS_WITH(HFConfig::load(path("missing")), path("missing"), "cannot open");
  EXPECT_FAILS_WITH(write("[1, 2]"), file(), "expected a JSON object, found array");
  EXPECT_FAILS_WITH(write("{\"a\": 1,\n \"b\": }"), file(), "invalid JSON at byte 16", "line 2, column 7");
}

TEST_F(HFConfigTest, ReadTextAndJson) {
  write_bytes(dir_ / "t.txt", std::string("a\0b", 3));
  EXPECT_EQ(read_text_file(path("t.txt")), std::string("a\0b", 3));
  write_bytes(dir_ / "e.txt", "");
  EXPECT_EQ(read_text_file(path("e.txt")), "");
  EXPECT_FAILS_WITH(read_text_file(path("nope.txt")), path("nope.txt"), "cannot open", "No such file");
  EXPECT_FAILS_WITH(read_text_file(dir_.string()), dir_.string(), "is a directory");
  write_bytes(dir_ / "j.json", R"({"k": [1, 2]})");
  EXPECT_EQ(read_json_file(path("j.json"))["k"][1], 2);
  write_bytes(dir_ / "bad.json", "{\"k\": tru}");
  EXPECT_FAILS_WITH(read_json_file(path("bad.json")), path("bad.json"), "invalid JSON at byte");
  write_bytes(dir_ / "big.json", R"({"rope_theta": 1e999})");
  EXPECT_FAILS_WITH(read_json_file(path("big.json")), path("big.json"), "invalid JSON", "overflow");
}
