#include "fusellm/job/job_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace fs = std::filesystem;

// ---- enum spellings -------------------------------------------------------------------------

namespace {

template <typename E>
struct Names {
  std::vector<std::pair<E, std::string_view>> list;
  std::string_view name(E e) const {
    for (auto& [v, n] : list)
      if (v == e) return n;
    return "?";
  }
};

const Names<CorpusFormat> kCorpusFormats{
    {{CorpusFormat::Auto, "auto"}, {CorpusFormat::JSONL, "jsonl"}, {CorpusFormat::Text, "text"}}};
const Names<AlignmentKind> kAlignments{
    {{AlignmentKind::MinED, "mined"}, {AlignmentKind::EM, "em"}, {AlignmentKind::ByteSpan, "bytespan"}}};
const Names<FusionKind> kFusions{
    {{FusionKind::MinCE, "minCE"}, {FusionKind::AvgCE, "avgCE"}, {FusionKind::None, "none"}}};
const Names<ScoreKind> kScores{{{ScoreKind::CE, "ce"}, {ScoreKind::BPB, "bpb"}}};
const Names<TrainDType> kDTypes{{{TrainDType::F32, "fp32"}, {TrainDType::BF16, "bf16"}}};
const Names<ScheduleKind> kSchedules{
    {{ScheduleKind::Cosine, "cosine"}, {ScheduleKind::Linear, "linear"}, {ScheduleKind::Constant, "constant"}}};

}  // namespace

std::string_view corpus_format_name(CorpusFormat f) { return kCorpusFormats.name(f); }
std::string_view alignment_name(AlignmentKind a) { return kAlignments.name(a); }
std::string_view fusion_name(FusionKind f) { return kFusions.name(f); }
std::string_view score_name(ScoreKind s) { return kScores.name(s); }
std::string_view train_dtype_name(TrainDType d) { return kDTypes.name(d); }

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// ---- the schema -----------------------------------------------------------------------------

namespace {

struct SectionSpec {
  std::string_view name;
  bool array_of_tables;
  std::vector<std::string_view> fields;
};

const std::vector<SectionSpec>& schema() {
  static const std::vector<SectionSpec> s = {
      {"job", false, {"name", "seed", "output_dir"}},
      {"source", true, {"name", "path", "replicas", "tokenizer"}},
      {"target", false, {"path", "init_from", "tokenizer"}},
      {"corpus", false, {"path", "format", "text_field", "max_len", "margin", "document_mask"}},
      {"distill", false,
       {"top_k", "temperature", "alignment", "fusion", "lambda", "keep_tail", "onehot_compat", "align_compat", "score"}},
      {"optim", false,
       {"lr", "betas", "eps", "weight_decay", "clip", "schedule", "warmup_ratio", "warmup_steps", "min_lr_ratio"}},
      {"train", false, {"micro_batch", "global_batch", "epochs", "max_steps", "log_interval", "dtype"}},
      {"checkpoint", false, {"dir", "interval", "keep", "resume"}},
      {"topology", false, {"teacher_ranks", "student_ranks", "prefetch"}},
      {"cache", false, {"dir"}},
  };
  return s;
}

const SectionSpec* find_section(std::string_view name) {
  for (const auto& s : schema())
    if (s.name == name) return &s;
  return nullptr;
}

// The closest candidate when it is close enough to be a plausible typo.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::optional<std::string> best;
  size_t best_d = SIZE_MAX;
  for (auto c : candidates) {
    // Case-insensitive first ("MinCE" for "minCE"), then plain edit distance.
    std::string lw(word), lc(c);
    auto lower = [](unsigned char ch) { return char(std::tolower(ch)); };
    std::transform(lw.begin(), lw.end(), lw.begin(), lower);
    std::transform(lc.begin(), lc.end(), lc.begin(), lower);
    size_t d = lw == lc ? 0 : edit_distance(word, c);
    // A prefix of 3+ characters counts as close too ("optimizer" for "optim").
    const auto& shorter = lw.size() < lc.size() ? lw : lc;
    const auto& longer = lw.size() < lc.size() ? lc : lw;
    if (shorter.size() >= 3 && longer.starts_with(shorter)) d = std::min<size_t>(d, 1);
    if (d < best_d) best_d = d, best = std::string(c);
  }
  if (best && best_d <= std::max<size_t>(2, word.size() / 3)) return best;
  return std::nullopt;
}

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

