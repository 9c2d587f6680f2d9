#include "fusellm/train/train_checkpoint.hpp"

#include <map>
#include <sstream>

#include "fusellm/core/error.hpp"
#include "fusellm/optim/optim_state.hpp"

namespace fusellm {

namespace {
constexpr const char* kModel = "model";
constexpr const char* kOptimM = "optim/m";
constexpr const char* kOptimV = "optim/v";

std::vector<NamedTensor> take_group(StateDict& s, const char* name, const std::string& where) {
  for (auto& [n, g] : s.groups)
    if (n == name) return std::move(g);
  fail("{}: group {} is missing", where, name);
}
const std::string& text(const StateDict& s, const char* name, const std::string& where) {
  const std::string* t = s.find_text(name);
  if (!t) fail("{}: meta/{}: dataset is missing", where, name);
  return *t;
}
}  // namespace

void CheckpointContents::add_optimizer(const AdamW& opt) {
  std::map<std::string, const Shape*> shapes;
  for (const auto& t : model) shapes[t.name] = &t.shape;
  AdamWMoments mv = adamw_moments(opt, [&](const std::string& n) -> const Shape* {
    auto it = shapes.find(n);
    return it == shapes.end() ? nullptr : it->second;
  });
  optim_m.insert(optim_m.end(), mv.m.begin(), mv.m.end());
  optim_v.insert(optim_v.end(), mv.v.begin(), mv.v.end());
  state.optim_steps = opt.steps();
}

// The values in the order of checkpoints before the reshape (state_file.hpp: their checksum).
StateDictRef CheckpointContents::state_dict() const {
  StateDictRef s;
  s.group(kModel) = model;
  s.group(kOptimM) = optim_m;
  s.group(kOptimV) = optim_v;
  s.texts = {{"rng_state", state.rng_state}, {"job_toml", state.job_toml}};
  KeyValues& v = s.values;
  v.set("step", state.step);
  v.set("tokens_seen", state.tokens_seen);
  v.set("sampler_epoch", state.sampler_epoch);
  v.set("sampler_position", state.sampler_position);
  v.set("optim_steps", state.optim_steps);
  put_schedule(state.schedule, v);
  if (state.data_fingerprint != 0) {  // 0: not recorded
    v.set("data_sequences", state.data_sequences);
    v.set("data_fingerprint", state.data_fingerprint);
  }
  return s;
}

TrainCheckpoint TrainCheckpoint::from(LoadedCheckpoint&& c) {
  const std::string where = c.path + "/" + kCheckpointStateFile;
  StateDict& f = c.file(kCheckpointStateFile);
  TrainCheckpoint t;
  t.path = c.path;
  t.warnings = std::move(c.warnings);
  TrainState& s = t.state;
  const KeyValues& v = f.values;
  s.step = v.i64("step", where);
  s.tokens_seen = v.i64("tokens_seen", where);
  s.sampler_epoch = v.i64("sampler_epoch", where);
  s.sampler_position = v.i64("sampler_position", where);
  s.optim_steps = v.i64("optim_steps", where);
  s.schedule = get_schedule(v, where);
  if (v.contains("data_fingerprint")) {
    s.data_sequences = v.i64("data_sequences", where);
    s.data_fingerprint = v.u64("data_fingerprint", where);
  }
  s.rng_state = text(f, "rng_state", where);
  s.job_toml = text(f, "job_toml", where);
  t.model = take_group(f, kModel, where);
  t.optim_m = take_group(f, kOptimM, where);
  t.optim_v = take_group(f, kOptimV, where);
  return t;
}

const Tensor* TrainCheckpoint::find_model(const std::string& name) const {
  for (const auto& t : model)
    if (t.name == name) return &t.tensor;
  return nullptr;
}

void TrainCheckpoint::restore_optimizer(AdamW& opt) const {
  restore_adamw(opt, optim_m, optim_v, state.optim_steps, path);
}

std::optional<TrainCheckpoint> TrainCheckpointStore::load_latest() const {
  std::optional<TrainCheckpoint> out;
  store_.load_latest([&](LoadedCheckpoint&& c) { out = TrainCheckpoint::from(std::move(c)); });
  return out;
}

std::string rng_to_text(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

void rng_from_text(std::mt19937_64& rng, const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 r;
  is >> r;
  if (is.fail()) fail("RNG state: not a std::mt19937_64 state ({} bytes of text)", text.size());
  rng = r;
}

}  // namespace fusellm
