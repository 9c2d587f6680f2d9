#include "fusellm/ckpt/checkpoint_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "fusellm/ckpt/state_file.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/durable_file.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kLatest = "latest";

// "step-<N>" -> N; nullopt for anything else (.tmp-step-..., latest, step-x).
std::optional<int64_t> parse_step_name(const std::string& name) {
  if (!name.starts_with("step-") || name.size() == 5 || name.size() > 5 + 18) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

std::string step_name(int64_t step) { return "step-" + std::to_string(step); }
std::string pid_text() { return std::to_string(::getpid()); }

void check_step_value(const KeyValues& v, int64_t step, const std::string& where) {
  if (const int64_t s = v.i64("step", where); s != step)
    fail("{}: the checkpoint is step {}, the file says step {}", where, step, s);
}

}  // namespace

// ---- LoadedCheckpoint, PendingCheckpoint----------------------------------------------------------

StateDict& LoadedCheckpoint::file(const std::string& name) {
  for (auto& [n, s] : files)
    if (n == name) return s;
  fail("{}: the checkpoint has no file {}", path, name);
}
const StateDict& LoadedCheckpoint::file(const std::string& name) const { return const_cast<LoadedCheckpoint*>(this)->file(name); }

DigestRecord PendingCheckpoint::write(const std::string& file, const StateDictRef& state) const {
  if (file.empty() || file.find('/') != std::string::npos || file == kMarker)
    fail("{}: '{}' cannot be a checkpoint file's name", dir_, file);
  const fs::path p = fs::path(dir_) / file;
  check_step_value(state.values, step_, p.string());
  write_state_file(p.string(), state);
  fsync_path(p, false);
  // The manifest records the file's size and XXH64 so that a truncated or damaged file is refused
  // before HDF5 opens it (file_checksum.hpp: libhdf5 may crash on bad metadata). Hashing reads
  // back what was just written, from the page cache when it fits there.
  const FileDigest d = digest_file(p.string());
  return DigestRecord{file, d.size, d.xxh64};
}

// ---- CheckpointStore: writing ---------------------------------------------------------------------

CheckpointStore::CheckpointStore(std::string dir, int64_t keep) : dir_(std::move(dir)), keep_(keep) {
  if (keep_ < 0) fail("CheckpointStore: keep must be >= 0 (0 keeps all), found {}", keep_);
}

std::string CheckpointStore::save(const StateDictRef& state) const {
  const PendingCheckpoint p = begin(state.values.i64("step", dir_ + ": the state to save"));
  DigestRecord d;
  try {
    d = p.write(kCheckpointStateFile, state);
  } catch (...) {
    abort(p);
    throw;
  }
  return commit(p, {d});
}

PendingCheckpoint CheckpointStore::begin(int64_t step, const std::string& tag) const {
  if (step < 0) fail("{}: cannot save a checkpoint for step {}", dir_, step);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("{}: cannot create checkpoint directory: {}", dir_, ec.message());
  const fs::path tmp = fs::path(dir_) / (".tmp-" + step_name(step) + "-" + (tag.empty() ? pid_text() : tag));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) fail("{}: cannot create: {}", tmp.string(), ec.message());
  return PendingCheckpoint(step, tmp.string());
}

PendingCheckpoint CheckpointStore::join(int64_t step, const std::string& tag) const {
  const fs::path tmp = fs::path(dir_) / (".tmp-" + step_name(step) + "-" + tag);
  if (!fs::is_directory(tmp)) fail("{}: no checkpoint being written there (begin() it first)", tmp.string());
  return PendingCheckpoint(step, tmp.string());
}

void CheckpointStore::abort(const PendingCheckpoint& p) const {
  std::error_code ec;
  fs::remove_all(p.dir(), ec);
}