// A short rendering of the value found, for error messages.
std::string found(const toml::node& n) {
  std::string r = type_name(n);
  std::ostringstream os;
  if (n.is_string()) os << '"' << n.as_string()->get() << '"';
  else if (n.is_integer()) os << n.as_integer()->get();
  else if (n.is_floating_point()) os << n.as_floating_point()->get();
  else if (n.is_boolean()) os << (n.as_boolean()->get() ? "true" : "false");
  std::string v = os.str();
  if (v.size() > 60) v = v.substr(0, 57) + "...";
  return v.empty() ? r : r + " (" + v + ")";
}

int64_t line_of(const toml::node& n) { return int64_t(n.source().begin.line); }

std::string quoted_list(const std::vector<std::string_view>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + std::string(v[i]) + "\"";
  return s;
}

// ---- the parser -----------------------------------------------------------------------------

class Parser {
 public:
  Parser(std::string file, bool check_paths) : file_(std::move(file)), check_paths_(check_paths) {
    // Absolute, so that to_toml() writes paths that mean the same from anywhere.
    base_ = fs::absolute(fs::path(file_)).parent_path();
  }

  JobConfig run(const toml::table& root);

 private:
  std::string file_;
  fs::path base_;
  bool check_paths_;
  std::map<std::string, int64_t> line_;  // field ("[optim].lr") -> line, for later messages

  std::string where(int64_t line) const { return line > 0 ? fmt::format("{}:{}", file_, line) : file_; }

