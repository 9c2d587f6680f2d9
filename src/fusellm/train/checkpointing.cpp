#include "fusellm/train/checkpointing.hpp"

#include <algorithm>
#include <optional>

#include <fmt/ranges.h>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/job/job_fields.hpp"

namespace fusellm {

void load_weights(const TrainCheckpoint& ck, const ParamTable& table, std::span<float> params) {
  for (int i = 0; i < table.size(); ++i) {
    const ParamEntry& e = table[i];
    const Tensor* t = ck.find_model(e.name);
    if (!t) fail("{}: has no tensor {} (a checkpoint of another model?)", ck.path, e.name);
    if (t->shape() != e.shape)
      fail("{}: tensor {} is {}, the target's is {}", ck.path, e.name, shape_str(t->shape()), shape_str(e.shape));
    const TensorView view = table.view(params, i);
    std::copy(t->data(), t->data() + t->size(), view.data());
  }
}

// A checkpoint's sampler position means something only for the data it was written with.
void check_same_data(const TrainCheckpoint& ck, const Sampler& sampler) {
  const TrainState& st = ck.state;
  if (st.data_fingerprint != 0 && st.data_fingerprint != sampler.data_fingerprint())
    fail("{}: written for other training data ({} packed sequences per epoch, data fingerprint {:016x}); the "
         "data now gives {} sequences (fingerprint {:016x}): the caches were taught again or extended, or "
         "[corpus].max_len or --limit changed, so its sampler position would point elsewhere. Train from the "
         "same data, or start afresh with another [checkpoint].dir",
         ck.path, st.data_sequences, st.data_fingerprint, sampler.sequences(), sampler.data_fingerprint());
}

namespace {

// The [distill] fields that differ, as "[distill].top_k, [distill].alignment" with their values
// now and then ("5, \"exact\"" / "10, \"mined\""), from the job's field table.
struct Difference {
  std::string what, now, then;
};
Difference distill_difference(const JobConfig& job, const JobConfig& was) {
  std::vector<std::string> what, now, then;
  const JobSectionTable* t = find_job_section("distill");
  for (const JobField& f : t->fields) {
    const auto a = f.get(job, 0), b = f.get(was, 0);
    if (a == b) continue;
    what.push_back(t->label(0, f.key));
    now.push_back(a ? a->toml() : "unset");
    then.push_back(b ? b->toml() : "unset");
  }
  if (what.empty()) return {"[distill]", "different", "as written"};  // a field the table does not list
  return {fmt::format("{}", fmt::join(what, ", ")), fmt::format("{}", fmt::join(now, ", ")),
          fmt::format("{}", fmt::join(then, ", "))};
}

}  // namespace

// The settings that decide what the target learns from, beside the data (check_same_data): the
// sources (by name, in order, and their dtype), the segments' bounds and the distillation (top-k, temperature,
// alignment, fusion, lambda, the original's rules). A checkpoint of a job that differs in any of
// them is another job's, whatever its directory: refused, naming the setting. Everything else
// (the topology, the optimizer, the steps) may change on resume, with a warning.
void check_same_job(const TrainCheckpoint& ck, const JobConfig& job) {
  JobParseOptions o;
  o.check_paths = false;
  std::optional<JobConfig> was;
  try {
    was = parse_job(ck.state.job_toml, ck.path + " (the job it was written by)", o);
  } catch (const Error& e) {
    spdlog::warn("train: {}: its job does not parse under this version ({}); not compared", ck.path, e.what());
    return;
  }
  std::vector<std::string> names, names_was;
  for (const auto& s : job.sources) names.push_back(s.name);
  for (const auto& s : was->sources) names_was.push_back(s.name);
  const auto refuse = [&](const std::string& what, const std::string& now, const std::string& then) {
    fail("{}: written by another job: {} is {} now, {} in the checkpoint's job; resume it with its own job, or "
         "start afresh with another [checkpoint].dir",
         ck.path, what, now, then);
  };
  if (names != names_was) refuse("[[source]] (the sources, in order)", fmt::format("{}", fmt::join(names, ", ")),
                                 fmt::format("{}", fmt::join(names_was, ", ")));
  for (size_t i = 0; i < job.sources.size(); ++i)  // a teacher's precision changes its rows
    if (job.sources[i].dtype != was->sources[i].dtype)
      refuse(fmt::format("[[source]] '{}' dtype", job.sources[i].name), std::string(train_dtype_name(job.sources[i].dtype)),
             std::string(train_dtype_name(was->sources[i].dtype)));
  if (job.corpus.max_len != was->corpus.max_len || job.corpus.margin != was->corpus.margin)
    refuse("[corpus].max_len/margin", fmt::format("{}/{}", job.corpus.max_len, job.corpus.margin),
           fmt::format("{}/{}", was->corpus.max_len, was->corpus.margin));
  if (!(job.distill == was->distill)) {
    const auto [what, now, then] = distill_difference(job, *was);
    refuse(what, now, then);
  }
}

Resumed restore_position(const TrainCheckpoint& ck, const JobConfig& job, const LrSchedule& sched, Sampler& sampler) {
  const TrainState& st = ck.state;
  check_same_job(ck, job);
  if (!(st.schedule == sched))
    spdlog::warn("train: {}: the checkpoint's schedule ({} steps, warmup {}) differs from the job's ({} steps, "
                 "warmup {}); continuing with the job's",
                 ck.path, st.schedule.total_steps, st.schedule.warmup_steps, sched.total_steps, sched.warmup_steps);
  if (st.job_toml != job.to_toml()) spdlog::warn("train: {}: written by a different job; continuing with this one", ck.path);
  std::mt19937_64 rng;
  rng_from_text(rng, st.rng_state);
  sampler.restore(st.sampler_epoch, st.sampler_position, rng);
  spdlog::info("train: resumed from {} (step {}, {} tokens seen)", ck.path, st.step, st.tokens_seen);
  return Resumed{ck.path, {st.step, st.tokens_seen}};
}

std::optional<Resumed> resume_latest(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                                     model::TrainableModel& model, AdamW& adamw, Sampler& sampler) {
  if (!job.checkpoint.resume) return std::nullopt;
  const std::optional<TrainCheckpoint> ck = store.load_latest();
  if (!ck) return std::nullopt;
  for (const auto& w : ck->warnings) spdlog::warn("train: {}", w);
  load_weights(*ck, model.parameter_table(), model.parameter_buffer());
  check_same_data(*ck, sampler);
  ck->restore_optimizer(adamw);
  return restore_position(*ck, job, sched, sampler);
}

TrainState train_state(const JobConfig& job, const LrSchedule& sched, const Sampler& sampler, const RunPosition& at,
                       int64_t optim_steps) {
  TrainState st;
  st.step = at.step;
  st.tokens_seen = at.tokens_seen;
  st.sampler_epoch = sampler.epoch();
  st.sampler_position = sampler.position();
  st.optim_steps = optim_steps;
  st.rng_state = rng_to_text(sampler.epoch_start_rng());
  st.schedule = sched;
  st.job_toml = job.to_toml();
  st.data_sequences = sampler.sequences();
  st.data_fingerprint = sampler.data_fingerprint();
  return st;
}

std::string save_checkpoint(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                            const model::TrainableModel& model, const AdamW& adamw, const Sampler& sampler,
                            const RunPosition& at) {
  CheckpointContents c;
  for (const auto& p : model.parameters()) c.model.push_back({p.name, p.value.shape(), p.value.span()});
  c.add_optimizer(adamw);
  c.state = train_state(job, sched, sampler, at, adamw.steps());
  return store.save(c);
}

}  // namespace fusellm