std::string CheckpointStore::commit(const PendingCheckpoint& p, const std::vector<DigestRecord>& files) const {
  const fs::path dir(dir_), tmp(p.dir()), final_dir = dir / step_name(p.step());
  const std::string pid = pid_text();
  try {
    // 1. The manifest, last, naming every file (each fsync'd by its writer).
    Manifest m{p.step(), files};
    if (files.empty()) fail("{}: a checkpoint of no file", p.dir());
    for (const DigestRecord& f : files)
      if (!fs::exists(tmp / f.name)) fail("{}: {} is listed but was not written", p.dir(), f.name);
    write_file_synced(tmp / kMarker, m.text());
    fsync_path(tmp, true);
  } catch (...) {
    abort(p);
    throw;
  }
  // 2. Into place with one rename. An existing step-N (a resumed run redoing a step) moves aside first.
  std::error_code ec;
  fs::path old;
  if (fs::exists(final_dir)) {
    old = dir / (".old-" + step_name(p.step()) + "-" + pid);
    fs::remove_all(old, ec);
    rename_or_fail(final_dir, old);
  }
  rename_or_fail(tmp, final_dir);
  fsync_path(dir, true);
  // 3. `latest`, through a temporary name.
  const fs::path latest_tmp = dir / (".latest.tmp-" + pid);
  write_file_synced(latest_tmp, step_name(p.step()) + "\n");
  rename_or_fail(latest_tmp, dir / kLatest);
  fsync_path(dir, true);

  if (!old.empty()) fs::remove_all(old, ec);
  prune(p.step());
  return final_dir.string();
}

void CheckpointStore::prune(int64_t saved_step) const {
  const fs::path dir(dir_);
  std::error_code ec;
  std::vector<std::pair<int64_t, fs::path>> complete;
  std::vector<fs::path> remove;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // Leftovers of saves that were killed (the one just made was renamed away).
    if (name.starts_with(".tmp-step-") || name.starts_with(".old-step-") || name.starts_with(".latest.tmp-")) {
      remove.push_back(e.path());
      continue;
    }
    const auto step = parse_step_name(name);
    if (!step || !e.is_directory()) continue;
    if (*step > saved_step) {
      // Newer than what was just saved: the run resumed from an older checkpoint, so these belong
      // to a history that no longer leads here.
      spdlog::info("checkpoint {}: removing {} (newer than the step just saved, from before a resume)", dir_, name);
      remove.push_back(e.path());
    } else if (fs::exists(e.path() / kMarker)) {
      complete.emplace_back(*step, e.path());
    } else if (*step < saved_step) {
      remove.push_back(e.path());  // incomplete: no save leaves one, so it is debris
    }
  }
  std::sort(complete.begin(), complete.end());
  if (keep_ > 0 && int64_t(complete.size()) > keep_)
    for (size_t i = 0; i + size_t(keep_) < complete.size(); ++i) remove.push_back(complete[i].second);
  for (const auto& p : remove) {
    // Rename first so that a kill mid-delete never leaves a step-N that looks complete but is not.
    fs::path doomed = p;
    if (parse_step_name(p.filename().string())) {
      doomed = dir / (".old-" + p.filename().string() + "-" + pid_text());
      if (::rename(p.c_str(), doomed.c_str()) != 0) doomed = p;
    }
    fs::remove_all(doomed, ec);
    if (ec) spdlog::warn("checkpoint {}: cannot remove {}: {}", dir_, doomed.string(), ec.message());
  }
}

// ---- CheckpointStore: reading ---------------------------------------------------------------------

std::vector<int64_t> CheckpointStore::complete_steps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (auto s = parse_step_name(e.path().filename().string()); s && fs::exists(e.path() / kMarker))
      steps.push_back(*s);
  std::sort(steps.begin(), steps.end());
  return steps;
}

LoadedCheckpoint CheckpointStore::load(const std::string& step_dir) { return load(step_dir, nullptr); }