  template <typename... Args>
  [[noreturn]] void error(int64_t line, std::string_view field, fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}: {}: {}", where(line), field, fmt::format(f, std::forward<Args>(args)...));
  }

  int64_t line(const std::string& field) const {
    auto it = line_.find(field);
    return it == line_.end() ? 0 : it->second;
  }
  // The first line among fields that were set in the file (0 when all are defaults).
  int64_t first_line(std::initializer_list<std::string> fields) const {
    int64_t best = 0;
    for (const auto& f : fields)
      if (int64_t l = line(f); l > 0 && (best == 0 || l < best)) best = l;
    return best;
  }

  // "[optim]" + "lr" -> "[optim].lr"; "source[1]" + "path" -> "source[1].path"
  static std::string field_name(const std::string& ctx, std::string_view key) { return ctx + "." + std::string(key); }

  void check_fields(const toml::table& t, const std::string& ctx, const SectionSpec& spec) const {
    for (auto& [k, v] : t) {
      const std::string_view key = k.str();
      if (std::find(spec.fields.begin(), spec.fields.end(), key) != spec.fields.end()) continue;
      std::string hint;
      if (auto c = closest(key, spec.fields)) {
        hint = fmt::format(" (did you mean '{}'?)", *c);
      } else {
        for (const auto& other : schema())
          if (std::find(other.fields.begin(), other.fields.end(), key) != other.fields.end()) {
            hint = other.array_of_tables ? fmt::format(" (did you mean [[{}]].{}?)", other.name, key)
                                         : fmt::format(" (did you mean [{}].{}?)", other.name, key);
            break;
          }
      }
      if (hint.empty()) hint = fmt::format(" (fields of {}: {})", ctx, quoted_list(spec.fields));
      error(line_of(v), field_name(ctx, key), "unknown field{}", hint);
    }
  }

  const toml::node* get(const toml::table& t, const std::string& ctx, std::string_view key) {
    const toml::node* n = t.get(key);
    if (n) line_[field_name(ctx, key)] = line_of(*n);
    return n;
  }

  bool get_int(const toml::table& t, const std::string& ctx, std::string_view key, int64_t& out) {
    const toml::node* n = get(t, ctx, key);
    if (!n) return false;
    if (!n->is_integer()) error(line_of(*n), field_name(ctx, key), "expected an integer, found {}", found(*n));
    out = n->as_integer()->get();
    return true;
  }
  bool get_opt_int(const toml::table& t, const std::string& ctx, std::string_view key, std::optional<int64_t>& out) {
    int64_t v = 0;
    if (!get_int(t, ctx, key, v)) return false;
    out = v;
    return true;
  }
  // Floats accept integers too ("clip = 1"), as TOML users expect.
  double float_value(const toml::node& n, const std::string& field) const {
    if (n.is_floating_point()) return n.as_floating_point()->get();
    if (n.is_integer()) return double(n.as_integer()->get());
    error(line_of(n), field, "expected a float, found {}", found(n));
  }
  bool get_float(const toml::table& t, const std::string& ctx, std::string_view key, double& out) {
    const toml::node* n = get(t, ctx, key);
    if (!n) return false;
    out = float_value(*n, field_name(ctx, key));
    return true;
  }
  bool get_bool(const toml::table& t, const std::string& ctx, std::string_view key, bool& out) {
    const toml::node* n = get(t, ctx, key);
    if (!n) return false;
    if (!n->is_boolean()) error(line_of(*n), field_name(ctx, key), "expected a boolean, found {}", found(*n));
    out = n->as_boolean()->get();
    return true;
  }
  bool get_string(const toml::table& t, const std::string& ctx, std::string_view key, std::string& out) {
    const toml::node* n = get(t, ctx, key);
    if (!n) return false;
    if (!n->is_string()) error(line_of(*n), field_name(ctx, key), "expected a string, found {}", found(*n));
    out = n->as_string()->get();
    if (out.empty()) error(line_of(*n), field_name(ctx, key), "must not be empty");
    return true;
  }
  template <typename E>
  bool get_enum(const toml::table& t, const std::string& ctx, std::string_view key, const Names<E>& names, E& out) {
    std::string s;
    if (!get_string(t, ctx, key, s)) return false;
    std::vector<std::string_view> all;
    for (auto& [v, name] : names.list) {
      all.push_back(name);
      if (name == s) {
        out = v;
        return true;
      }
    }
    const auto c = closest(s, all);
    error(line(field_name(ctx, key)), field_name(ctx, key), "expected one of {}, found \"{}\"{}", quoted_list(all), s,
          c ? fmt::format(" (did you mean \"{}\"?)", *c) : "");
  }
  // A path, resolved against the job file's directory.
  bool get_path(const toml::table& t, const std::string& ctx, std::string_view key, std::string& out) {
    std::string s;
    if (!get_string(t, ctx, key, s)) return false;
    out = resolve(s);
    return true;
  }
  std::string resolve(const std::string& p) const {
    fs::path q(p);
    if (q.is_relative()) q = base_ / q;
    return q.lexically_normal().string();
  }

  // An input path must exist; a model directory must hold config.json.
  void require_exists(const std::string& field, const std::string& path, bool model_dir) const {
    if (!check_paths_) return;
    std::error_code ec;
    if (!fs::exists(path, ec)) error(line(field), field, "path '{}' does not exist", path);
    if (model_dir) {
      if (!fs::is_directory(path, ec))
        error(line(field), field, "'{}' is not a directory (expected a Hugging Face checkpoint directory)", path);
      if (!fs::exists(fs::path(path) / "config.json", ec))
        error(line(field), field, "'{}' has no config.json (expected a Hugging Face checkpoint directory)", path);
    }
  }

  const toml::table* section(const toml::table& root, std::string_view name) {
    const toml::node* n = root.get(name);
    if (!n) return nullptr;
    const SectionSpec* spec = find_section(name);
    const std::string ctx = fmt::format("[{}]", name);
    if (!n->is_table()) error(line_of(*n), ctx, "expected a table ({}), found {}", ctx, found(*n));
    check_fields(*n->as_table(), ctx, *spec);
    return n->as_table();
  }

  void parse_sources(const toml::table& root, JobConfig& c);
  void validate(JobConfig& c, bool have_target, bool have_corpus);
};

void Parser::parse_sources(const toml::table& root, JobConfig& c) {
  const toml::node* n = root.get("source");
  if (!n) return;
  if (n->is_table())
    error(line_of(*n), "[source]", "expected an array of tables: write [[source]] (one per source model), not [source]");
  if (!n->is_array() || !n->as_array()->is_array_of_tables())
    error(line_of(*n), "source", "expected an array of tables ([[source]]), found {}", found(*n));
  const auto& arr = *n->as_array();
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::table& t = *arr[i].as_table();
    const std::string ctx = fmt::format("source[{}]", i);
    line_[ctx] = line_of(t);
    check_fields(t, ctx, *find_section("source"));
    SourceConfig s;
    if (!get_path(t, ctx, "path", s.path))
      error(line_of(t), field_name(ctx, "path"), "required field is missing (the source's Hugging Face checkpoint directory)");
    if (!get_string(t, ctx, "name", s.name)) {
      fs::path p(s.path);
      s.name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
    }
    // The name becomes file names in [cache].dir (<name>.h5, vocab_map.<name>.h5): a name that is
    // not a plain file name would write outside it.
    if (s.name.empty() || s.name == "." || s.name == ".." || s.name.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      error(line(field_name(ctx, "name")) ? line(field_name(ctx, "name")) : line_of(t), field_name(ctx, "name"),
            "\"{}\" is not a plain file name (it names the source's cache file {}.h5 in [cache].dir): it must not "
            "be empty, '.' or '..', nor contain '/' or '\\'{}",
            s.name, s.name, line(field_name(ctx, "name")) ? "" : " (the name defaults to the path's last component)");
    get_int(t, ctx, "replicas", s.replicas);
    if (!get_path(t, ctx, "tokenizer", s.tokenizer)) s.tokenizer = s.path;
    c.sources.push_back(std::move(s));
  }
}

