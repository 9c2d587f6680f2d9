#include "fusellm/teach/teach.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/teach/teacher.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

const SourceConfig& find_source_or_fail(const JobConfig& job, const std::string& name) {
  if (const SourceConfig* s = job.find_source(name)) return *s;
  std::string names;
  for (const auto& s : job.sources) names += (names.empty() ? "" : ", ") + ("'" + s.name + "'");
  fail("{}: --source '{}': the job has no [[source]] of that name (it has {})", job.file, name,
       names.empty() ? "none" : names);
}

int64_t source_index(const JobConfig& job, const std::string& name) {
  for (size_t i = 0; i < job.sources.size(); ++i)
    if (job.sources[i].name == name) return int64_t(i);
  return -1;
}

void require_cache_dir(const JobConfig& job) {
  if (job.cache.dir.empty())
    fail("{}: [cache].dir: not set; offline mode (`fusellm teach`, then `fusellm train` over the caches) "
         "needs a directory for the teachers' distribution caches",
         job.file);
}

std::string canonical(const std::string& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

CacheProvenance provenance_from(const JobConfig& job, const SourceConfig& src, const std::string& src_fp,
                                const std::string& tgt_fp, const std::vector<std::string>& all_fps) {
  CacheProvenance p;
  p.teacher = src.name;
  p.teacher_index = source_index(job, src.name);
  p.teacher_path = src.path;
  p.teacher_tokenizer = src.tokenizer;
  p.teacher_tokenizer_fingerprint = src_fp;
  p.target_tokenizer = job.target.tokenizer;
  p.target_tokenizer_fingerprint = tgt_fp;
  p.max_tokens = Segmenter::max_tokens_of(job.corpus);
  std::set<std::string> uniq(all_fps.begin(), all_fps.end());
  for (const auto& f : uniq) p.segmenter += f + ",";
  p.segmenter += fmt::format("max={}", p.max_tokens);
  p.corpus = canonical(job.corpus.path);
  p.k = job.distill.top_k;
  p.temperature = job.distill.temperature;
  p.alignment = align::to_string(job.distill.alignment);
  p.onehot_compat = job.distill.onehot_compat;
  p.align_compat = job.distill.align_compat.to_string();
  p.keep_tail = job.distill.keep_tail;
  p.teacher_dtype = std::string(train_dtype_name(src.dtype));
  p.version = fusellm_version();
  p.job_file = job.file;
  return p;
}

}  // namespace

std::string cache_path_for(const JobConfig& job, const std::string& source) {
  return (fs::path(job.cache.dir) / (source + ".h5")).string();
}
std::string vocab_map_path_for(const JobConfig& job, const std::string& source) {
  if (job.cache.dir.empty()) return "";  // online: built in memory, not saved
  return (fs::path(job.cache.dir) / ("vocab_map." + source + ".h5")).string();
}

CacheProvenance expected_provenance(const JobConfig& job, const std::string& source) {
  const SourceConfig& src = find_source_or_fail(job, source);
  std::vector<std::string> fps;
  for (const auto& t : job_tokenizers(job))
    fps.push_back(with_context(fmt::format("{}: tokenizer {}", job.file, t),
                               [&] { return align::TokenVocab::from_tokenizer_json(t).fingerprint_hex(); }));
  const auto fp = [&](const std::string& path) {
    const auto all = job_tokenizers(job);
    return fps[size_t(std::find(all.begin(), all.end(), path) - all.begin())];
  };
  return provenance_from(job, src, fp(src.tokenizer), fp(job.target.tokenizer), fps);
}

void check_offline_caches(const JobConfig& job, bool require_complete) {
  require_cache_dir(job);
  for (size_t i = 0; i < job.sources.size(); ++i) {
    const auto& s = job.sources[i];
    const std::string cache = cache_path_for(job, s.name);
    const std::string map = vocab_map_path_for(job, s.name);
    if (!fs::exists(cache))
      fail("{}: [[source]] '{}': no distribution cache {} (run `fusellm teach --job {} --source {}`)",
           job.where("source", "name", i), s.name, cache, job.file, s.name);
    if (!fs::exists(map))
      fail("{}: [[source]] '{}': vocabulary mapping {} is missing (run `fusellm teach --job {} --source {}`)",
           job.where("source", "name", i), s.name, map, job.file, s.name);
    const CacheProvenance cached = DistributionCacheReader::read_provenance(cache);
    check_provenance(cache, cached, expected_provenance(job, s.name), job.origins);
    if (require_complete) {
      DistributionCacheReader r(cache);
      if (!r.complete())
        fail("{}: [[source]] '{}': the distribution cache {} holds {} segments, its teach run did not finish "
             "(run `fusellm teach --job {} --source {}` again to continue)",
             job.where("source", "name", i), s.name, cache, r.segments(), job.file, s.name);
    }
  }
}