LoadedCheckpoint CheckpointStore::load(const std::string& step_dir, const std::function<bool(const std::string&)>& read) {
  const fs::path d(step_dir);
  if (!fs::is_directory(d)) fail("{}: no such checkpoint directory", step_dir);
  const fs::path marker = d / kMarker;
  if (!fs::exists(marker)) fail("{}: incomplete: no {} marker (its save did not finish)", step_dir, kMarker);
  const Manifest m = Manifest::parse(read_small_file(marker), step_dir);
  LoadedCheckpoint c;
  // Every file against the manifest before HDF5 touches any of them.
  for (const DigestRecord& f : m.files) {
    if (read && !read(f.name)) {
      verify_file((d / f.name).string(), DigestRecord{f.name, f.size, std::nullopt});  // the size only
      c.unread.push_back(f.name);
      continue;
    }
    if (!f.xxh64)
      spdlog::info("{}: the {} marker records no checksum (a checkpoint of an older fusellm): size checked only, {} is "
                   "not verified before HDF5 opens it",
                   step_dir, kMarker, f.name);
    verify_file((d / f.name).string(), f);
  }
  c.path = step_dir;
  c.step = m.step;
  for (const DigestRecord& f : m.files) {
    if (read && !read(f.name)) continue;
    const std::string file = (d / f.name).string();
    StateDict s = read_state_file(file);
    if (const int64_t step = s.values.i64("step", file); step != m.step)
      fail("{}: the marker says step {}, {} says step {}", step_dir, m.step, f.name, step);
    c.files.emplace_back(f.name, std::move(s));
  }
  return c;
}

std::vector<std::string> CheckpointStore::resume_order(std::vector<std::string>& warnings) const {
  const fs::path dir(dir_);
  if (!fs::is_directory(dir)) return {};

  std::vector<int64_t> steps;  // every step-<N> directory, complete or not
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (auto s = parse_step_name(e.path().filename().string()); s && e.is_directory()) steps.push_back(*s);
  std::sort(steps.rbegin(), steps.rend());
  auto warn = [&](const std::string& w) {
    spdlog::warn("{}", w);
    warnings.push_back(w);
  };

  // `latest` first, then every other checkpoint, newest first.
  std::vector<int64_t> order;
  const fs::path latest = dir / kLatest;
  const bool has_latest = fs::exists(latest);
  if (has_latest) {
    std::string text = read_small_file(latest);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    const auto s = parse_step_name(text);
    if (!s) warn(fmt::format("checkpoint {}: `latest` is damaged (\"{}\"); trying the newest checkpoint", dir_, text));
    else if (std::find(steps.begin(), steps.end(), *s) == steps.end())
      warn(fmt::format("checkpoint {}: `latest` names {}, which does not exist; trying older ones", dir_, text));
    else order.push_back(*s);
  }
  for (int64_t s : steps)
    if (std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);
  if (order.empty() && has_latest) fail("{}: `latest` exists but there is no step-<N> checkpoint directory", dir_);
  std::vector<std::string> paths;
  for (int64_t s : order) paths.push_back((dir / step_name(s)).string());
  return paths;
}

bool CheckpointStore::load_latest(const std::function<void(LoadedCheckpoint&&)>& use) const {
  std::vector<std::string> warnings;
  const std::vector<std::string> order = resume_order(warnings);
  if (order.empty()) return false;
  for (const std::string& path : order) {
    try {
      LoadedCheckpoint c = load(path);
      c.warnings = warnings;
      if (!c.warnings.empty()) spdlog::warn("checkpoint {}: resuming from {} (step {})", dir_, path, c.step);
      use(std::move(c));
      return true;
    } catch (const Error& e) {
      // e.what() starts with the checkpoint's path and says what is wrong with it.
      const std::string w = fmt::format("unusable checkpoint, falling back to an older one: {}", e.what());
      spdlog::warn("{}", w);
      warnings.push_back(w);
    }
  }
  std::string all;
  for (const auto& w : warnings) all += "\n  " + w;
  fail("{}: no usable checkpoint:{}", dir_, all);
}

std::optional<LoadedCheckpoint> CheckpointStore::load_latest() const {
  std::optional<LoadedCheckpoint> out;
  load_latest([&](LoadedCheckpoint&& c) { out = std::move(c); });
  return out;
}

}  // namespace fusellm
