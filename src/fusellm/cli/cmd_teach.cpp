// fusellm teach --job J [--set section.key=value ...] --source NAME [--limit N]: offline mode's first step (DESIGN.md section 2;
// the original FuseLLM's logits-caching script): run one source model over the corpus's segments
// and write its aligned sparse top-k distributions and per-segment CE to <[cache].dir>/NAME.h5.
// Run it once per [[source]]; an interrupted run continues where it stopped. A summary goes to
// stdout, progress (segments/s, tokens/s) to stderr.
#include <cstdio>
#include <memory>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/teach.hpp"

namespace fusellm::cli {

namespace {
struct TeachCli {
  JobArgs job;
  std::string source;
  int64_t limit = -1;
  int64_t batch = 16;
  std::string cache_dir;
  bool quiet = false;
};
}  // namespace

void add_teach(CLI::App& app) {
  auto o = std::make_shared<TeachCli>();
  auto* sub = app.add_subcommand("teach", "write one source model's aligned top-k distributions to its cache (offline mode)");
  add_job_options(sub, o->job);
  sub->add_option("--source", o->source, "the [[source]] to run")->required();
  sub->add_option("--limit", o->limit, "only the first N segments of the corpus (a later run can continue)")
      ->check(at_least(1, "segments to teach"));
  sub->add_option("--cache-dir", o->cache_dir, "the caches' directory (overrides the job's [cache].dir)");
  sub->add_option("--batch", o->batch, "segments per committed batch (default 16)")
      ->check(at_least(1, "segments per batch"));
  sub->add_flag("-q,--quiet", o->quiet, "no progress lines");
  sub->callback([o] {
    JobConfig job = load_job(o->job);
    if (!o->cache_dir.empty()) job.cache.dir = o->cache_dir;
    TeachOptions opt;
    opt.init_kokkos = true;  // after the job and the cache are checked
    opt.source = o->source;
    opt.limit = o->limit;
    opt.batch_segments = o->batch;
    opt.progress = !o->quiet;
    const TeachResult r = teach(job, opt);
    std::printf("cache: %s\n", r.cache_path.c_str());
    std::printf("segments: %lld (%lld new, %lld before)%s\n", (long long)r.segments, (long long)r.new_segments,
                (long long)r.resumed_from, r.complete ? ", complete" : ", not complete");
    if (r.new_segments > 0) {
      std::printf("tokens: %lld source, %lld target; target positions kept %lld, one-hot %lld\n",
                  (long long)r.source_tokens, (long long)r.target_tokens, (long long)r.kept_rows,
                  (long long)r.fallback_rows);
      std::printf("speed: %.1f segments/s, %.0f source tokens/s (%.1f s)\n", double(r.new_segments) / r.seconds,
                  double(r.source_tokens) / r.seconds, r.seconds);
      std::printf("corpus: %lld documents read (%lld cut into several segments), %lld empty/whitespace skipped, "
                  "%lld with invalid UTF-8 replaced%s%s\n",
                  (long long)r.corpus.documents, (long long)r.split_documents, (long long)r.corpus.skipped_blank,
                  (long long)r.corpus.invalid_utf8_docs, r.corpus.first_invalid_utf8.empty() ? "" : " (the first at ",
                  r.corpus.first_invalid_utf8.empty() ? "" : (r.corpus.first_invalid_utf8 + ")").c_str());
    }
  });
}

}  // namespace fusellm::cli
