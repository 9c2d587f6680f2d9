#include "fusellm/train/sharded_checkpoint.hpp"

#include <chrono>
#include <functional>
#include <random>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/dist/byte_collectives.hpp"
#include "fusellm/io/file_checksum.hpp"

namespace fusellm {

namespace {

uint64_t new_save_id() {
  std::random_device rd;
  const auto now = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
  return ((uint64_t(rd()) << 32) | rd()) ^ now;
}

// "rank 1 (host a): what; rank 2 ...": the ranks whose text is not empty; "" when there is none.
std::string failures(dist::Transport& t, const std::vector<std::string>& errors) {
  std::string out;
  for (size_t r = 0; r < errors.size(); ++r)
    if (!errors[r].empty()) out += fmt::format("{}student {}: {}", out.empty() ? "" : "; ", t.describe(int(r)), errors[r]);
  return out;
}

// fn on this rank, then the ranks agree: Error on every rank, naming each rank that failed and
// why, when fn threw on any. So that no rank waits for a peer that gave up.
void agree(dist::Transport& t, const std::string& what, const std::function<void()>& fn) {
  std::string error;
  try {
    fn();
  } catch (const Error& e) {
    error = e.what();
  }
  if (const std::string f = failures(t, dist::all_gather_text(t, error)); !f.empty()) fail("{}: {}", what, f);
}

// This rank's files of the save: its shard, and on rank 0 state.h5 first.
std::vector<DigestRecord> write_files(const PendingCheckpoint& p, const dist::Zero1& zero, const TrainState& state,
                                      uint64_t id) {
  std::vector<DigestRecord> out;
  const ParamTable& table = zero.table();
  if (zero.rank() == 0) {
    CheckpointContents c;
    for (int i = 0; i < table.size(); ++i)
      c.model.push_back({table[i].name, table[i].shape, zero.params().subspan(size_t(table[i].offset), size_t(table[i].size))});
    c.state = state;
    c.optim_shards = zero.ranks();
    c.optim_total = table.total();
    c.save_id = id;
    out.push_back(p.write(kCheckpointStateFile, c.state_dict()));
  }
  const OptimShard s{optim_shard_file(zero.rank(), zero.ranks()), zero.rank(), zero.ranks(), zero.begin(), zero.end(),
                     table.total(), state.optim_steps, id, {}, {}};
  std::vector<float> m(size_t(s.end - s.begin)), v(m.size());
  zero.shard_moments(m, v);
  out.push_back(p.write(s.file, optim_shard_state(state.step, s, m, v)));
  return out;
}

std::string digest_lines(const std::vector<DigestRecord>& records) {
  std::string out;
  for (const DigestRecord& d : records) out += digest_line(d.name, FileDigest{d.size, d.xxh64.value_or(0)}) + "\n";
  return out;
}

std::vector<DigestRecord> parse_digest_lines(const std::vector<std::string>& texts) {
  std::vector<DigestRecord> out;
  for (const std::string& text : texts)
    for (size_t b = 0, e; b < text.size(); b = e + 1) {
      e = text.find('\n', b);
      auto d = parse_digest_line(std::string_view(text).substr(b, e - b));
      if (!d) fail("checkpoint: a rank sent a damaged manifest line '{}'", text.substr(b, e - b));
      out.push_back(std::move(*d));
    }
  return out;
}

// The files a rank reads of a checkpoint: state.h5 and the shard files whose range (the layout
// of their rank count over this model) overlaps its own shard.
std::function<bool(const std::string&)> files_of(const dist::Zero1& zero) {
  return [&zero](const std::string& name) {
    const auto rn = parse_optim_shard_file(name);
    if (!rn) return true;
    const dist::ShardLayout old = dist::ShardLayout::of(zero.table().total(), rn->second);
    return std::max(old.begin(rn->first), zero.begin()) < std::min(old.end(rn->first), zero.end());
  };
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  for (size_t b = 0, e; b < text.size(); b = e + 1) {
    e = text.find('\n', b);
    out.push_back(text.substr(b, e - b));
  }
  return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace

std::string save_zero1(const TrainCheckpointStore& store, const dist::Zero1& zero, const TrainState& state) {
  dist::Transport& t = zero.transport();
  const CheckpointStore& cs = store.store();
  TrainState st = state;
  st.optim_steps = zero.adamw().steps();
  uint64_t id = t.rank() == 0 ? new_save_id() : 0;
  t.broadcast(std::as_writable_bytes(std::span<uint64_t>(&id, 1)), 0);
  const std::string tag = fmt::format("zero1-{:016x}", id), what = fmt::format("{}: checkpoint of step {}", cs.dir(), st.step);

  std::optional<PendingCheckpoint> p;
  agree(t, what, [&] {
    if (t.rank() == 0) p = cs.begin(st.step, tag);
  });
  std::vector<DigestRecord> mine;
  try {
    agree(t, what, [&] {
      if (t.rank() != 0) p = cs.join(st.step, tag);
      mine = write_files(*p, zero, st, id);
    });
  } catch (const Error&) {
    if (t.rank() == 0) cs.abort(*p);
    throw;
  }
  const std::vector<DigestRecord> all = parse_digest_lines(dist::all_gather_text(t, digest_lines(mine)));
  std::string path;
  agree(t, what, [&] {
    if (t.rank() == 0) path = cs.commit(*p, all);  // the manifest last: the step is complete
  });
  return dist::broadcast_text(t, path, 0);
}

std::optional<TrainCheckpoint> load_zero1(const TrainCheckpointStore& store, dist::Zero1& zero) {
  dist::Transport& t = zero.transport();
  const CheckpointStore& cs = store.store();
  // Rank 0's candidates for all: ranks that listed the directory at other moments could disagree.
  std::vector<std::string> order, warnings;
  agree(t, cs.dir(), [&] {
    if (t.rank() == 0) order = cs.resume_order(warnings);
  });
  order = split_lines(dist::broadcast_text(t, join_lines(order), 0));
  warnings = split_lines(dist::broadcast_text(t, join_lines(warnings), 0));
  if (order.empty()) return std::nullopt;
  for (const std::string& path : order) {
    std::optional<TrainCheckpoint> ck;
    std::string error;
    try {
      ck = TrainCheckpoint::from(CheckpointStore::load(path, files_of(zero)));
    } catch (const Error& e) {
      error = e.what();
    }
    if (const std::string f = failures(t, dist::all_gather_text(t, error)); !f.empty()) {
      const std::string w = fmt::format("unusable checkpoint, falling back to an older one: {}", f);
      if (t.rank() == 0) spdlog::warn("{}", w);
      warnings.push_back(w);
      continue;
    }
    ck->warnings = warnings;
    agree(t, path, [&] {
      load_weights(*ck, zero.table(), zero.params());
      std::vector<float> m(size_t(zero.end() - zero.begin())), v(m.size());
      ck->moments(zero.table(), zero.begin(), zero.end(), m, v);
      zero.restore_moments(m, v, ck->state.optim_steps);
    });
    return ck;
  }
  std::string all;
  for (const auto& w : warnings) all += "\n  " + w;
  fail("{}: no usable checkpoint:{}", cs.dir(), all);
}

std::string save_sharded(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                         const dist::Zero1& zero, const Sampler& sampler, const RunPosition& at) {
  return save_zero1(store, zero, train_state(job, sched, sampler, at, zero.adamw().steps()));
}

std::optional<Resumed> resume_sharded(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                                      dist::Zero1& zero, Sampler& sampler) {
  if (!job.checkpoint.resume) return std::nullopt;
  const std::optional<TrainCheckpoint> ck = load_zero1(store, zero);
  if (!ck) return std::nullopt;
  if (zero.rank() == 0)
    for (const auto& w : ck->warnings) spdlog::warn("train: {}", w);
  check_same_data(*ck, sampler);
  return restore_position(*ck, job, sched, sampler);
}

}  // namespace fusellm
