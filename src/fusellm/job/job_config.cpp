#include "fusellm/job/job_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "fusellm/core/error.hpp"
#include "fusellm/job/job_fields.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

using config::Origin;
using config::Value;

// ---- the job file read into values ------------------------------------------------------------
// Stage one of parsing: the TOML document as values with their origins, unknown sections and
// fields refused; --set overrides replace or add values here, so a value from the command line
// goes through the same binding and checks as one from the file.

struct RawField {
  Value value;
  Origin origin;
};
struct RawTable {
  Origin origin;
  std::map<std::string, RawField, std::less<>> fields;
};
using RawJob = std::map<std::string, std::vector<RawTable>, std::less<>>;

int64_t line_of(const toml::node& n) { return int64_t(n.source().begin.line); }

Value value_of(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return Value::of_string(n.as_string()->get());
    case toml::node_type::integer: return Value::of_integer(n.as_integer()->get());
    case toml::node_type::floating_point: return Value::of_float(n.as_floating_point()->get());
    case toml::node_type::boolean: return Value::of_bool(n.as_boolean()->get());
    case toml::node_type::array: {
      std::vector<Value> items;
      for (const auto& e : *n.as_array()) items.push_back(value_of(e));
      return Value::of_array(std::move(items));
    }
    case toml::node_type::date: return Value::of_kind(Value::Kind::Date);
    case toml::node_type::time: return Value::of_kind(Value::Kind::Time);
    case toml::node_type::date_time: return Value::of_kind(Value::Kind::DateTime);
    default: return Value::of_kind(Value::Kind::Table);
  }
}

std::vector<std::string_view> section_names() {
  std::vector<std::string_view> names;
  for (const auto& s : job_sections()) names.push_back(s.name);
  return names;
}

// " (did you mean 'warmup_ratio'?)", " (did you mean [optim].lr?)", or the section's fields.
std::string unknown_field_hint(const JobSectionTable& s, size_t index, std::string_view key) {
  if (auto c = closest_name(key, s.keys())) return fmt::format(" (did you mean '{}'?)", *c);
  for (const auto& other : job_sections())
    if (other.find(key))
      return other.array_of_tables ? fmt::format(" (did you mean [[{}]].{}?)", other.name, key)
                                   : fmt::format(" (did you mean [{}].{}?)", other.name, key);
  return fmt::format(" (fields of {}: {})", s.label(index, ""), quoted_list(s.keys()));
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  RawJob read(const toml::table& root) const {
    check_sections(root);
    RawJob raw;
    for (const auto& s : job_sections()) {
      const toml::node* n = root.get(s.name);
      if (!n) continue;
      if (s.array_of_tables) {
        if (n->is_table())
          error(line_of(*n), "[source]",
                "expected an array of tables: write [[source]] (one per source model), not [source]");
        if (!n->is_array() || !n->as_array()->is_array_of_tables())
          error(line_of(*n), "source", "expected an array of tables ([[source]]), found {}", value_of(*n).found());
        const auto& arr = *n->as_array();
        for (size_t i = 0; i < arr.size(); ++i) raw[std::string(s.name)].push_back(read_table(*arr[i].as_table(), s, i));
      } else {
        const std::string ctx = s.label(0, "");
        if (!n->is_table()) error(line_of(*n), ctx, "expected a table ({}), found {}", ctx, value_of(*n).found());
        raw[std::string(s.name)].push_back(read_table(*n->as_table(), s, 0));
      }
    }
    return raw;
  }

 private:
  std::string file_;

  template <typename... Args>
  [[noreturn]] void error(int64_t line, std::string_view field, fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}: {}: {}", line > 0 ? fmt::format("{}:{}", file_, line) : file_, field,
         fmt::format(f, std::forward<Args>(args)...));
  }

  // Unknown sections first: a misspelled section hides every field in it.
  void check_sections(const toml::table& root) const {
    for (auto& [k, v] : root) {
      const std::string_view key = k.str();
      if (find_job_section(key)) continue;
      std::string hint;
      if (auto c = closest_name(key, section_names())) {
        hint = fmt::format(" (did you mean [{}]?)", *c);
      } else {
        for (const auto& s : job_sections())
          if (s.find(key)) {
            hint = fmt::format(" (did you mean [{}].{}? fields belong in a section)", s.name, key);
            break;
          }
      }
      if (hint.empty()) hint = fmt::format(" (sections: {})", quoted_list(section_names()));
      error(line_of(v), key, "unknown {}{}", v.is_table() || v.is_array_of_tables() ? "section" : "top-level field", hint);
    }
  }

  RawTable read_table(const toml::table& t, const JobSectionTable& s, size_t index) const {
    RawTable r{Origin{line_of(t), ""}, {}};
    for (auto& [k, v] : t) {
      const std::string_view key = k.str();
      if (!s.find(key)) error(line_of(v), s.label(index, key), "unknown field{}", unknown_field_hint(s, index, key));
      r.fields[std::string(key)] = RawField{value_of(v), Origin{line_of(v), ""}};
    }
    return r;
  }
};