JobConfig Parser::run(const toml::table& root) {
  // Unknown sections first: a misspelled section hides every field in it.
  for (auto& [k, v] : root) {
    const std::string_view key = k.str();
    if (find_section(key)) continue;
    std::vector<std::string_view> names;
    for (const auto& s : schema()) names.push_back(s.name);
    std::string hint;
    if (auto c = closest(key, names)) {
      hint = fmt::format(" (did you mean [{}]?)", *c);
    } else {
      for (const auto& s : schema())
        if (std::find(s.fields.begin(), s.fields.end(), key) != s.fields.end()) {
          hint = fmt::format(" (did you mean [{}].{}? fields belong in a section)", s.name, key);
          break;
        }
    }
    if (hint.empty()) hint = fmt::format(" (sections: {})", quoted_list(names));
    error(line_of(v), key, "unknown {}{}", v.is_table() || v.is_array_of_tables() ? "section" : "top-level field", hint);
  }

  JobConfig c;
  if (const auto* t = section(root, "job")) {
    get_string(*t, "[job]", "name", c.job.name);
    get_int(*t, "[job]", "seed", c.job.seed);
    get_path(*t, "[job]", "output_dir", c.job.output_dir);
  }
  if (c.job.output_dir.empty()) c.job.output_dir = resolve("runs/" + c.job.name);

  parse_sources(root, c);

  const toml::table* target = section(root, "target");
  if (target) {
    get_path(*target, "[target]", "path", c.target.path);
    get_string(*target, "[target]", "init_from", c.target.init_from);
    get_path(*target, "[target]", "tokenizer", c.target.tokenizer);
    line_["[target]"] = line_of(*target);
  }

  const toml::table* corpus = section(root, "corpus");
  if (corpus) {
    const std::string ctx = "[corpus]";
    line_[ctx] = line_of(*corpus);
    get_path(*corpus, ctx, "path", c.corpus.path);
    get_enum(*corpus, ctx, "format", kCorpusFormats, c.corpus.format);
    get_string(*corpus, ctx, "text_field", c.corpus.text_field);
    get_int(*corpus, ctx, "max_len", c.corpus.max_len);
    get_int(*corpus, ctx, "margin", c.corpus.margin);
    get_bool(*corpus, ctx, "document_mask", c.corpus.document_mask);
  }

  if (const auto* t = section(root, "distill")) {
    const std::string ctx = "[distill]";
    get_int(*t, ctx, "top_k", c.distill.top_k);
    get_float(*t, ctx, "temperature", c.distill.temperature);
    get_enum(*t, ctx, "alignment", kAlignments, c.distill.alignment);
    get_enum(*t, ctx, "fusion", kFusions, c.distill.fusion);
    get_float(*t, ctx, "lambda", c.distill.lambda);
    get_bool(*t, ctx, "keep_tail", c.distill.keep_tail);
    get_bool(*t, ctx, "onehot_compat", c.distill.onehot_compat);
    if (std::string rules; get_string(*t, ctx, "align_compat", rules)) {
      try {
        c.distill.align_compat = align::OriginalRules::parse(rules);
      } catch (const Error& e) {
        error(line(field_name(ctx, "align_compat")), field_name(ctx, "align_compat"), "{}", e.what());
      }
    }
    get_enum(*t, ctx, "score", kScores, c.distill.score);
  }

  if (const auto* t = section(root, "optim")) {
    const std::string ctx = "[optim]";
    get_float(*t, ctx, "lr", c.optim.lr);
    if (const toml::node* b = get(*t, ctx, "betas")) {
      const std::string f = field_name(ctx, "betas");
      if (!b->is_array()) error(line_of(*b), f, "expected an array of two floats, found {}", found(*b));
      const auto& a = *b->as_array();
      if (a.size() != 2) error(line_of(*b), f, "expected an array of two floats, found {} values", a.size());
      c.optim.beta1 = float_value(a[0], f + "[0]");
      c.optim.beta2 = float_value(a[1], f + "[1]");
    }
    get_float(*t, ctx, "eps", c.optim.eps);
    get_float(*t, ctx, "weight_decay", c.optim.weight_decay);
    get_float(*t, ctx, "clip", c.optim.clip);
    get_enum(*t, ctx, "schedule", kSchedules, c.optim.schedule);
    get_float(*t, ctx, "warmup_ratio", c.optim.warmup_ratio);
    get_opt_int(*t, ctx, "warmup_steps", c.optim.warmup_steps);
    get_float(*t, ctx, "min_lr_ratio", c.optim.min_lr_ratio);
  }

  if (const auto* t = section(root, "train")) {
    const std::string ctx = "[train]";
    get_int(*t, ctx, "micro_batch", c.train.micro_batch);
    get_int(*t, ctx, "global_batch", c.train.global_batch);
    get_int(*t, ctx, "epochs", c.train.epochs);
    get_opt_int(*t, ctx, "max_steps", c.train.max_steps);
    get_int(*t, ctx, "log_interval", c.train.log_interval);
    get_enum(*t, ctx, "dtype", kDTypes, c.train.dtype);
  }

  if (const auto* t = section(root, "checkpoint")) {
    const std::string ctx = "[checkpoint]";
    get_path(*t, ctx, "dir", c.checkpoint.dir);
    get_int(*t, ctx, "interval", c.checkpoint.interval);
    get_int(*t, ctx, "keep", c.checkpoint.keep);
    get_bool(*t, ctx, "resume", c.checkpoint.resume);
  }
  if (c.checkpoint.dir.empty()) c.checkpoint.dir = (fs::path(c.job.output_dir) / "checkpoints").lexically_normal().string();

  if (const auto* t = section(root, "topology")) {
    const std::string ctx = "[topology]";
    if (const toml::node* n = get(*t, ctx, "teacher_ranks")) {
      const std::string f = field_name(ctx, "teacher_ranks");
      if (n->is_integer()) {
        c.topology.teacher_ranks.assign(c.sources.size(), n->as_integer()->get());
      } else if (n->is_array()) {
        for (size_t i = 0; i < n->as_array()->size(); ++i) {
          const toml::node& e = *n->as_array()->get(i);
          if (!e.is_integer())
            error(line_of(*n), f, "expected an integer or an array of integers, found {} at index {}", found(e), i);
          c.topology.teacher_ranks.push_back(e.as_integer()->get());
        }
      } else {
        error(line_of(*n), f, "expected an integer or an array of integers (one per [[source]]), found {}", found(*n));
      }
    }
    get_int(*t, ctx, "student_ranks", c.topology.student_ranks);
    get_int(*t, ctx, "prefetch", c.topology.prefetch);
  }
  if (!line_.count("[topology].teacher_ranks"))
    for (const auto& s : c.sources) c.topology.teacher_ranks.push_back(s.replicas);

  if (const auto* t = section(root, "cache")) get_path(*t, "[cache]", "dir", c.cache.dir);

  validate(c, target != nullptr, corpus != nullptr);
  return c;
}

