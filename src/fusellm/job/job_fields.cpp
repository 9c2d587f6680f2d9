#include "fusellm/job/job_fields.hpp"

#include <climits>
#include <filesystem>

namespace fusellm {

namespace fs = std::filesystem;

namespace {

const config::EnumNames<DType>& train_dtype_names() {
  static const config::EnumNames<DType> names{{{DType::F32, "fp32"}, {DType::BF16, "bf16"}}};
  return names;
}

const config::EnumNames<Device>& device_names() {
  static const config::EnumNames<Device> names{{{Device::kAuto, "auto"}, {Device::kCpu, "cpu"}, {Device::kCuda, "cuda"}}};
  return names;
}

using config::Conflict;
using config::Field;
using config::IsSet;
using config::Section;
using config::Value;

// A component's section, bound to the JobConfig member (or [[source]] table) that `at` returns.
template <typename S, typename At>
JobSectionTable lift(const Section<S>& s, At at, bool array_of_tables = false) {
  JobSectionTable t{s.name, s.note, array_of_tables};
  for (const Field<S>& f : s.fields) {
    JobField j{f.key, f.kind, f.type, f.default_doc(), f.meaning, f.required};
    j.set = [f, at](JobConfig& c, size_t i, const Value& v, const config::SetContext& ctx) { f.set(at(c, i), v, ctx); };
    j.get = [f, at](const JobConfig& c, size_t i) { return f.get(at(c, i)); };
    j.written = [f, at](const JobConfig& c, size_t i) { return f.is_written(at(c, i)); };
    t.fields.push_back(std::move(j));
  }
  if (s.check) t.check = [check = s.check, at](const JobConfig& c, size_t i, const IsSet& set) { check(at(c, i), set); };
  return t;
}

template <typename S>
auto member(S JobConfig::*m) {
  return [m](auto& c, size_t) -> auto& { return c.*m; };
}

std::string resolve(const std::string& dir, const std::string& p) {
  return config::resolve_path(p, config::SetContext{fs::path(dir)});
}

JobSectionTable job_table() {
  using S = JobSection;
  Section<S> s{"job", ""};
  s.fields = {
      config::string_field("name", &S::name, "Name of the run. Used in logs and in the default `output_dir`."),
      config::integer_field("seed", &S::seed, INT64_MIN,
                            "Seeds the sampler and every random number generator. The RNG state is saved in "
                            "checkpoints.",
                            INT64_MAX),
      config::path_field("output_dir", &S::output_dir,
                         "Where metrics (JSON lines) go, and the parent of the default checkpoint directory.")
          .defaults_to("`\"runs/<name>\"`"),
  };
  JobSectionTable t = lift(s, member(&JobConfig::job));
  t.finish = [](JobConfig& c, size_t, const config::FieldOrigins&, const std::string& dir) {
    if (c.job.output_dir.empty()) c.job.output_dir = resolve(dir, "runs/" + c.job.name);
  };
  return t;
}

JobSectionTable source_table() {
  using S = SourceConfig;
  Section<S> s{"source", "one table per source model; zero or more"};
  s.fields = {
      config::string_field("name", &S::name,
                           "Unique name, a plain file name (no `/`; not `.` or `..`): the cache files `<name>.h5` "
                           "and `vocab_map.<name>.h5` are named after it. `[target].init_from` and the per-teacher "
                           "metrics use it.")
          .defaults_to("last component of `path`"),
      config::path_field("path", &S::path, "Hugging Face checkpoint directory (`config.json` and safetensors).")
          .required_as("the source's Hugging Face checkpoint directory")
          .defaults_to("required"),
      config::integer_field("replicas", &S::replicas, 1,
                            "Data-parallel copies of this teacher. Each copy serves different micro-batches."),
      config::integer_field("stages", &S::stages, 1,
                            "Pipeline stages of each replica: the source's layers cut into this many contiguous "
                            "stages, one rank each, balanced by parameter count (the plan is printed at start), so a "
                            "source too large for one rank runs. Rows are bit-identical to one stage's. At most the "
                            "model's layer count (checked when the model is loaded). A replica is then `stages` "
                            "ranks: `[topology].teacher_ranks` of the source is `replicas x stages`."),
      config::path_field("tokenizer", &S::tokenizer,
                         "Directory (or file) holding the source's `tokenizer.json` / `tokenizer.model`.")
          .defaults_to("= `path`"),
      config::choice_field("dtype", &S::dtype, train_dtype_names(),
                           "The precision of this source's forward pass: `fp32`, or `bf16`: its weights rounded "
                           "to bfloat16 (round to nearest even, what a bf16 checkpoint holds) and, on a GPU, the "
                           "linear layers' GEMMs on tensor cores (bf16 operands, fp32 accumulation); the CPU "
                           "computes in fp32 on the rounded weights. Recorded in its distribution cache."),
  };
  // The name becomes file names in [cache].dir (<name>.h5, vocab_map.<name>.h5): a name that is
  // not a plain file name would write outside it.
  s.check = [](const S& src, const IsSet& set) {
    const std::string& n = src.name;
    if (n.empty() || n == "." || n == ".." || n.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw Conflict({"name"},
                     fmt::format("\"{}\" is not a plain file name (it names the source's cache file {}.h5 in "
                                 "[cache].dir): it must not be empty, '.' or '..', nor contain '/' or '\\'{}",
                                 n, n, set("name") ? "" : " (the name defaults to the path's last component)"));
  };
  JobSectionTable t = lift(s, [](auto& c, size_t i) -> auto& { return c.sources[i]; }, true);
  t.finish = [](JobConfig& c, size_t i, const config::FieldOrigins& o, const std::string&) {
    SourceConfig& src = c.sources[i];
    if (!o.is_set("source", "name", i)) {
      fs::path p(src.path);
      src.name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
    }
    if (src.tokenizer.empty()) src.tokenizer = src.path;
  };
  return t;
}

JobSectionTable target_table() {
  using S = TargetConfig;
  Section<S> s{"target", "required; set exactly one of `path` and `init_from`"};
  s.fields = {
      config::path_field("path", &S::path, "Hugging Face checkpoint directory the student starts from.")
          .defaults_to("-"),
      config::string_field("init_from", &S::init_from,
                           "Name of a `[[source]]` the student starts from. The paper's target, Llama-2 7B, is also "
                           "one of its sources.")
          .defaults_to("-"),
      config::path_field("tokenizer", &S::tokenizer,
                         "The target tokenizer. It defines the positions that the fused distributions are aligned to.")
          .defaults_to("the model's"),
  };
  JobSectionTable t = lift(s, member(&JobConfig::target));
  t.required = "set [target] path or init_from";
  // The target: a checkpoint directory, or one of the sources (the original initializes the
  // target from Llama-2, which is also a source).
  t.check = [](const JobConfig& c, size_t, const IsSet& set) {
    const bool has_path = set("path"), has_init = set("init_from");
    if (has_path && has_init) throw Conflict({"path", "init_from"}, "set one of them, not both");
    if (!has_path && !has_init)
      throw Conflict({"path"},
                     "required field is missing (the student's Hugging Face checkpoint directory; or init_from = "
                     "\"<source name>\")");
    if (has_init && !c.find_source(c.target.init_from)) {
      std::vector<std::string_view> all;
      for (const auto& src : c.sources) all.push_back(src.name);
      const auto hint = closest_name(c.target.init_from, all);
      throw Conflict({"init_from"}, fmt::format("names no [[source]]: \"{}\" (sources: {}){}", c.target.init_from,
                                                all.empty() ? "none" : quoted_list(all),
                                                hint ? fmt::format(" (did you mean \"{}\"?)", *hint) : ""));
    }
  };
  t.finish = [](JobConfig& c, size_t, const config::FieldOrigins&, const std::string&) {
    if (!c.target.tokenizer.empty()) return;
    if (c.target.init_from.empty()) c.target.tokenizer = c.target.path;
    else if (const SourceConfig* s = c.find_source(c.target.init_from)) c.target.tokenizer = s->tokenizer;
  };
  return t;
}

JobSectionTable train_table() {
  using S = TrainConfig;
  Section<S> s{"train", ""};
  s.fields = {
      config::integer_field("micro_batch", &S::micro_batch, 1,
                            "Sequences per student rank per forward/backward pass. They run as one pass over their "
                            "concatenation, each sequence its own attention block with positions from 0, so memory "
                            "grows with it."),
      config::integer_field("global_batch", &S::global_batch, 1,
                            "Sequences per optimizer step (paper: 128 x 2048 tokens). Gradient accumulation = "
                            "`global_batch / (micro_batch * student_ranks)`, which must be a whole number."),
      config::integer_field("epochs", &S::epochs, 1, "Passes over the corpus (paper: 1)."),
      config::optional_integer_field("max_steps", &S::max_steps, 1,
                                     "Stop after this many optimizer steps. The schedule then ends here too."),
      config::integer_field("log_interval", &S::log_interval, 1, "Optimizer steps between metric lines."),
      config::choice_field("dtype", &S::dtype, train_dtype_names(),
                           "The student's weights as its forward and backward passes read them: `fp32`, or `bf16` (the "
                           "fp32 master rounded to bfloat16 before each pass, Megatron-LM's bf16 model copy; the "
                           "arithmetic stays fp32 on the CPU, on a GPU the linear layers' GEMMs take bf16 operands "
                           "on tensor cores with fp32 accumulation). Master weights, gradients and AdamW state are "
                           "fp32 either way (paper: bf16)."),
      config::choice_field("device", &S::device, device_names(),
                           "Where the models compute: `cuda` (a GPU per rank, by local rank), `cpu`, or `auto` (the "
                           "GPU when the binary has CUDA and one is found). On a GPU: the teachers' forward pass, "
                           "the student's forward and backward passes and its loss; in one process its optimizer step too, while the "
                           "MPI job's students step their ZeRO shard on the host."),
      config::integer_field("recompute_every", &S::recompute_every, 0,
                            "Activation recomputation: every N-th layer of the student keeps only its input and runs "
                            "its forward pass again in the backward pass (1: every layer, Megatron-LM's full "
                            "recomputation, about a third more compute; 0: keep every layer's activations). The "
                            "gradients are the same bits either way; `fusellm plan` shows the memory saved."),
  };
  return lift(s, member(&JobConfig::train));
}

// [topology].teacher_ranks: an integer for every source, or one entry per source.
JobField teacher_ranks_field() {
  JobField f{"teacher_ranks", Value::Kind::Array, "integer or [integer, ...]", "each source's `replicas x stages`",
             "Ranks per teacher group, one entry per `[[source]]` in order. A single integer applies to every "
             "source. Each entry must be that source's `replicas x stages` (a replica is one rank per pipeline stage)."};
  f.set = [](JobConfig& c, size_t, const Value& v, const config::SetContext&) {
    std::vector<int64_t> r;
    if (v.kind == Value::Kind::Integer) {
      r.assign(c.sources.size(), v.integer);
    } else if (v.kind == Value::Kind::Array) {
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (v.items[i].kind != Value::Kind::Integer)
          throw config::BadValue(fmt::format("expected an integer or an array of integers, found {} at index {}",
                                             v.items[i].found(), i));
        r.push_back(v.items[i].integer);
      }
    } else {
      throw config::BadValue("expected an integer or an array of integers (one per [[source]]), found " + v.found());
    }
    for (size_t i = 0; i < r.size(); ++i)
      if (r[i] > config::kMaxCount)
        throw config::BadValue(fmt::format("must be at most {} (2^31 - 1), found {}", config::kMaxCount, r[i]),
                               fmt::format("[{}]", i));
    c.topology.teacher_ranks = std::move(r);
  };
  f.get = [](const JobConfig& c, size_t) -> std::optional<Value> {
    std::vector<Value> items;
    for (int64_t r : c.topology.teacher_ranks) items.push_back(Value::of_integer(r));
    return Value::of_array(std::move(items));
  };
  f.written = [](const JobConfig&, size_t) { return true; };
  return f;
}

JobSectionTable topology_table() {
  using S = TopologyConfig;
  Section<S> s{"topology", "one MPI job; ranks per role. The MPI job needs `sum(teacher_ranks) + student_ranks` ranks"};
  s.fields = {
      config::integer_field("student_ranks", &S::student_ranks, 1, "Data-parallel student ranks (ZeRO-1 or -2: `zero_stage`)."),
      config::integer_field("zero_stage", &S::zero_stage, 1,
                            "How the students shard their training state, as DeepSpeed's ZeRO stages: 1 shards "
                            "AdamW's state (every student holds the whole gradient, reduce-scattered once a step); "
                            "2 shards the gradients too (each part of the gradient goes to its shards' owners as "
                            "the backward pass finishes it, every micro-batch): 4 bytes per parameter become 4 / "
                            "student_ranks, for more traffic.",
                            2)
          .typed("1 or 2"),
      config::integer_field("prefetch", &S::prefetch, 1,
                            "Micro-batches a teacher may run ahead of the students (credits)."),
  };
  JobSectionTable t = lift(s, member(&JobConfig::topology));
  t.fields.insert(t.fields.begin(), teacher_ranks_field());
  t.finish = [](JobConfig& c, size_t, const config::FieldOrigins& o, const std::string&) {
    if (!o.is_set("topology", "teacher_ranks"))
      for (const auto& s : c.sources) c.topology.teacher_ranks.push_back(s.replicas * s.stages);
  };
  return t;
}

JobSectionTable comm_table() {
  using S = CommConfig;
  Section<S> s{"comm", "the MPI job: how long a rank waits, and how a rank that died or stopped answering is noticed"};
  s.fields = {
      config::integer_field("timeout_seconds", &S::timeout_seconds, 0,
                            "Longest wait of any blocking call between ranks (a receive, a send, a collective). A "
                            "rank that waits longer ends the job, naming the peer or the collective. It must exceed "
                            "the longest step or checkpoint write of any rank, since a peer waits through it (a 7B "
                            "step takes minutes). `0` waits for ever."),
      config::integer_field("heartbeat_seconds", &S::heartbeat_seconds, 1,
                            "Interval of the heartbeat: every rank beats to rank 0 and rank 0 to every rank, from a "
                            "thread of its own, so a rank in a long step or checkpoint write still answers."),
      config::integer_field("dead_after_seconds", &S::dead_after_seconds, 2,
                            "A rank that sent no heartbeat for this long (killed, stopped, its node gone) is dead: "
                            "the rank that noticed names it and ends the job (MPI_Abort), so no rank hangs. Must "
                            "exceed `heartbeat_seconds`."),
  };
  s.check = [](const S& c, const IsSet&) {
    if (c.dead_after_seconds <= c.heartbeat_seconds)
      throw Conflict({"dead_after_seconds", "heartbeat_seconds"},
                     fmt::format("dead_after_seconds ({}) must exceed heartbeat_seconds ({}): a rank is declared dead "
                                 "only after missing at least one beat",
                                 c.dead_after_seconds, c.heartbeat_seconds));
  };
  return lift(s, member(&JobConfig::comm));
}

JobSectionTable checkpoint_table() {
  JobSectionTable t = lift(checkpoint_section(), member(&JobConfig::checkpoint));
  t.finish = [](JobConfig& c, size_t, const config::FieldOrigins&, const std::string&) {
    if (c.checkpoint.dir.empty())
      c.checkpoint.dir = (fs::path(c.job.output_dir) / "checkpoints").lexically_normal().string();
  };
  return t;
}

std::vector<JobSectionTable> make_sections() {
  std::vector<JobSectionTable> all;
  all.push_back(job_table());
  all.push_back(source_table());
  all.push_back(target_table());
  all.push_back(lift(corpus_section(), member(&JobConfig::corpus)));
  all.push_back(lift(distill_section(), member(&JobConfig::distill)));
  all.push_back(lift(optim_section(), member(&JobConfig::optim)));
  all.push_back(train_table());
  all.push_back(checkpoint_table());
  all.push_back(topology_table());
  all.push_back(comm_table());
  all.push_back(lift(cache_section(), member(&JobConfig::cache)));
  return all;
}

// A Markdown table cell: '|' would end it.
std::string cell(std::string_view s) {
  std::string o;
  for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return o;
}

}  // namespace

std::string_view train_dtype_name(DType d) { return train_dtype_names().name(d); }

std::string_view device_name(Device d) { return device_names().name(d); }

Device device_from_name(std::string_view name) { return device_names().parse(name); }

const JobField* JobSectionTable::find(std::string_view key) const {
  for (const auto& f : fields)
    if (f.key == key) return &f;
  return nullptr;
}

std::vector<std::string_view> JobSectionTable::keys() const {
  std::vector<std::string_view> k;
  for (const auto& f : fields) k.push_back(f.key);
  return k;
}

std::string JobSectionTable::label(size_t index, std::string_view key) const {
  const std::string table = array_of_tables ? fmt::format("{}[{}]", name, index) : fmt::format("[{}]", name);
  return key.empty() ? table : table + "." + std::string(key);
}

const std::vector<JobSectionTable>& job_sections() {
  static const std::vector<JobSectionTable> all = make_sections();
  return all;
}

const JobSectionTable* find_job_section(std::string_view name) {
  for (const auto& s : job_sections())
    if (s.name == name) return &s;
  return nullptr;
}

std::string job_fields_markdown() {
  std::string o;
  for (const auto& s : job_sections()) {
    o += fmt::format("\n### `{}`{}\n\n", s.array_of_tables ? fmt::format("[[{}]]", s.name) : fmt::format("[{}]", s.name),
                     s.note.empty() ? "" : fmt::format(" ({})", s.note));
    o += "| field | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& f : s.fields)
      o += fmt::format("| `{}` | {} | {} | {} |\n", f.key, cell(f.type), cell(f.default_doc), cell(f.meaning));
  }
  return o;
}

}  // namespace fusellm
