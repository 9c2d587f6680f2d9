// fusellm index --job J: cuts the job's corpus into its segments once and writes the segment index
// (teach/segment_index.hpp) that every rank of the online job then loads instead of cutting the
// corpus itself: for a large corpus, run it before the job (`--limit N`: the first N segments).
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdio>
#include <memory>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/teach/job_tokenizers.hpp"

namespace fusellm::cli {

void add_index(CLI::App& app) {
  auto* sub = app.add_subcommand("index", "cut a job's corpus into segments once and write its segment index");
  auto args = std::make_shared<JobArgs>();
  auto limit = std::make_shared<int64_t>(-1);
  add_job_options(sub, *args);
  sub->add_option("--limit", *limit, "only the first N segments (as `train --limit N`)");
  sub->callback([args, limit] {
    const JobConfig job = load_job(*args);
    const JobTokenizers toks = JobTokenizers::load(job, false);  // cutting needs no vocabulary
    const CorpusSegments s = CorpusSegments::load_or_cut(job, toks, *limit, true);
    std::printf("%s: %lld segments (%s)\n", segment_index_path(job).c_str(), static_cast<long long>(s.count()),
                s.loaded_index() ? "already there and valid for the job" : "cut and written");
  });
}

}  // namespace fusellm::cli