void Parser::validate(JobConfig& c, bool have_target, bool have_corpus) {
  // Ranges of single fields. Counts and sizes are at most INT32_MAX: the kernels take k and
  // lengths as int, token ids and positions are int32, and products of two of them (tokens per
  // step, steps of all epochs) must not overflow int64. A larger value fails later, deep inside
  // HDF5 or an allocation, without the field's name.
  constexpr int64_t kMax = INT32_MAX;
  auto at_most = [&](const std::string& f, int64_t line_no, int64_t v) {
    if (v > kMax) error(line_no, f, "must be at most {} (2^31 - 1), found {}", kMax, v);
  };
  auto at_least = [&](const std::string& f, int64_t v, int64_t lo) {
    if (v < lo) error(line(f), f, "must be at least {}, found {}", lo, v);
    at_most(f, line(f), v);
  };
  for (size_t i = 0; i < c.sources.size(); ++i) at_least(fmt::format("source[{}].replicas", i), c.sources[i].replicas, 1);
  at_least("[corpus].max_len", c.corpus.max_len, 2);
  at_least("[corpus].margin", c.corpus.margin, 0);
  at_least("[distill].top_k", c.distill.top_k, 1);
  at_least("[train].micro_batch", c.train.micro_batch, 1);
  at_least("[train].global_batch", c.train.global_batch, 1);
  at_least("[train].epochs", c.train.epochs, 1);
  if (c.train.max_steps) at_least("[train].max_steps", *c.train.max_steps, 1);
  at_least("[train].log_interval", c.train.log_interval, 1);
  at_least("[checkpoint].interval", c.checkpoint.interval, 0);
  at_least("[checkpoint].keep", c.checkpoint.keep, 0);
  at_least("[topology].student_ranks", c.topology.student_ranks, 1);
  at_least("[topology].prefetch", c.topology.prefetch, 1);
  for (size_t i = 0; i < c.topology.teacher_ranks.size(); ++i)
    at_most(fmt::format("[topology].teacher_ranks[{}]", i), line("[topology].teacher_ranks"), c.topology.teacher_ranks[i]);
  if (c.optim.warmup_steps) at_least("[optim].warmup_steps", *c.optim.warmup_steps, 0);

  // TOML has inf and nan: every float setting must be a finite number (nan fails every range
  // check below; inf would pass "> 0").
  auto finite = [&](const std::string& f, double v) {
    if (!std::isfinite(v)) error(line(f), f, "must be a finite number, found {}", v);
  };
  finite("[distill].temperature", c.distill.temperature);
  finite("[distill].lambda", c.distill.lambda);
  finite("[optim].lr", c.optim.lr);
  finite("[optim].betas", c.optim.beta1);
  finite("[optim].betas", c.optim.beta2);
  finite("[optim].eps", c.optim.eps);
  finite("[optim].weight_decay", c.optim.weight_decay);
  finite("[optim].clip", c.optim.clip);
  finite("[optim].warmup_ratio", c.optim.warmup_ratio);
  finite("[optim].min_lr_ratio", c.optim.min_lr_ratio);

  auto in_range = [&](const std::string& f, double v, double lo, double hi, bool hi_open, const char* why) {
    if (!(v >= lo && (hi_open ? v < hi : v <= hi)))
      error(line(f), f, "must be in [{}, {}{} ({}), found {}", lo, hi, hi_open ? ")" : "]", why, v);
  };
  // Finite as well: lr = inf (or nan) would overflow the weights at the first update.
  auto positive = [&](const std::string& f, double v, bool allow_zero) {
    if (!std::isfinite(v) || !(allow_zero ? v >= 0 : v > 0))
      error(line(f), f, "must be a finite number {}, found {}", allow_zero ? ">= 0" : "> 0", v);
  };
  in_range("[distill].lambda", c.distill.lambda, 0, 1, false, "the weight of the CLM term, paper eq. 5");
  positive("[distill].temperature", c.distill.temperature, false);
  positive("[optim].lr", c.optim.lr, false);
  positive("[optim].eps", c.optim.eps, true);
  positive("[optim].weight_decay", c.optim.weight_decay, true);
  positive("[optim].clip", c.optim.clip, true);
  in_range("[optim].betas", c.optim.beta1, 0, 1, true, "beta1");
  in_range("[optim].betas", c.optim.beta2, 0, 1, true, "beta2");
  in_range("[optim].warmup_ratio", c.optim.warmup_ratio, 0, 1, true, "a fraction of the total steps");
  in_range("[optim].min_lr_ratio", c.optim.min_lr_ratio, 0, 1, false, "a fraction of lr");

  // Settings that contradict each other: name every field involved.
  if (c.corpus.margin >= c.corpus.max_len)
    error(first_line({"[corpus].margin", "[corpus].max_len"}), "[corpus].margin, [corpus].max_len",
          "margin ({}) must be smaller than max_len ({}): segments hold at most max_len - margin tokens", c.corpus.margin,
          c.corpus.max_len);

  std::set<std::string> names;
  for (size_t i = 0; i < c.sources.size(); ++i) {
    const std::string f = fmt::format("source[{}].name", i);
    if (!names.insert(c.sources[i].name).second) {
      size_t j = 0;
      while (c.sources[j].name != c.sources[i].name) ++j;
      error(line(f) ? line(f) : line(fmt::format("source[{}]", i)), fmt::format("source[{}].name, source[{}].name", j, i),
            "two sources are named \"{}\" (names must be unique; the name defaults to the path's last component)",
            c.sources[i].name);
    }
  }

  if (c.distill.fusion == FusionKind::None && c.distill.lambda < 1.0)
    error(first_line({"[distill].fusion", "[distill].lambda"}), "[distill].fusion, [distill].lambda",
          "fusion \"none\" trains on the CLM loss alone, so lambda must be 1 (found {}): set lambda = 1.0, or a "
          "fusion function",
          c.distill.lambda);
  if (c.distill.fusion != FusionKind::None && c.sources.empty())
    error(line("[distill].fusion"), "[distill].fusion, [[source]]",
          "fusion \"{}\" needs at least one [[source]] (or set fusion = \"none\" and lambda = 1.0 for CLM-only training)",
          fusion_name(c.distill.fusion));

  if (c.optim.warmup_steps && line("[optim].warmup_ratio") > 0)
    error(first_line({"[optim].warmup_ratio", "[optim].warmup_steps"}), "[optim].warmup_ratio, [optim].warmup_steps",
          "set one of them, not both");

  if (c.topology.teacher_ranks.size() != c.sources.size())
    error(line("[topology].teacher_ranks"), "[topology].teacher_ranks",
          "has {} entries but the job has {} [[source]] (one per source, in order)", c.topology.teacher_ranks.size(),
          c.sources.size());
  for (size_t i = 0; i < c.sources.size(); ++i) {
    const int64_t r = c.topology.teacher_ranks[i];
    if (r < 1 || r % c.sources[i].replicas != 0)
      error(first_line({"[topology].teacher_ranks", fmt::format("source[{}].replicas", i)}),
            fmt::format("[topology].teacher_ranks[{}], source[{}].replicas", i, i),
            "source \"{}\" has {} replicas, so its teacher group needs a positive multiple of {} ranks, found {}",
            c.sources[i].name, c.sources[i].replicas, c.sources[i].replicas, r);
  }

  const int64_t per_step = c.train.micro_batch * c.topology.student_ranks;
  if (c.train.global_batch % per_step != 0)
    error(first_line({"[train].global_batch", "[train].micro_batch", "[topology].student_ranks"}),
          "[train].global_batch, [train].micro_batch, [topology].student_ranks",
          "global_batch ({}) must be divisible by micro_batch ({}) x student_ranks ({}) = {}", c.train.global_batch,
          c.train.micro_batch, c.topology.student_ranks, per_step);

  // The target: a checkpoint directory, or one of the sources (the original initializes the
  // target from Llama-2, which is also a source).
  if (!have_target) fail("{}: [target]: required section is missing (set [target] path or init_from)", file_);
  const bool has_path = line("[target].path") > 0, has_init = line("[target].init_from") > 0;
  if (has_path && has_init)
    error(first_line({"[target].path", "[target].init_from"}), "[target].path, [target].init_from",
          "set one of them, not both");
  if (!has_path && !has_init)
    error(line("[target]"), "[target].path",
          "required field is missing (the student's Hugging Face checkpoint directory; or init_from = \"<source "
          "name>\")");
  if (has_init) {
    const SourceConfig* s = c.find_source(c.target.init_from);
    if (!s) {
      std::vector<std::string_view> all;
      for (const auto& src : c.sources) all.push_back(src.name);
      const auto hint = closest(c.target.init_from, all);
      error(line("[target].init_from"), "[target].init_from", "names no [[source]]: \"{}\" (sources: {}){}",
            c.target.init_from, all.empty() ? "none" : quoted_list(all),
            hint ? fmt::format(" (did you mean \"{}\"?)", *hint) : "");
    }
    if (c.target.tokenizer.empty()) c.target.tokenizer = s->tokenizer;
  } else if (c.target.tokenizer.empty()) {
    c.target.tokenizer = c.target.path;
  }

  if (!have_corpus) fail("{}: [corpus].path: required field is missing (no [corpus] section)", file_);
  if (c.corpus.path.empty())
    error(line("[corpus]"), "[corpus].path", "required field is missing (a .jsonl or .txt file, or a directory)");

  // Paths last: a typo in a field is reported before a file that is not there yet.
  for (size_t i = 0; i < c.sources.size(); ++i) {
    require_exists(fmt::format("source[{}].path", i), c.sources[i].path, true);
    if (c.sources[i].tokenizer != c.sources[i].path)
      require_exists(fmt::format("source[{}].tokenizer", i), c.sources[i].tokenizer, false);
  }
  if (has_path) require_exists("[target].path", c.target.path, true);
  if (line("[target].tokenizer") > 0) require_exists("[target].tokenizer", c.target.tokenizer, false);
  require_exists("[corpus].path", c.corpus.path, false);
}

