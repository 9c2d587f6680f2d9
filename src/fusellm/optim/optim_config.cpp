#include "fusellm/optim/optim_config.hpp"

namespace fusellm {

namespace {

using config::FloatRange;
using config::Value;
using S = OptimConfig;

// betas = [beta1, beta2], each in [0, 1).
config::Field<S> betas_field() {
  config::Field<S> f{"betas", Value::Kind::Array, "[float, float], each in [0, 1)", "", "AdamW beta1, beta2 (paper)."};
  f.set = [](S& s, const Value& v, const config::SetContext&) {
    if (v.kind != Value::Kind::Array) throw config::BadValue("expected an array of two floats, found " + v.found());
    if (v.items.size() != 2)
      throw config::BadValue(fmt::format("expected an array of two floats, found {} values", v.items.size()));
    double b[2];
    for (size_t i = 0; i < 2; ++i) {
      try {
        b[i] = config::float_of(v.items[i]);
      } catch (const config::BadValue& e) {
        throw config::BadValue(e.what(), fmt::format("[{}]", i));
      }
    }
    FloatRange::interval(0, 1, true, "beta1").check(b[0]);
    FloatRange::interval(0, 1, true, "beta2").check(b[1]);
    s.beta1 = b[0];
    s.beta2 = b[1];
  };
  f.get = [](const S& s) -> std::optional<Value> {
    return Value::of_array({Value::of_float(s.beta1), Value::of_float(s.beta2)});
  };
  return f;
}

config::Section<S> make_section() {
  using namespace config;
  Section<S> s{"optim", "AdamW, torch.optim.AdamW semantics; schedules as in `transformers`"};
  s.fields = {
      float_field("lr", &S::lr, FloatRange::positive(),
                  "Peak learning rate (paper: 1e-5). An update that still overflows the weights (Inf or NaN) stops "
                  "the run, naming the step and this line; nothing of that step is written."),
      betas_field(),
      float_field("eps", &S::eps, FloatRange::non_negative(), "Added to sqrt(v_hat)."),
      float_field("weight_decay", &S::weight_decay, FloatRange::non_negative(),
                  "Decoupled weight decay (paper: 0.1). Like the HF Trainer, it is not applied to biases or norm "
                  "weights."),
      float_field("clip", &S::clip, FloatRange::non_negative(),
                  "Maximum global gradient L2 norm (`clip_grad_norm_`). `0` disables clipping."),
      choice_field("schedule", &S::schedule, schedule_names(),
                   "Each has a linear warmup, as in `get_{cosine,linear,constant}_schedule_with_warmup`."),
      float_field("warmup_ratio", &S::warmup_ratio, FloatRange::interval(0, 1, true, "a fraction of the total steps"),
                  "Warmup steps = `ceil(ratio * total steps)`, computed as `TrainingArguments.get_warmup_steps` "
                  "does (paper: 0.008).")
          .written_when([](const S& o) { return !o.warmup_steps; }),
      optional_integer_field("warmup_steps", &S::warmup_steps, 0,
                             "Warmup length in steps. Use it instead of `warmup_ratio`; setting both is an error."),
      float_field("min_lr_ratio", &S::min_lr_ratio, FloatRange::interval(0, 1, false, "a fraction of lr"),
                  "Floor of the cosine and linear decay, as a fraction of `lr` (transformers' `min_lr_rate`)."),
  };
  s.check = [](const S&, const IsSet& set) {
    if (set("warmup_ratio") && set("warmup_steps"))
      throw Conflict({"warmup_ratio", "warmup_steps"}, "set one of them, not both");
  };
  return s;
}

}  // namespace

const config::Section<OptimConfig>& optim_section() {
  static const config::Section<OptimConfig> s = make_section();
  return s;
}

}  // namespace fusellm
