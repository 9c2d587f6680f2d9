#include "fusellm/ckpt/checkpoint_config.hpp"

namespace fusellm {

namespace {

config::Section<CheckpointConfig> make_section() {
  using namespace config;
  using S = CheckpointConfig;
  Section<S> s{"checkpoint", ""};
  s.fields = {
      path_field("dir", &S::dir, "Holds `step-<N>/` directories and `latest`.").defaults_to("`\"<output_dir>/checkpoints\"`"),
      integer_field("interval", &S::interval, 0, "Optimizer steps between checkpoints. `0` saves only at the end."),
      integer_field("keep", &S::keep, 0,
                    "Complete checkpoints kept. Older ones are deleted after each save. `0` keeps all."),
      bool_field("resume", &S::resume,
                 "Continue from `<dir>/latest` when it exists. A damaged newest checkpoint falls back to the "
                 "previous one, with a warning."),
  };
  return s;
}

}  // namespace

const config::Section<CheckpointConfig>& checkpoint_section() {
  static const config::Section<CheckpointConfig> s = make_section();
  return s;
}

}  // namespace fusellm
