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

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/align/vocab_mapping.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/fusion/sequence_ce.hpp"
#include "fusellm/fusion/topk_softmax.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/segmenter.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

std::string where(const JobConfig& job, const std::string& section, const std::string& key, int64_t index = 0) {
  const std::string w = job.origins.where(section, key, size_t(index));
  return w.empty() ? job.file : w;
}

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
  p.version = fusellm_version();
  p.job_file = job.file;
  return p;
}

// The target model's checkpoint: [target].path, or the [[source]] it starts from.
std::string target_model_path(const JobConfig& job) {
  if (!job.target.path.empty()) return job.target.path;
  const SourceConfig* s = job.find_source(job.target.init_from);
  if (!s) fail("{}: [target].init_from '{}': no [[source]] of that name", job.file, job.target.init_from);
  return s->path;
}

}  // namespace

std::vector<std::string> job_tokenizers(const JobConfig& job) {
  std::vector<std::string> out;
  auto add = [&](const std::string& p) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  for (const auto& s : job.sources) add(s.tokenizer);
  add(job.target.tokenizer);
  return out;
}

std::string cache_path_for(const JobConfig& job, const std::string& source) {
  return (fs::path(job.cache.dir) / (source + ".h5")).string();
}
std::string vocab_map_path_for(const JobConfig& job, const std::string& source) {
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
           where(job, "source", "name", int64_t(i)), s.name, cache, job.file, s.name);
    if (!fs::exists(map))
      fail("{}: [[source]] '{}': vocabulary mapping {} is missing (run `fusellm teach --job {} --source {}`)",
           where(job, "source", "name", int64_t(i)), s.name, map, job.file, s.name);
    const CacheProvenance cached = DistributionCacheReader::read_provenance(cache);
    check_provenance(cache, cached, expected_provenance(job, s.name), job.origins);
    if (require_complete) {
      DistributionCacheReader r(cache);
      if (!r.complete())
        fail("{}: [[source]] '{}': the distribution cache {} holds {} segments, its teach run did not finish "
             "(run `fusellm teach --job {} --source {}` again to continue)",
             where(job, "source", "name", int64_t(i)), s.name, cache, r.segments(), job.file, s.name);
    }
  }
}

