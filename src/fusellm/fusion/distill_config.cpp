#include "fusellm/fusion/distill_config.hpp"

#include "kokkos/apply_alignment.hpp"

namespace fusellm {

static_assert(DistillConfig::kMaxTopK == align::kApplyMaxK, "[distill].top_k's bound is the alignment's");

const config::EnumNames<std::optional<kernels::FusionMode>>& fusion_names() {
  static const config::EnumNames<std::optional<kernels::FusionMode>> names{
      {{kernels::FusionMode::kMinCE, "minCE"},
       {kernels::FusionMode::kAvgCE, "avgCE"},
       {kernels::FusionMode::kMinCEPerPosition, "minCE-position"},
       {std::nullopt, "none"}}};
  return names;
}

namespace {

using S = DistillConfig;

// The original's alignment rules by name (align/original_rules.hpp).
config::Field<S> align_compat_field() {
  using config::Value;
  config::Field<S> f{"align_compat", Value::Kind::String, "string", "", 
                     "The original FuseLLM code's alignment rules where fusellm deliberately differs (README, "
                     "\"Alignment: where fusellm differs from the original FuseLLM code\"): `\"all\"`, or some of "
                     "`strings`, `specials`, `dummy_prefix`, `empty_row`, `onehot_current` joined by `,`. `\"all\"` "
                     "reproduces the original's alignment; `empty_row` makes `teach` run the target model too (its "
                     "own rows fill the positions where nothing survives the mapping). Recorded in the caches and the "
                     "vocabulary mapping: a cache made under other rules is refused."};
  f.set = [](S& s, const Value& v, const config::SetContext&) {
    const std::string& text = config::string_of(v);
    try {
      s.align_compat = align::OriginalRules::parse(text);
    } catch (const Error& e) {
      throw config::BadValue(e.what());
    }
  };
  f.get = [](const S& s) -> std::optional<Value> { return Value::of_string(s.align_compat.to_string()); };
  return f;
}

config::Section<S> make_section() {
  using namespace config;
  const EnumNames<fusion::ScoreUnit> scores{
      {{fusion::ScoreUnit::kNatsPerToken, "ce"}, {fusion::ScoreUnit::kNatsPerByte, "bpb"}}};
  Section<S> s{"distill", ""};
  s.fields = {
      integer_field("top_k", &S::top_k, 1,
                    "Logits kept per source position. The distribution is the softmax over these k logits (paper: "
                    "10). At most 64: the alignment holds a row's slots in registers.",
                    S::kMaxTopK)
          .typed(fmt::format("integer in [1, {}]", S::kMaxTopK)),
      float_field("temperature", &S::temperature, FloatRange::positive(), "Softmax temperature over the top k."),
      choice_field("alignment", &S::alignment, align::align_method_names(),
                   "Token alignment: MinED or exact match (paper sec. 3.3), or exact byte-span alignment (beyond "
                   "the paper)."),
      choice_field("fusion", &S::fusion, fusion_names(),
                   "Fusion function (paper eq. 3). `minCE-position`: MinCE per target position (beyond the paper; online "
                   "mode only, the cache does not store per-position CE). `none` means CLM-only continual training "
                   "and needs `lambda = 1`."),
      float_field("lambda", &S::lambda, FloatRange::interval(0, 1, false, "the weight of the CLM term, paper eq. 5"),
                  "`L = lambda * L_CLM + (1 - lambda) * L_Fusion` (paper eq. 5)."),
      bool_field("keep_tail", &S::keep_tail,
                 "Keep the probability mass outside the top k as an extra \"other\" bucket (beyond the paper)."),
      bool_field("onehot_compat", &S::onehot_compat,
                 "Where alignment fails, the original puts a one-hot on the *current* token (its issue #27). "
                 "`false` puts it on the next gold token; `true` reproduces the original."),
      align_compat_field(),
      choice_field("score", &S::score, scores,
                   "What MinCE/AvgCE rank the sources of a packed sequence by. `ce`: the mean cross-entropy per "
                   "token under the source's own tokenization (paper). `bpb`: nats per UTF-8 byte of the text, "
                   "which does not favour tokenizers with short tokens (beyond the paper). `minCE-position` ranks "
                   "by each position's CE either way."),
  };
  s.check = [](const S& d, const IsSet&) {
    if (!d.fusion && d.lambda < 1.0)
      throw Conflict({"fusion", "lambda"},
                     fmt::format("fusion \"none\" trains on the CLM loss alone, so lambda must be 1 (found {}): set "
                                 "lambda = 1.0, or a fusion function",
                                 d.lambda));
  };
  return s;
}

}  // namespace

const config::Section<DistillConfig>& distill_section() {
  static const config::Section<DistillConfig> s = make_section();
  return s;
}

}  // namespace fusellm
