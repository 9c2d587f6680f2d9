#include "fusellm/train/train_checkpoint.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/shard_layout.hpp"
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

// A ZeRO-1 checkpoint's shard files that were read, each checked against state.h5; every one of
// the optim_shards files listed (read or not).
void take_shards(TrainCheckpoint& t, LoadedCheckpoint& c) {
  const dist::ShardLayout layout = dist::ShardLayout::of(t.optim_total, t.optim_shards);
  for (auto& [name, sd] : c.files) {
    if (!parse_optim_shard_file(name)) continue;
    const std::string where = c.path + "/" + name;
    OptimShard s = read_optim_shard(name, std::move(sd), where);
    if (s.save_id != t.save_id)
      fail("{}: written by another save (save_id {:016x}, state.h5 has {:016x}): a shard file of another job or "
           "another checkpoint put here; this checkpoint cannot be resumed from",
           where, s.save_id, t.save_id);
    if (s.ranks != t.optim_shards || s.total != t.optim_total || s.begin != layout.begin(s.rank) ||
        s.end != layout.end(s.rank) || s.optim_steps != t.state.optim_steps)
      fail("{}: shard [{}, {}) of {} floats over {} ranks at AdamW step {}; state.h5 says {} floats over {} ranks "
           "(this rank's shard [{}, {})) at step {}",
           where, s.begin, s.end, s.total, s.ranks, s.optim_steps, t.optim_total, t.optim_shards,
           layout.begin(s.rank), layout.end(s.rank), t.state.optim_steps);
    t.shards.push_back(std::move(s));
  }
  std::sort(t.shards.begin(), t.shards.end(), [](const OptimShard& a, const OptimShard& b) { return a.rank < b.rank; });
  for (int r = 0; r < t.optim_shards; ++r) {
    const std::string f = optim_shard_file(r, t.optim_shards);
    const bool read = std::any_of(t.shards.begin(), t.shards.end(), [&](const OptimShard& s) { return s.rank == r; });
    if (!read && std::find(c.unread.begin(), c.unread.end(), f) == c.unread.end())
      fail("{}: has no {} (state.h5 says AdamW's moments are in {} shard files, one per student rank)", c.path, f,
           t.optim_shards);
  }
}

// A single-process checkpoint's moments of `e`'s piece [b, en) (by tensor name).
void copy_tensor_moments(const TrainCheckpoint& ck, const ParamEntry& e, int64_t b, int64_t en, float* m, float* v) {
  const auto find = [&](const std::vector<NamedTensor>& g, const char* group) -> const Tensor& {
    for (const auto& t : g)
      if (t.name == e.name) {
        if (t.tensor.size() != e.size)
          fail("{}: {}/{} holds {} values, the tensor {}", ck.path, group, e.name, t.tensor.size(), e.size);
        return t.tensor;
      }
    fail("{}: has no AdamW moments of {} ({}; a checkpoint of another model?)", ck.path, e.name, group);
  };
  const Tensor &tm = find(ck.optim_m, kOptimM), &tv = find(ck.optim_v, kOptimV);
  std::copy(tm.data() + (b - e.offset), tm.data() + (en - e.offset), m);
  std::copy(tv.data() + (b - e.offset), tv.data() + (en - e.offset), v);
}

bool same_layout(const ParamTable& a, const ParamTable& b) {
  if (a.size() != b.size()) return false;
  for (int i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].shape != b[i].shape) return false;
  return true;
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
  if (optim_shards > 0) {  // ZeRO-1 (a single process writes exactly the values above)
    v.set("optim_shards", int64_t(optim_shards));
    v.set("optim_total", optim_total);
    v.set("save_id", save_id);
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
  if (v.contains("optim_shards")) {
    t.optim_shards = int(v.i64("optim_shards", where));
    t.optim_total = v.i64("optim_total", where);
    t.save_id = v.u64("save_id", where);
    if (t.optim_shards < 1) fail("{}: value optim_shards is {}", where, t.optim_shards);
    take_shards(t, c);
  }
  return t;
}

ParamTable TrainCheckpoint::model_table() const {
  ParamTable t;
  for (const auto& n : model) t.add(n.name, n.tensor.shape());
  return t;
}

void TrainCheckpoint::moments(const ParamTable& table, int64_t begin, int64_t end, std::span<float> m,
                              std::span<float> v) const {
  if (begin < 0 || begin > end || end > table.total() || int64_t(m.size()) != end - begin ||
      int64_t(v.size()) != end - begin)
    fail("{}: moments of [{}, {}) of {} parameters into {} and {} values", path, begin, end, table.total(), m.size(),
         v.size());
  std::fill(m.begin(), m.end(), 0.f);
  std::fill(v.begin(), v.end(), 0.f);
  if (state.optim_steps == 0 && optim_m.empty() && shards.empty()) return;  // no step taken: no moments yet
  if (optim_shards == 0) {
    for (const ParamEntry& e : table.entries()) {
      const int64_t b = std::max(begin, e.offset), en = std::min(end, e.offset + e.size);
      if (b < en) copy_tensor_moments(*this, e, b, en, m.data() + (b - begin), v.data() + (b - begin));
    }
    return;
  }
  // Flat runs: valid only for the same tensors in the same order (the checkpoint's model group).
  if (optim_total != table.total() || !same_layout(model_table(), table))
    fail("{}: AdamW's moments are flat over the checkpoint's {} tensors ({} floats), in another layout than this "
         "model's {} tensors ({} floats): a checkpoint of another model",
         path, model.size(), optim_total, table.size(), table.total());
  const dist::ShardLayout layout = dist::ShardLayout::of(optim_total, optim_shards);
  for (int r = 0; r < optim_shards; ++r) {
    const int64_t b = std::max(begin, layout.begin(r)), en = std::min(end, layout.end(r));
    if (b >= en) continue;
    const auto s = std::find_if(shards.begin(), shards.end(), [&](const OptimShard& x) { return x.rank == r; });
    if (s == shards.end()) fail("{}: {} was not read (it overlaps [{}, {}))", path, optim_shard_file(r, optim_shards), begin, end);
    std::copy(s->m.data() + (b - s->begin), s->m.data() + (en - s->begin), m.data() + (b - begin));
    std::copy(s->v.data() + (b - s->begin), s->v.data() + (en - s->begin), v.data() + (b - begin));
  }
}

const Tensor* TrainCheckpoint::find_model(const std::string& name) const {
  for (const auto& t : model)
    if (t.name == name) return &t.tensor;
  return nullptr;
}

void TrainCheckpoint::restore_optimizer(AdamW& opt) const {
  if (optim_shards == 0) return restore_adamw(opt, optim_m, optim_v, state.optim_steps, path);
  const ParamTable t = model_table();
  std::vector<float> m(static_cast<size_t>(t.total())), v(static_cast<size_t>(t.total()));
  moments(t, 0, t.total(), m, v);
  restore_flat_moments(opt, t, 0, t.total(), m, v, state.optim_steps);
}

std::optional<TrainCheckpoint> TrainCheckpointStore::load_latest() const {
  std::optional<TrainCheckpoint> out;
  store_.load_latest([&](LoadedCheckpoint&& c) { out = TrainCheckpoint::from(std::move(c)); });
  return out;
}

}  // namespace fusellm