// ---- --set section.key=value --------------------------------------------------------------------

// The text of a --set value: for a field that takes a string, as written (quotes optional);
// else TOML ("10", "0.5", "true", "[0.9, 0.99]"), or a string when it is not TOML, which the
// field then refuses with its own message ("expected an integer, found a string ("ten")").
Value override_value(const std::string& text, Value::Kind kind) {
  if (kind == Value::Kind::String && !text.starts_with('"') && !text.starts_with('\'')) return Value::of_string(text);
  try {
    const toml::table t = toml::parse("v = " + text);
    if (t.size() == 1 && t.get("v")) return value_of(*t.get("v"));
  } catch (const toml::parse_error&) {
  }
  return Value::of_string(text);
}

void apply_override(RawJob& raw, const std::string& arg) {
  const std::string flag = "--set " + arg;
  const size_t eq = arg.find('=');
  const size_t dot = arg.substr(0, eq).find('.');
  if (eq == std::string::npos || dot == std::string::npos)
    fail("{}: expected section.key=value (e.g. --set train.max_steps=10, --set source[0].replicas=2)", flag);
  std::string section = arg.substr(0, dot);
  const std::string key = arg.substr(dot + 1, eq - dot - 1);
  std::optional<size_t> index;
  if (const size_t b = section.find('['); b != std::string::npos && section.ends_with(']')) {
    const std::string n = section.substr(b + 1, section.size() - b - 2);
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 9)
      fail("{}: '{}': expected a [[source]] index, as in source[0]", flag, section);
    index = size_t(std::stoul(n));
    section.resize(b);
  }
  const JobSectionTable* s = find_job_section(section);
  if (!s) {
    const auto c = closest_name(section, section_names());
    fail("{}: unknown section '{}'{}", flag, section,
         c ? fmt::format(" (did you mean {}?)", *c) : fmt::format(" (sections: {})", quoted_list(section_names())));
  }
  auto& tables = raw[section];
  if (s->array_of_tables && !index)
    fail("{}: [[{}]] is an array of tables: name one, as in {}[0].{} (counted from 0 in file order)", flag, section,
         section, key);
  if (!s->array_of_tables && index) fail("{}: [{}] is a single table: write {}.{}", flag, section, section, key);
  if (index && *index >= tables.size())
    fail("{}: the job has {} [[{}]] table{} (counted from 0)", flag, tables.size(), section, tables.size() == 1 ? "" : "s");
  const size_t i = index.value_or(0);
  const JobField* f = s->find(key);
  if (!f) fail("{}: {}: unknown field{}", flag, s->label(i, key), unknown_field_hint(*s, i, key));
  if (tables.empty()) tables.push_back(RawTable{Origin{0, flag}, {}});
  tables[i].fields[key] = RawField{override_value(arg.substr(eq + 1), f->kind), Origin{0, flag}};
}

// ---- binding and checks -------------------------------------------------------------------------

class Binder {
 public:
  Binder(std::string file, bool check_paths) : check_paths_(check_paths) {
    // Absolute, so that to_toml() writes paths that mean the same from anywhere.
    job_dir_ = fs::absolute(fs::path(file)).parent_path().string();
    origins_.file = std::move(file);
  }

  JobConfig run(const RawJob& raw) {
    JobConfig c;
    for (const auto& s : job_sections()) {
      auto it = raw.find(s.name);
      bind(c, s, it == raw.end() ? nullptr : &it->second);
    }
    c.origins = origins_;
    for (const auto& s : job_sections())
      for (size_t i = 0; i < s.instances(c); ++i) check(c, s, i);
    check_job(c);
    // Paths last: a typo in a field is reported before a file that is not there yet.
    if (check_paths_) check_paths(c);
    return c;
  }

 private:
  std::string job_dir_;
  bool check_paths_;
  config::FieldOrigins origins_;

  [[noreturn]] void error(const Origin* o, std::string_view field, const std::string& msg) const {
    fail("{}: {}: {}", o ? origins_.where(*o) : origins_.file, field, msg);
  }