namespace {

// k beyond the source's vocabulary is refused before the cache file is created: the top-k kernel
// refuses it only after the model has loaded, and a large k failed first inside HDF5 (a chunk of
// 4096 rows x k).
void check_top_k(const JobConfig& job, const SourceConfig& src) {
  const int64_t k = job.distill.top_k;
  const int64_t src_vocab_size = HFConfig::load(src.path).get_int("vocab_size", 0);
  if (src_vocab_size > 0 && k > src_vocab_size)
    fail("{}: [distill].top_k = {} exceeds the vocabulary of [[source]] '{}' ({} tokens, {}/config.json)",
         job.where("distill", "top_k"), k, src.name, src_vocab_size, src.path);
}

// Moves `stream` past the segments the cache already holds.
void skip_committed(SegmentStream& stream, int64_t n, const std::string& cache_path) {
  Segment s;
  for (int64_t i = 0; i < n; ++i)
    if (!stream.next(s))
      fail("{}: holds {} segments but the corpus now gives only {} (the corpus changed; delete the cache)",
           cache_path, n, i);
}

// A progress line on stderr every few seconds, and one at the end.
class Progress {
 public:
  Progress(const std::string& source, bool on) : source_(source), on_(on), t0_(Clock::now()), last_(t0_) {}
  double seconds() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  void report(const TeachResult& res, bool final) {
    const auto now = Clock::now();
    if (!on_ || (!final && now - last_ < std::chrono::seconds(2))) return;
    last_ = now;
    const double sec = std::chrono::duration<double>(now - t0_).count();
    std::fprintf(stderr, "teach %s: %lld segments (%lld new), %.1f segments/s, %.0f source tokens/s%s\n",
                 source_.c_str(), (long long)res.segments, (long long)res.new_segments,
                 sec > 0 ? double(res.new_segments) / sec : 0.0, sec > 0 ? double(res.source_tokens) / sec : 0.0,
                 final ? (res.complete ? ", complete" : ", stopped at --limit") : "");
  }

 private:
  std::string source_;
  bool on_;
  Clock::time_point t0_, last_;
};

// The batch's rows into the cache, committed; the counters of `res` follow.
void commit(const Teacher& teacher, std::vector<Segment>& batch, DistributionCacheWriter& cache, TeachResult& res) {
  if (batch.empty()) return;
  const std::vector<TeacherRows> rows = teacher.rows(batch);
  for (const TeacherRows& r : rows) {
    for (const uint8_t st : r.status) (align::align_kept(st) ? res.kept_rows : res.fallback_rows)++;
    res.target_tokens += r.rows();
    res.source_tokens += r.source_tokens;
  }
  cache.append(rows);
  res.segments = cache.segments_done();
  batch.clear();
}

// The segments after the committed ones through the teacher into the cache, a batch at a time, up
// to --limit; true when the corpus ended (the cache is then complete).
bool run_batches(const Teacher& teacher, SegmentStream& stream, DistributionCacheWriter& cache,
                 const TeachOptions& opt, TeachResult& res, Progress& progress) {
  std::vector<Segment> batch;
  Segment s;
  bool ended = false;
  for (;;) {
    if (opt.limit >= 0 && res.resumed_from + res.new_segments >= opt.limit) {
      ended = !stream.next(s);  // complete only when the corpus ends right there
      break;
    }
    if (!stream.next(s)) {
      ended = true;
      break;
    }
    batch.push_back(std::move(s));
    ++res.new_segments;
    if (int64_t(batch.size()) >= std::max<int64_t>(1, opt.batch_segments)) {
      commit(teacher, batch, cache, res);
      progress.report(res, false);
    }
  }
  commit(teacher, batch, cache, res);
  return ended;
}

void log_corpus(const std::string& source, const CorpusStats& c) {
  if (c.skipped_blank > 0 || c.invalid_utf8_docs > 0)
    spdlog::info("teach {}: skipped {} empty or whitespace-only documents; replaced invalid UTF-8 in {} documents ({} "
                 "sequences{}{})", source, c.skipped_blank, c.invalid_utf8_docs, c.replaced_sequences,
                 c.first_invalid_utf8.empty() ? "" : ", the first at ", c.first_invalid_utf8);
}

}  // namespace

TeachResult teach(const JobConfig& job, const TeachOptions& opt) {
  std::optional<Kokkos::ScopeGuard> kokkos;  // first: outlives every View below
  if (!Kokkos::is_initialized() && !opt.init_kokkos) fail("teach: Kokkos is not initialized");
  require_cache_dir(job);
  const SourceConfig& src = find_source_or_fail(job, opt.source);

  // ---- everything that can be refused, before any model work --------------------------------------
  const auto toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job));
  const auto& fps = toks->fingerprints;
  const CacheProvenance prov =
      provenance_from(job, src, fps[toks->index(src.tokenizer)], fps[toks->index(job.target.tokenizer)], fps);
  check_top_k(job, src);
  TeachResult res;
  res.cache_path = cache_path_for(job, src.name);
  DistributionCacheWriter cache(res.cache_path, prov, &job.origins);
  res.resumed_from = res.segments = cache.segments_done();
  if (cache.complete() || (opt.limit >= 0 && cache.segments_done() >= opt.limit)) {
    res.complete = cache.complete();
    spdlog::info("teach {}: {} already holds {} segments{}", src.name, res.cache_path, res.segments,
                 cache.complete() ? " (complete)" : "");
    return res;
  }

  // ---- the teacher over the segments after the committed ones ---------------------------------------
  if (!Kokkos::is_initialized()) kokkos.emplace();
  const Teacher teacher(job, src.name, toks, vocab_map_path_for(job, src.name));
  const Segmenter seg = toks->segmenter(job);
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  skip_committed(stream, res.resumed_from, res.cache_path);
  if (res.resumed_from > 0) spdlog::info("teach {}: continuing after segment {}", src.name, res.resumed_from);
  if (teacher.identity())
    spdlog::info("teach {}: the source has the target's tokenizer: no alignment, its top-{} rows are cached as they are",
                 src.name, teacher.k());
  Progress progress(src.name, opt.progress);
  const bool ended = run_batches(teacher, stream, cache, opt, res, progress);
  res.corpus = stream.corpus_stats();
  res.split_documents = stream.split_documents();
  if (ended) {
    cache.finish(res.corpus.documents, res.corpus.skipped_blank, res.corpus.invalid_utf8_docs);
    res.complete = true;
  }
  cache.close();
  res.seconds = progress.seconds();
  progress.report(res, true);
  log_corpus(src.name, res.corpus);
  return res;
}

}  // namespace fusellm
