// fusellm align / fusellm vocab-map: debugging views for a new (source, target) pair.
//
//   fusellm align --source S --target T FILE [--method em|mined|bytespan|all] [--position N] [-k K]
//     side by side: how FILE's target tokens align to the source's under each method, the
//     count of each decision, and, with --position, the source's top-k at the aligned source
//     position (when S holds a model) and where each id lands in the target vocabulary.
//   fusellm vocab-map --source S --target T [--out FILE.h5] [--show N]
//     builds (or loads, when --out exists and matches) the MinED vocabulary mapping and prints
//     its coverage: share of source tokens mapped exactly, by MinED, and unmapped.
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "fusellm/align/align_report.hpp"
#include "fusellm/align/align_tokens.hpp"
#include "fusellm/align/vocab_mapping.hpp"
#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::cli {

namespace fs = std::filesystem;

namespace {

std::string tokenizer_json(const std::string& dir) {
  const fs::path p(dir);
  if (fs::is_regular_file(p)) return p.string();
  if (fs::exists(p / "tokenizer.json")) return (p / "tokenizer.json").string();
  fail("{}: no tokenizer.json (fusellm align/vocab-map read vocabularies from tokenizer.json)", dir);
}

struct AlignOptions {
  std::string source, target, file, method = "all", mapping;
  int64_t position = -1;
  int k = 10;
};

// The source's top-k at one of its positions (softmax of the k largest logits, as the teachers
// keep them), each id shown with its token and the target id/token the mapping sends it to.
void print_topk(const AlignOptions& o, const Tokenizer& stok, const Tokenizer& ttok,
                const align::VocabMapping& map, std::span<const int32_t> src_ids, int64_t spos, bool exact_only) {
  if (!fs::exists(fs::path(o.source) / "config.json")) {
    std::printf("(no model in %s: top-k not shown)\n", o.source.c_str());
    return;
  }
  const auto model = CausalLM::load(o.source);
  const Tensor logits = model->forward(src_ids);
  const auto row = logits.row(spos);
  std::vector<int32_t> idx(row.size());
  std::iota(idx.begin(), idx.end(), 0);
  const int k = std::min<int>(o.k, int(row.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  double z = 0;
  for (int i = 0; i < k; ++i) z += std::exp(double(row[idx[i]]) - row[idx[0]]);
  std::printf("source top-%d at source position %lld (next-token distribution), mapped to the target:\n", k,
              (long long)spos);
  std::printf("  %-8s %-20s %8s   %-8s %s\n", "src id", "src token", "prob", "tgt id", "tgt token");
  for (int i = 0; i < k; ++i) {
    const int32_t s = idx[i];
    const double p = std::exp(double(row[s]) - row[idx[0]]) / z;
    const int32_t t = s < map.size() ? (exact_only ? map.exact[s] : map.full[s]) : -1;
    std::printf("  %-8d %-20s %8.4f   %-8s %s\n", s, align::display_token(stok.id_to_token(s)).c_str(), p,
                t < 0 ? "-" : std::to_string(t).c_str(), t < 0 ? "(dropped)" : align::display_token(ttok.id_to_token(t)).c_str());
  }
}

}  // namespace

void add_align(CLI::App& app) {
  auto o = std::make_shared<AlignOptions>();
  auto* sub = app.add_subcommand("align", "show how a text's tokens align between a source and the target");
  sub->add_option("--source", o->source, "source checkpoint or tokenizer directory")->required();
  sub->add_option("--target", o->target, "target checkpoint or tokenizer directory")->required();
  sub->add_option("file", o->file, "UTF-8 text file")->required();
  sub->add_option("--method", o->method, "em | mined | bytespan | all")
      ->capture_default_str()
      ->check(CLI::IsMember({"em", "mined", "bytespan", "all"}));
  sub->add_option("--mapping", o->mapping, "vocabulary-mapping cache (HDF5; built when missing)");
  sub->add_option("--position", o->position, "also show the source top-k mapped at this target position")
      ->check(at_least(0, "a target token position"));
  sub->add_option("-k", o->k, "top-k size for --position")->capture_default_str()->check(at_least(1, "entries shown"));
  sub->callback([o] {
    const std::string text = read_utf8_file(o->file);
    const auto stok = Tokenizer::load(o->source);
    const auto ttok = Tokenizer::load(o->target);
    const auto svocab = align::TokenVocab::from_tokenizer_json(tokenizer_json(o->source));
    const auto tvocab = align::TokenVocab::from_tokenizer_json(tokenizer_json(o->target));
    std::vector<align::AlignMethod> methods;
    if (o->method == "all")
      methods = {align::AlignMethod::kEM, align::AlignMethod::kMinED, align::AlignMethod::kByteSpan};
    else
      methods = {align::parse_align_method(o->method)};
    const auto sids = stok->encode(text, true).ids;
    const auto tids = ttok->encode(text, true).ids;
    if (o->position >= int64_t(tids.size()))
      fail("--position {}: the text has {} target tokens", o->position, tids.size());
    Kokkos::ScopeGuard kokkos;
    const auto map = o->mapping.empty() ? align::VocabMapping::build(svocab, tvocab)
                                        : align::VocabMapping::load_or_build(o->mapping, svocab, tvocab);
    for (const auto m : methods) {
      const auto al = align::align_tokens(svocab, sids, tvocab, tids, m, &map, text);
      std::printf("== %s: %zu target tokens, %zu source tokens\n", align::to_string(m), tids.size(), sids.size());
      std::printf("%s", align::render_alignment(svocab, sids, 0, tvocab, tids, 0, al).c_str());
      std::printf("%s\n", align::render_summary(align::summarize(al)).c_str());
      if (o->position >= 0) {
        const int32_t s = al.source(o->position);
        std::printf("target position %lld: %s\n", (long long)o->position, align::status_name(al.status[o->position]));
        if (s >= 0) print_topk(*o, *stok, *ttok, map, sids, s, m == align::AlignMethod::kEM);
      }
    }
  });
}

void add_vocab_map(CLI::App& app) {
  struct Opts {
    std::string source, target, out;
    int64_t show = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("vocab-map", "build or inspect the MinED vocabulary mapping of a pair");
  sub->add_option("--source", o->source, "source checkpoint or tokenizer directory")->required();
  sub->add_option("--target", o->target, "target checkpoint or tokenizer directory")->required();
  sub->add_option("--out", o->out, "HDF5 cache: loaded when it exists and matches, else built and saved");
  sub->add_option("--show", o->show, "print the first N source tokens mapped by MinED")
      ->check(at_least(0, "a count of tokens"));
  sub->callback([o] {
    const auto svocab = align::TokenVocab::from_tokenizer_json(tokenizer_json(o->source));
    const auto tvocab = align::TokenVocab::from_tokenizer_json(tokenizer_json(o->target));
    int64_t model_vocab = 0;
    if (fs::exists(fs::path(o->source) / "config.json"))
      model_vocab = HFConfig::load(o->source).get_int("vocab_size", 0);
    Kokkos::ScopeGuard kokkos;
    const auto map = o->out.empty() ? align::VocabMapping::build(svocab, tvocab, model_vocab)
                                    : align::VocabMapping::load_or_build(o->out, svocab, tvocab, model_vocab);
    std::printf("%s -> %s: %lld source ids, built in %.2f s\n", o->source.c_str(), o->target.c_str(),
                (long long)map.size(), map.build_seconds);
    std::printf("%s", align::render_coverage(map).c_str());
    int64_t shown = 0;
    for (int64_t s = 0; s < map.size() && shown < o->show; ++s) {
      if (map.kind[s] != align::kMapMinED) continue;
      std::printf("  %6lld %-24s -> %6d %-24s (distance %d)\n", (long long)s,
                  align::display_token(svocab.tokens[s]).c_str(), map.full[s],
                  align::display_token(tvocab.tokens[map.full[s]]).c_str(), map.dist[s]);
      ++shown;
    }
    if (!o->out.empty()) std::printf("cache: %s\n", o->out.c_str());
  });
}

}  // namespace fusellm::cli