  // Where a message about several settings points: a --set among them, else the first line
  // written in the file, else `fallback` (the section's table).
  const Origin* first_of(const std::vector<const Origin*>& os, const Origin* fallback = nullptr) const {
    const Origin* best = nullptr;
    for (const Origin* o : os) {
      if (!o) continue;
      if (!o->flag.empty()) return o;
      if (o->line > 0 && (!best || o->line < best->line)) best = o;
    }
    return best ? best : fallback;
  }

  void bind(JobConfig& c, const JobSectionTable& s, const std::vector<RawTable>* tables);
  void check(const JobConfig& c, const JobSectionTable& s, size_t index) const;
  void check_job(const JobConfig& c) const;
  void check_paths(const JobConfig& c) const;
  void require_exists(const Origin* o, const std::string& field, const std::string& path, bool model_dir) const;
};

void Binder::bind(JobConfig& c, const JobSectionTable& s, const std::vector<RawTable>* tables) {
  const size_t n = tables ? tables->size() : 0;
  if (s.array_of_tables) c.sources.resize(n);
  if (!s.required.empty() && n == 0)
    fail("{}: {}: required section is missing ({})", origins_.file, s.label(0, ""), s.required);
  for (size_t i = 0; i < n; ++i) {
    const RawTable& t = (*tables)[i];
    origins_.record(s.name, i, "", t.origin);
    for (const JobField& f : s.fields) {
      auto it = t.fields.find(f.key);
      if (it == t.fields.end()) {
        if (!f.required.empty()) error(&t.origin, s.label(i, f.key), fmt::format("required field is missing ({})", f.required));
        continue;
      }
      const Origin& o = it->second.origin;
      origins_.record(s.name, i, f.key, o);
      try {
        f.set(c, i, it->second.value, config::SetContext{o.flag.empty() ? fs::path(job_dir_) : fs::current_path()});
      } catch (const config::BadValue& e) {
        error(&o, s.label(i, f.key) + e.suffix, e.what());
      }
    }
  }
  if (n == 0)
    for (const JobField& f : s.fields)
      if (!f.required.empty() && !s.array_of_tables)
        fail("{}: {}: required field is missing (no [{}] section)", origins_.file, s.label(0, f.key), s.name);
  if (s.finish)
    for (size_t i = 0; i < s.instances(c); ++i) s.finish(c, i, origins_, job_dir_);
}

void Binder::check(const JobConfig& c, const JobSectionTable& s, size_t i) const {
  if (!s.check) return;
  try {
    s.check(c, i, [&](std::string_view key) { return origins_.is_set(s.name, key, i); });
  } catch (const config::Conflict& e) {
    std::vector<const Origin*> os;
    std::string labels;
    for (const auto& k : e.keys) {
      os.push_back(origins_.find(s.name, k, i));
      labels += (labels.empty() ? "" : ", ") + s.label(i, k);
    }
    error(first_of(os, origins_.find(s.name, "", i)), labels, e.what());
  }
}

// Settings of different sections that contradict each other: name every field involved.
void Binder::check_job(const JobConfig& c) const {
  auto at = [&](std::string_view section, std::string_view key, size_t i = 0) { return origins_.find(section, key, i); };
  std::set<std::string> names;
  for (size_t i = 0; i < c.sources.size(); ++i) {
    if (names.insert(c.sources[i].name).second) continue;
    size_t j = 0;
    while (c.sources[j].name != c.sources[i].name) ++j;
    error(first_of({at("source", "name", i)}, at("source", "", i)), fmt::format("source[{}].name, source[{}].name", j, i),
          fmt::format("two sources are named \"{}\" (names must be unique; the name defaults to the path's last "
                      "component)",
                      c.sources[i].name));
  }
  if (c.distill.fusion && c.sources.empty())
    error(at("distill", "fusion"), "[distill].fusion, [[source]]",
          fmt::format("fusion \"{}\" needs at least one [[source]] (or set fusion = \"none\" and lambda = 1.0 for "
                      "CLM-only training)",
                      fusion_names().name(c.distill.fusion)));

  if (c.topology.teacher_ranks.size() != c.sources.size())
    error(at("topology", "teacher_ranks"), "[topology].teacher_ranks",
          fmt::format("has {} entries but the job has {} [[source]] (one per source, in order)",
                      c.topology.teacher_ranks.size(), c.sources.size()));
  for (size_t i = 0; i < c.sources.size(); ++i) {
    const SourceConfig& src = c.sources[i];
    const int64_t r = c.topology.teacher_ranks[i], per = src.replicas * src.stages;
    // A replica is its stages' ranks (dist/topology.hpp), so the group is exactly replicas x stages.
    if (r != per)
      error(first_of({at("topology", "teacher_ranks"), at("source", "replicas", i), at("source", "stages", i)}),
            fmt::format("[topology].teacher_ranks[{}], source[{}].replicas, source[{}].stages", i, i, i),
            fmt::format("source \"{}\" has {} replicas of {} stages (one rank per stage), so its teacher group "
                        "needs replicas x stages = {} ranks, found {}",
                        src.name, src.replicas, src.stages, per, r));
  }

  const int64_t per_step = c.train.micro_batch * c.topology.student_ranks;
  if (c.train.global_batch % per_step != 0)
    error(first_of({at("train", "global_batch"), at("train", "micro_batch"), at("topology", "student_ranks")}),
          "[train].global_batch, [train].micro_batch, [topology].student_ranks",
          fmt::format("global_batch ({}) must be divisible by micro_batch ({}) x student_ranks ({}) = {}",
                      c.train.global_batch, c.train.micro_batch, c.topology.student_ranks, per_step));
}