TeachResult teach(const JobConfig& job, const TeachOptions& opt) {
  std::optional<Kokkos::ScopeGuard> kokkos;  // first: outlives every View below
  if (!Kokkos::is_initialized() && !opt.init_kokkos) fail("teach: Kokkos is not initialized");
  require_cache_dir(job);
  const SourceConfig& src = find_source_or_fail(job, opt.source);
  const int64_t k = job.distill.top_k;
  const auto method = job.distill.alignment;

  // ---- everything that can be refused, before any model work --------------------------------------
  const auto tok_paths = job_tokenizers(job);
  std::vector<std::unique_ptr<Tokenizer>> toks;
  std::vector<align::TokenVocab> vocabs;
  std::vector<std::string> fps;
  for (const auto& p : tok_paths) {
    toks.push_back(with_context(fmt::format("{}: tokenizer {}", job.file, p), [&] { return Tokenizer::load(p); }));
    vocabs.push_back(with_context(fmt::format("{}: tokenizer {}", job.file, p),
                                  [&] { return align::TokenVocab::from_tokenizer_json(p); }));
    fps.push_back(vocabs.back().fingerprint_hex());
  }
  auto idx_of = [&](const std::string& p) { return size_t(std::find(tok_paths.begin(), tok_paths.end(), p) - tok_paths.begin()); };
  const size_t si = idx_of(src.tokenizer), ti = idx_of(job.target.tokenizer);
  const Tokenizer& src_tok = *toks[si];
  const Tokenizer& tgt_tok = *toks[ti];
  const align::TokenVocab& src_vocab = vocabs[si];
  const align::TokenVocab& tgt_vocab = vocabs[ti];
  const CacheProvenance prov = provenance_from(job, src, fps[si], fps[ti], fps);
  // Single-teacher KD (the source shares the target's tokenizer): both tokenize every segment
  // alike, so the alignment is the identity and the source's top-k ids are target ids already;
  // the rows go to the cache as they are (ids the target tokenizer does not have are dropped, as
  // the vocabulary mapping would drop them).
  const bool identity = fps[si] == fps[ti];

  // k beyond the source's vocabulary is refused before the cache file is created: the top-k
  // kernel refuses it only after the model has loaded, and a large k failed first inside HDF5
  // (a chunk of 4096 rows x k).
  const int64_t src_vocab_size = HFConfig::load(src.path).get_int("vocab_size", 0);
  if (src_vocab_size > 0 && k > src_vocab_size)
    fail("{}: [distill].top_k = {} exceeds the vocabulary of [[source]] '{}' ({} tokens, {}/config.json)",
         where(job, "distill", "top_k"), k, src.name, src_vocab_size, src.path);

  TeachResult res;
  res.cache_path = cache_path_for(job, src.name);
  DistributionCacheWriter cache(res.cache_path, prov, &job.origins);
  res.resumed_from = cache.segments_done();
  res.segments = cache.segments_done();
  if (cache.complete() || (opt.limit >= 0 && cache.segments_done() >= opt.limit)) {
    res.complete = cache.complete();
    spdlog::info("teach {}: {} already holds {} segments{}", src.name, res.cache_path, res.segments,
                 cache.complete() ? " (complete)" : "");
    return res;
  }

  if (!Kokkos::is_initialized()) kokkos.emplace();
  const auto model = with_context(fmt::format("{}: [[source]] '{}'", job.file, src.name),
                                  [&] { return CausalLM::load(src.path); });
  const int64_t V = model->info().vocab_size;
  const int64_t ctx = model->info().max_positions;
  const Segmenter seg([&] {
    std::vector<const Tokenizer*> v;
    for (const auto& t : toks) v.push_back(t.get());
    return v;
  }(), Segmenter::max_tokens_of(job.corpus));
  if (ctx > 0 && seg.max_tokens() > ctx)
    fail("{}: [corpus].max_len - margin = {} exceeds the context of [[source]] '{}' ({} positions)",
         where(job, "corpus", "max_len"), seg.max_tokens(), src.name, ctx);
  const align::OriginalRules rules = job.distill.rules();
  const align::VocabMapping mapping = with_context(
      fmt::format("{}: [[source]] '{}': vocabulary mapping", job.file, src.name), [&] {
        return align::VocabMapping::load_or_build(vocab_map_path_for(job, src.name), src_vocab, tgt_vocab, V, {},
                                                  rules);
      });
  const align::Aligner<Kokkos::DefaultExecutionSpace> aligner(src_vocab, tgt_vocab, &mapping, size_t(256) << 20,
                                                               rules);
  // The original's empty-row rule takes the target model's own rows: run it too (as the original
  // computed the base model's logits for every segment).
  std::unique_ptr<CausalLM> target_model;
  if (rules.empty_row && !identity)
    target_model = with_context(fmt::format("{}: [distill].align_compat empty_row: the target model", job.file),
                                [&] { return CausalLM::load(target_model_path(job)); });

  fusion::TopkParams tp;
  tp.k = int(k);
  tp.temperature = float(job.distill.temperature);
  tp.keep_tail = job.distill.keep_tail;

  // ---- the segments ----------------------------------------------------------------------------------
  SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
  Segment s;
  for (int64_t i = 0; i < res.resumed_from; ++i)
    if (!stream.next(s))
      fail("{}: holds {} segments but the corpus now gives only {} (the corpus changed; delete the cache)",
           res.cache_path, res.resumed_from, i);
  if (res.resumed_from > 0) spdlog::info("teach {}: continuing after segment {}", src.name, res.resumed_from);
  if (identity)
    spdlog::info("teach {}: the source has the target's tokenizer: no alignment, its top-{} rows are cached as they are",
                 src.name, k);

  struct Pending {
    Segment seg;
    std::vector<int32_t> src_ids, tgt_ids;
    fusion::HostRows rows;
    double ce = 0;
    int64_t ce_tokens = 0;
  };
  std::vector<Pending> batch;
  const auto t0 = Clock::now();
  auto last_print = t0;

  // A segment's cache entry without its rows.
  auto cache_segment = [](const Pending& p) {
    CacheSegment c;
    c.id = p.seg.id;
    c.doc = p.seg.doc;
    c.piece = p.seg.piece;
    c.ce = p.ce;
    c.ce_tokens = p.ce_tokens;
    c.bytes = int64_t(p.seg.text.size());
    c.target_ids = p.tgt_ids;
    return c;
  };

  // The batch's cache entries, identity path: the rows as they are.
  auto identity_entries = [&] {
    std::vector<CacheSegment> cs(batch.size());
    const int32_t tv = int32_t(tgt_vocab.size());
    for (size_t d = 0; d < batch.size(); ++d) {
      const auto& p = batch[d];
      CacheSegment& c = cs[d] = cache_segment(p);
      if (p.src_ids != p.tgt_ids) fail("teach: segment {}: one tokenizer gave two tokenizations", p.seg.id);
      const int64_t T = int64_t(p.tgt_ids.size());
      c.status.assign(size_t(T), uint8_t(align::kKeptExact));
      c.ids.resize(size_t(T * k));
      c.probs.resize(size_t(T * k));
      for (int64_t t = 0; t < T; ++t) {
        bool any = false;
        for (int64_t j = 0; j < k; ++j) {
          const int32_t id = p.rows.ids(t, j);
          const bool ok = id >= 0 && id < tv && !tgt_vocab.hole(id);
          c.ids[size_t(t * k + j)] = ok ? id : -1;
          c.probs[size_t(t * k + j)] = ok ? p.rows.probs(t, j) : 0.f;
          any = any || ok;
        }
        if (!any) c.status[size_t(t)] = uint8_t(align::kFallbackEmpty);
      }
    }
    return cs;
  };

  // The batch's cache entries, through the alignment (one DTW batch for all its segments).
  auto aligned_entries = [&] {
    align::DocBatch sb, tb;
    int64_t ns = 0;
    for (const auto& p : batch) {
      sb.add(src_vocab, p.src_ids, p.seg.text);
      tb.add(tgt_vocab, p.tgt_ids, p.seg.text);
      ns += int64_t(p.src_ids.size());
    }
    fusion::HostRows all("teach.src", ns, k, job.distill.keep_tail);
    int64_t r = 0;
    for (const auto& p : batch) {
      for (int64_t i = 0; i < p.rows.rows(); ++i, ++r)
        for (int64_t j = 0; j < k; ++j) {
          all.ids(r, j) = p.rows.ids(i, j);
          all.probs(r, j) = p.rows.probs(i, j);
        }
    }
    const align::Alignment al = aligner.align(sb, tb, method);
    std::optional<fusion::DeviceRows> target_rows;
    if (target_model) {
      fusion::HostRows trows("teach.tgt", tb.tokens(), k, job.distill.keep_tail);
      int64_t tr = 0;
      for (const auto& p : batch) {
        const Tensor tl = target_model->forward(p.tgt_ids);
        const int64_t T = int64_t(p.tgt_ids.size()), TV = target_model->info().vocab_size;
        const fusion::HostRows one = fusion::topk_softmax(tl.span(), T, TV, tp, "target");
        for (int64_t i = 0; i < T; ++i, ++tr)
          for (int64_t j = 0; j < k; ++j) {
            trows.ids(tr, j) = one.ids(i, j);
            trows.probs(tr, j) = one.probs(i, j);
          }
      }
      target_rows = fusion::rows_to_device(trows);
    }
    const auto out = aligner.apply(al, tb, fusion::rows_to_device(all), method, job.distill.onehot_compat,
                                   target_rows ? &*target_rows : nullptr);
    const fusion::HostRows host = fusion::rows_to_host(out.rows);
    const auto status = fusion::to_std_vector(out.status);
    if (host.k() != k) fail("teach: alignment returned rows of {} entries, expected k = {}", host.k(), k);
    std::vector<CacheSegment> cs(batch.size());
    for (size_t d = 0; d < batch.size(); ++d) {
      CacheSegment& c = cs[d] = cache_segment(batch[d]);
      const int64_t b = tb.offsets[d], e = tb.offsets[d + 1];
      c.status.assign(status.begin() + b, status.begin() + e);
      c.ids.assign(host.ids.data() + b * k, host.ids.data() + e * k);
      c.probs.assign(host.probs.data() + b * k, host.probs.data() + e * k);
    }
    return cs;
  };

  auto flush = [&] {
    if (batch.empty()) return;
    const std::vector<CacheSegment> cs = identity ? identity_entries() : aligned_entries();
    for (const CacheSegment& c : cs) {
      for (const uint8_t st : c.status) (align::align_kept(st) ? res.kept_rows : res.fallback_rows)++;
      res.target_tokens += c.rows();
    }
    cache.append(cs);
    res.segments = cache.segments_done();
    batch.clear();
  };

  auto report = [&](bool final) {
    const auto now = Clock::now();
    if (!opt.progress || (!final && now - last_print < std::chrono::seconds(2))) return;
    last_print = now;
    const double sec = std::chrono::duration<double>(now - t0).count();
    std::fprintf(stderr, "teach %s: %lld segments (%lld new), %.1f segments/s, %.0f source tokens/s%s\n",
                 src.name.c_str(), (long long)res.segments, (long long)res.new_segments,
                 sec > 0 ? double(res.new_segments) / sec : 0.0, sec > 0 ? double(res.source_tokens) / sec : 0.0,
                 final ? (res.complete ? ", complete" : ", stopped at --limit") : "");
  };

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
    Pending p;
    p.seg = std::move(s);
    p.src_ids = src_tok.encode(p.seg.text, true).ids;
    p.tgt_ids = tgt_tok.encode(p.seg.text, true).ids;
    const int64_t T = int64_t(p.src_ids.size());
    for (int64_t i = 0; i < T; ++i)
      if (p.src_ids[size_t(i)] < 0 || p.src_ids[size_t(i)] >= V)
        fail("segment {}: source token {} has id {}, outside [[source]] '{}''s vocabulary of {} (tokenizer and model "
             "disagree)", p.seg.id, i, p.src_ids[size_t(i)], src.name, V);
    if (ctx > 0 && T > ctx) fail("segment {}: {} source tokens exceed the context {}", p.seg.id, T, ctx);
    const Tensor logits = model->forward(p.src_ids);
    p.rows = fusion::topk_softmax(logits.span(), T, V, tp, src.name);
    // metric_ce of the original: the source's mean CE on its own next tokens.
    std::vector<int32_t> gold(size_t(T), -1);
    for (int64_t i = 0; i + 1 < T; ++i) gold[size_t(i)] = p.src_ids[size_t(i + 1)];
    const std::vector<int64_t> offs{0, T};
    const auto sc = fusion::score_segments(logits.span(), T, V, gold, offs, src.name);
    p.ce = sc.ce(0);
    p.ce_tokens = sc.tokens[0];
    res.source_tokens += T;
    ++res.new_segments;
    batch.push_back(std::move(p));
    if (int64_t(batch.size()) >= std::max<int64_t>(1, opt.batch_segments)) {
      flush();
      report(false);
    }
  }
  flush();
  res.corpus = stream.corpus_stats();
  res.split_documents = stream.split_documents();
  if (ended) {
    cache.finish(res.corpus.documents, res.corpus.skipped_blank, res.corpus.invalid_utf8_docs);
    res.complete = true;
  }
  cache.close();
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  report(true);
  if (res.corpus.skipped_blank > 0 || res.corpus.invalid_utf8_docs > 0)
    spdlog::info("teach {}: skipped {} empty or whitespace-only documents; replaced invalid UTF-8 in {} documents ({} "
                 "sequences{}{})", src.name, res.corpus.skipped_blank, res.corpus.invalid_utf8_docs,
                 res.corpus.replaced_sequences, res.corpus.first_invalid_utf8.empty() ? "" : ", the first at ",
                 res.corpus.first_invalid_utf8);
  return res;
}

}  // namespace fusellm
