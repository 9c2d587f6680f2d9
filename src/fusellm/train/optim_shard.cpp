#include "fusellm/train/optim_shard.hpp"

#include <charconv>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {
constexpr const char* kGroup = "shard";
constexpr const char* kM = "exp_avg";
constexpr const char* kV = "exp_avg_sq";

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  return v;
}

Tensor take(std::vector<NamedTensor>& g, const char* name, const std::string& where) {
  for (auto& t : g)
    if (t.name == name) return std::move(t.tensor);
  fail("{}: group {} has no tensor {}", where, kGroup, name);
}
}  // namespace

std::string optim_shard_file(int rank, int ranks) { return "optim-" + std::to_string(rank) + "-of-" + std::to_string(ranks) + ".h5"; }

std::optional<std::pair<int, int>> parse_optim_shard_file(const std::string& name) {
  std::string_view s(name);
  if (!s.starts_with("optim-") || !s.ends_with(".h5")) return std::nullopt;
  s = s.substr(6, s.size() - 6 - 3);
  const size_t of = s.find("-of-");
  if (of == std::string_view::npos) return std::nullopt;
  const auto r = parse_int(s.substr(0, of)), n = parse_int(s.substr(of + 4));
  if (!r || !n || *n < 1 || *r >= *n) return std::nullopt;
  return std::pair{*r, *n};
}

StateDictRef optim_shard_state(int64_t step, const OptimShard& s, std::span<const float> m, std::span<const float> v) {
  StateDictRef d;
  const Shape shape{s.end - s.begin};
  d.group(kGroup) = {{kM, shape, m}, {kV, shape, v}};
  KeyValues& kv = d.values;
  kv.set("step", step);
  kv.set("shard_rank", int64_t(s.rank));
  kv.set("shard_ranks", int64_t(s.ranks));
  kv.set("shard_begin", s.begin);
  kv.set("shard_end", s.end);
  kv.set("shard_total", s.total);
  kv.set("optim_steps", s.optim_steps);
  kv.set("save_id", s.save_id);
  return d;
}

OptimShard read_optim_shard(const std::string& file, StateDict&& d, const std::string& where) {
  OptimShard s;
  s.file = file;
  const KeyValues& kv = d.values;
  s.rank = int(kv.i64("shard_rank", where));
  s.ranks = int(kv.i64("shard_ranks", where));
  s.begin = kv.i64("shard_begin", where);
  s.end = kv.i64("shard_end", where);
  s.total = kv.i64("shard_total", where);
  s.optim_steps = kv.i64("optim_steps", where);
  s.save_id = kv.u64("save_id", where);
  if (optim_shard_file(s.rank, s.ranks) != file)
    fail("{}: holds the shard of rank {} of {}, not what its name says", where, s.rank, s.ranks);
  std::vector<NamedTensor>* g = nullptr;
  for (auto& [n, tensors] : d.groups)
    if (n == kGroup) g = &tensors;
  if (!g) fail("{}: group {} is missing", where, kGroup);
  s.m = take(*g, kM, where);
  s.v = take(*g, kV, where);
  if (s.m.size() != s.end - s.begin || s.v.size() != s.end - s.begin)
    fail("{}: {} and {} moments for the range [{}, {})", where, s.m.size(), s.v.size(), s.begin, s.end);
  return s;
}

}  // namespace fusellm
