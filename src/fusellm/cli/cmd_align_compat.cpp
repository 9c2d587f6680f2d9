// fusellm align-compat: what each of fusellm's deviations from the original FuseLLM alignment
// changes on a job's corpus (README, "Alignment: where fusellm differs from the original FuseLLM
// code").
//
//   fusellm align-compat --job J [--set section.key=value ...] --source NAME [--method em|mined|bytespan] [--limit N]
//
// For the job's segments (as `teach` cuts them) and one source, it aligns and applies the
// source's top-k rows under fusellm's rules, then under the original's rule for each deviation
// alone (align/original_rules.hpp) and under all of them, and counts what changes against
// fusellm's rules: vocabulary-map entries (source tokens whose exact or full target differs) and
// target positions whose aligned row (ids or probabilities) differs, of those the ones whose
// keep/fall-back decision differs and the ones at the last position of a segment. Runs both
// models (the target's rows feed the empty_row rule).
#include <Kokkos_Core.hpp>
#include <cstdio>
#include <optional>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/align/vocab_mapping.hpp"
#include "fusellm/cli/commands.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/fusion/kokkos_glue.hpp"
#include "fusellm/fusion/topk_softmax.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/teach/job_tokenizers.hpp"
#include "fusellm/teach/teach.hpp"

namespace fusellm::cli {
namespace {

struct CompatOptions {
  JobArgs job;
  std::string source, method;
  int64_t limit = -1;
};

// Top-k rows of `model` over each segment's ids, concatenated.
fusion::HostRows model_rows(const CausalLM& model, const std::vector<std::vector<int32_t>>& segs, int64_t total,
                            const fusion::TopkParams& tp, const std::string& name) {
  fusion::HostRows all(name, total, tp.k);
  int64_t r = 0;
  for (const auto& ids : segs) {
    const Tensor logits = model.forward(ids);
    const int64_t T = int64_t(ids.size());
    const fusion::HostRows one = fusion::topk_softmax(logits.span(), T, model.info().vocab_size, tp, name);
    for (int64_t i = 0; i < T; ++i, ++r)
      for (int64_t j = 0; j < tp.k; ++j) {
        all.ids(r, j) = one.ids(i, j);
        all.probs(r, j) = one.probs(i, j);
      }
  }
  return all;
}

std::string pct(int64_t n, int64_t of) { return fmt::format("{:6d} ({:5.2f}%)", n, of > 0 ? 100.0 * double(n) / double(of) : 0.0); }

// The job's segments tokenized by the source and the target, as alignment batches.
struct CompatSegments {
  std::vector<std::vector<int32_t>> sids, tids;
  align::DocBatch sb, tb;
};

CompatSegments read_segments(const CompatOptions& o, const JobConfig& job, const JobTokenizers& toks,
                             const SourceConfig& src) {
  const Tokenizer& stok = toks.tokenizer(src.tokenizer);
  const Tokenizer& ttok = toks.tokenizer(job.target.tokenizer);
  const align::TokenVocab& svocab = toks.vocabs[toks.index(src.tokenizer)];
  const align::TokenVocab& tvocab = toks.vocabs[toks.index(job.target.tokenizer)];
  const Segmenter seg = toks.segmenter(job);  // the stream holds a pointer to it
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  CompatSegments c;
  Segment s;
  while ((o.limit < 0 || int64_t(c.sids.size()) < o.limit) && stream.next(s)) {
    c.sids.push_back(stok.encode(s.text, true).ids);
    c.tids.push_back(ttok.encode(s.text, true).ids);
    c.sb.add(svocab, c.sids.back(), s.text);
    c.tb.add(tvocab, c.tids.back(), s.text);
  }
  return c;
}

struct RulesResult {
  align::VocabMapping map;
  fusion::HostRows rows;
  std::vector<uint8_t> status;
};

// One table row: how much of the mapping and of the aligned rows `r` changes against `base`.
void print_rule_effects(const std::string& name, const RulesResult& r, const RulesResult& base,
                        const align::TokenVocab& svocab, const std::vector<uint8_t>& last, int64_t entries) {
  const int64_t T = int64_t(last.size());
  int64_t map_changed = 0, pos_changed = 0, decision_changed = 0, last_changed = 0;
  for (int64_t i = 0; i < svocab.size(); ++i)
    map_changed += !svocab.hole(i) && (r.map.full[size_t(i)] != base.map.full[size_t(i)] ||
                                       r.map.exact[size_t(i)] != base.map.exact[size_t(i)]);
  for (int64_t t = 0; t < T; ++t) {
    bool diff = false;
    for (int64_t j = 0; j < r.rows.k() && !diff; ++j)
      diff = r.rows.ids(t, j) != base.rows.ids(t, j) || r.rows.probs(t, j) != base.rows.probs(t, j);
    pos_changed += diff;
    last_changed += diff && last[size_t(t)];
    decision_changed += align::align_kept(r.status[size_t(t)]) != align::align_kept(base.status[size_t(t)]);
  }
  std::printf("%-16s %-22s %-22s %-22s %s\n", name.c_str(), pct(map_changed, entries).c_str(),
              pct(pos_changed, T).c_str(), pct(decision_changed, T).c_str(), pct(last_changed, T).c_str());
}

void run(const CompatOptions& o) {
  const JobConfig job = load_job(o.job);
  const SourceConfig* src = job.find_source(o.source);
  if (!src) fail("{}: --source '{}': the job has no [[source]] of that name", job.file, o.source);
  const align::AlignMethod method = o.method.empty() ? job.distill.alignment : align::parse_align_method(o.method);
  const JobTokenizers toks = JobTokenizers::load(job);
  const align::TokenVocab& svocab = toks.vocabs[toks.index(src->tokenizer)];
  const align::TokenVocab& tvocab = toks.vocabs[toks.index(job.target.tokenizer)];
  if (svocab.fingerprint_hex() == tvocab.fingerprint_hex())
    fail("[[source]] '{}' has the target's tokenizer: teach does not align it (nothing to compare)", o.source);
  const CompatSegments c = read_segments(o, job, toks, *src);
  Kokkos::ScopeGuard kokkos;
  const auto smodel = CausalLM::load(src->path);
  const auto tmodel = CausalLM::load(job.target.path.empty() ? job.find_source(job.target.init_from)->path
                                                             : job.target.path);
  fusion::TopkParams tp;
  tp.k = int(job.distill.top_k);
  tp.temperature = float(job.distill.temperature);
  const auto srows = fusion::rows_to_device(model_rows(*smodel, c.sids, c.sb.tokens(), tp, o.source));
  const auto trows = fusion::rows_to_device(model_rows(*tmodel, c.tids, c.tb.tokens(), tp, "target"));
  const int64_t V = smodel->info().vocab_size;
  auto run_rules = [&](const align::OriginalRules& rules) {
    RulesResult r{align::VocabMapping::build(svocab, tvocab, V, {}, rules), {}, {}};
    const align::Aligner<Kokkos::DefaultExecutionSpace> aligner(svocab, tvocab, &r.map, size_t(256) << 20, rules);
    const auto al = aligner.align(c.sb, c.tb, method);
    const auto out = aligner.apply(al, c.tb, srows, method, false, rules.empty_row ? &trows : nullptr);
    r.rows = fusion::rows_to_host(out.rows);
    r.status = fusion::to_std_vector(out.status);
    return r;
  };
  const RulesResult base = run_rules({});
  int64_t entries = 0;
  for (int64_t i = 0; i < svocab.size(); ++i) entries += !svocab.hole(i);
  const int64_t T = c.tb.tokens();
  std::printf("%s -> target, %s alignment: %zu segments, %lld source-vocabulary entries, %lld target positions\n",
              o.source.c_str(), align::to_string(method), c.sids.size(), (long long)entries, (long long)T);
  std::printf("%-16s %-22s %-22s %-22s %s\n", "original rule", "map entries changed", "positions changed",
              "keep/fall-back changed", "last positions changed");
  std::vector<uint8_t> last(size_t(T), 0);
  for (int64_t d = 0; d < c.tb.docs(); ++d)
    if (c.tb.offsets[size_t(d) + 1] > c.tb.offsets[size_t(d)]) last[size_t(c.tb.offsets[size_t(d) + 1] - 1)] = 1;
  std::vector<std::string> names(align::OriginalRules::kNames.begin(), align::OriginalRules::kNames.end());
  names.push_back("all");
  for (const auto& name : names)
    print_rule_effects(name, run_rules(align::OriginalRules::parse(name)), base, svocab, last, entries);
}

}  // namespace

void add_align_compat(CLI::App& app) {
  auto o = std::make_shared<CompatOptions>();
  auto* sub = app.add_subcommand(
      "align-compat", "count what each of fusellm's deviations from the original FuseLLM alignment changes on a job");
  add_job_options(sub, o->job);
  sub->add_option("--source", o->source, "the [[source]] to align")->required();
  sub->add_option("--method", o->method, "em | mined | bytespan (default: the job's [distill].alignment)");
  sub->add_option("--limit", o->limit, "only the first N segments");
  sub->callback([o] { run(*o); });
}

}  // namespace fusellm::cli