// An input path must exist; a model directory must hold config.json.
void Binder::require_exists(const Origin* o, const std::string& field, const std::string& path, bool model_dir) const {
  std::error_code ec;
  if (!fs::exists(path, ec)) error(o, field, fmt::format("path '{}' does not exist", path));
  if (!model_dir) return;
  if (!fs::is_directory(path, ec))
    error(o, field, fmt::format("'{}' is not a directory (expected a Hugging Face checkpoint directory)", path));
  if (!fs::exists(fs::path(path) / "config.json", ec))
    error(o, field, fmt::format("'{}' has no config.json (expected a Hugging Face checkpoint directory)", path));
}

void Binder::check_paths(const JobConfig& c) const {
  for (size_t i = 0; i < c.sources.size(); ++i) {
    require_exists(origins_.find("source", "path", i), fmt::format("source[{}].path", i), c.sources[i].path, true);
    if (c.sources[i].tokenizer != c.sources[i].path)
      require_exists(origins_.find("source", "tokenizer", i), fmt::format("source[{}].tokenizer", i),
                     c.sources[i].tokenizer, false);
  }
  if (const Origin* o = origins_.find("target", "path")) require_exists(o, "[target].path", c.target.path, true);
  if (const Origin* o = origins_.find("target", "tokenizer"))
    require_exists(o, "[target].tokenizer", c.target.tokenizer, false);
  require_exists(origins_.find("corpus", "path"), "[corpus].path", c.corpus.path, false);
}

}  // namespace

// ---- JobConfig ------------------------------------------------------------------------------

int64_t JobConfig::world_size() const {
  int64_t n = topology.student_ranks;
  for (int64_t r : topology.teacher_ranks) n += r;
  return n;
}

const SourceConfig* JobConfig::find_source(std::string_view name) const {
  for (const auto& s : sources)
    if (s.name == name) return &s;
  return nullptr;
}

bool JobConfig::same_settings(const JobConfig& o) const {
  if (sources.size() != o.sources.size()) return false;
  for (const auto& s : job_sections())
    for (size_t i = 0; i < s.instances(*this); ++i)
      for (const auto& f : s.fields)
        if (f.get(*this, i) != f.get(o, i)) return false;
  return true;
}

std::string JobConfig::to_toml() const {
  std::string o = "# fusellm job: every setting, defaults included (JobConfig::to_toml)\n";
  bool first = true;
  for (const auto& s : job_sections())
    for (size_t i = 0; i < s.instances(*this); ++i) {
      std::string body;
      for (const auto& f : s.fields)
        if (f.written(*this, i)) body += fmt::format("{} = {}\n", f.key, f.get(*this, i)->toml());
      if (body.empty()) continue;
      o += fmt::format("{}{}\n{}", first ? "" : "\n", s.array_of_tables ? fmt::format("[[{}]]", s.name)
                                                                         : fmt::format("[{}]", s.name), body);
      first = false;
    }
  return o;
}

JobConfig parse_job(std::string_view text, const std::string& file, const JobParseOptions& opt) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(file));
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: invalid TOML: {}", file, e.source().begin.line, e.source().begin.column, e.description());
  }
  RawJob raw = Reader(file).read(root);
  for (const auto& o : opt.overrides) apply_override(raw, o);
  JobConfig c = Binder(file, opt.check_paths).run(raw);
  c.file = file;
  c.text = std::string(text);
  return c;
}

JobConfig load_job(const std::string& path, const JobParseOptions& opt) {
  // An ifstream opens a directory and reads nothing from it: refuse it here, by name.
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail("job file '{}' is a directory, expected a TOML file", path);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("job file '{}' cannot be read ({})", path, fs::exists(path) ? "permission denied" : "no such file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_job(ss.str(), path, opt);
}

}  // namespace fusellm