// ---- TOML output ----------------------------------------------------------------------------

std::string toml_string(std::string_view s) {
  std::string o = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (ch < 0x20 || ch == 0x7f) o += fmt::format("\\u{:04X}", ch);
        else o += char(ch);
    }
  }
  return o + "\"";
}

// Shortest text that reads back as the same double, with a '.' or exponent so TOML sees a float.
std::string toml_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
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
  return job == o.job && sources == o.sources && target == o.target && corpus == o.corpus && distill == o.distill &&
         optim == o.optim && train == o.train && checkpoint == o.checkpoint && topology == o.topology &&
         cache == o.cache;
}

std::string JobConfig::to_toml() const {
  std::string o;
  auto kv = [&](std::string_view k, const std::string& v) { o += fmt::format("{} = {}\n", k, v); };
  auto str = [](std::string_view s) { return toml_string(s); };
  auto num = [](int64_t v) { return std::to_string(v); };
  auto boolean = [](bool b) { return std::string(b ? "true" : "false"); };

  o += "# fusellm job: every setting, defaults included (JobConfig::to_toml)\n";
  o += "[job]\n";
  kv("name", str(job.name));
  kv("seed", num(job.seed));
  kv("output_dir", str(job.output_dir));
  for (const auto& s : sources) {
    o += "\n[[source]]\n";
    kv("name", str(s.name));
    kv("path", str(s.path));
    kv("replicas", num(s.replicas));
    kv("tokenizer", str(s.tokenizer));
  }
  o += "\n[target]\n";
  if (!target.init_from.empty()) kv("init_from", str(target.init_from));
  else kv("path", str(target.path));
  kv("tokenizer", str(target.tokenizer));
  o += "\n[corpus]\n";
  kv("path", str(corpus.path));
  kv("format", str(corpus_format_name(corpus.format)));
  kv("text_field", str(corpus.text_field));
  kv("max_len", num(corpus.max_len));
  kv("margin", num(corpus.margin));
  kv("document_mask", boolean(corpus.document_mask));
  o += "\n[distill]\n";
  kv("top_k", num(distill.top_k));
  kv("temperature", toml_float(distill.temperature));
  kv("alignment", str(alignment_name(distill.alignment)));
  kv("fusion", str(fusion_name(distill.fusion)));
  kv("lambda", toml_float(distill.lambda));
  kv("keep_tail", boolean(distill.keep_tail));
  kv("onehot_compat", boolean(distill.onehot_compat));
  kv("align_compat", str(distill.align_compat.to_string()));
  kv("score", str(score_name(distill.score)));
  o += "\n[optim]\n";
  kv("lr", toml_float(optim.lr));
  kv("betas", fmt::format("[{}, {}]", toml_float(optim.beta1), toml_float(optim.beta2)));
  kv("eps", toml_float(optim.eps));
  kv("weight_decay", toml_float(optim.weight_decay));
  kv("clip", toml_float(optim.clip));
  kv("schedule", str(schedule_name(optim.schedule)));
  if (optim.warmup_steps) kv("warmup_steps", num(*optim.warmup_steps));
  else kv("warmup_ratio", toml_float(optim.warmup_ratio));
  kv("min_lr_ratio", toml_float(optim.min_lr_ratio));
  o += "\n[train]\n";
  kv("micro_batch", num(train.micro_batch));
  kv("global_batch", num(train.global_batch));
  kv("epochs", num(train.epochs));
  if (train.max_steps) kv("max_steps", num(*train.max_steps));
  kv("log_interval", num(train.log_interval));
  kv("dtype", str(train_dtype_name(train.dtype)));
  o += "\n[checkpoint]\n";
  kv("dir", str(checkpoint.dir));
  kv("interval", num(checkpoint.interval));
  kv("keep", num(checkpoint.keep));
  kv("resume", boolean(checkpoint.resume));
  o += "\n[topology]\n";
  std::string tr = "[";
  for (size_t i = 0; i < topology.teacher_ranks.size(); ++i) tr += (i ? ", " : "") + num(topology.teacher_ranks[i]);
  kv("teacher_ranks", tr + "]");
  kv("student_ranks", num(topology.student_ranks));
  kv("prefetch", num(topology.prefetch));
  if (!cache.dir.empty()) {
    o += "\n[cache]\n";
    kv("dir", str(cache.dir));
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
  JobConfig c = Parser(file, opt.check_paths).run(root);
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
