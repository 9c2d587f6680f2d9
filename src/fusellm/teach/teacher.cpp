#include "fusellm/teach/teacher.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include "fusellm/core/error.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/device/compute_backend.hpp"
#include "fusellm/fusion/sequence_ce.hpp"

namespace fusellm {

namespace {

// The target model's checkpoint: [target].path, or the [[source]] it starts from.
std::string target_model_path(const JobConfig& job) {
  if (!job.target.path.empty()) return job.target.path;
  const SourceConfig* s = job.find_source(job.target.init_from);
  if (!s) fail("{}: [target].init_from '{}': no [[source]] of that name", job.file, job.target.init_from);
  return s->path;
}

// Rows [first, first + n) of `from` into `to` from row `at` on.
void copy_rows(const fusion::HostRows& from, int64_t first, int64_t n, fusion::HostRows& to, int64_t at) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < from.k(); ++j) {
      to.ids(at + i, j) = from.ids(first + i, j);
      to.probs(at + i, j) = from.probs(first + i, j);
    }
}

// metric_ce of the original: the source's mean CE on its own next tokens (none after the last).
std::vector<int32_t> next_token_gold(const std::vector<int32_t>& ids) {
  std::vector<int32_t> gold(ids.size(), -1);
  for (size_t i = 0; i + 1 < ids.size(); ++i) gold[i] = ids[i + 1];
  return gold;
}

}  // namespace

Teacher::Teacher(const JobConfig& job, const std::string& source, std::shared_ptr<const JobTokenizers> tokenizers,
                 const std::string& vocab_map_path, model::LayerRange layers)
    : name_(source), toks_(std::move(tokenizers)) {
  const SourceConfig* src = job.find_source(source);
  if (!src) fail("{}: no [[source]] named '{}'", job.file, source);
  const size_t si = toks_->index(src->tokenizer), ti = toks_->index(job.target.tokenizer);
  src_tok_ = toks_->tokenizers[si].get();
  tgt_tok_ = toks_->tokenizers[ti].get();
  src_vocab_ = &toks_->vocabs[si];
  tgt_vocab_ = &toks_->vocabs[ti];
  identity_ = toks_->fingerprints[si] == toks_->fingerprints[ti];
  k_ = job.distill.top_k;
  method_ = job.distill.alignment;
  onehot_compat_ = job.distill.onehot_compat;
  position_ce_ = job.distill.fusion == kernels::FusionMode::kMinCEPerPosition;
  topk_.k = int(k_);
  topk_.temperature = float(job.distill.temperature);
  topk_.keep_tail = job.distill.keep_tail;

  // The forward pass on [train].device (the GPU of this rank under "auto" when there is one), in
  // the source's dtype: bf16 weights, and on a GPU bf16 GEMMs.
  model_ = with_context(fmt::format("{}: [[source]] '{}'", job.file, source), [&] {
    auto m = model::load_decoder(src->path, layers,
                                 device::compute_backend(job.train.device, job.device_setting(), src->dtype));
    m->round_parameters_to(src->dtype);
    return m;
  });
  vocab_ = model_->info().vocab_size;
  context_ = model_->info().max_positions;
  const int64_t max_tokens = Segmenter::max_tokens_of(job.corpus);
  if (context_ > 0 && max_tokens > context_)
    fail("{}: [corpus].max_len - margin = {} exceeds the context of [[source]] '{}' ({} positions)",
         job.where("corpus", "max_len"), max_tokens, source, context_);
  if (model_->range().last != model_->arch().layers) return;  // a stage before the head
  if (model_->range().first == 0) on_device_ = device::DeviceScoring::make(*model_);
  const align::OriginalRules rules = job.distill.rules();
  mapping_ = std::make_unique<align::VocabMapping>(
      with_context(fmt::format("{}: [[source]] '{}': vocabulary mapping", job.file, source), [&] {
        return align::VocabMapping::load_or_build(vocab_map_path, *src_vocab_, *tgt_vocab_, vocab_, {}, rules);
      }));
  aligner_ = std::make_unique<align::Aligner<Kokkos::DefaultExecutionSpace>>(*src_vocab_, *tgt_vocab_, mapping_.get(),
                                                                             size_t(256) << 20, rules);
  // The original's empty-row rule takes the target model's own rows: run it too (as the original
  // computed the base model's logits for every segment).
  if (rules.empty_row && !identity_)
    target_model_ = with_context(fmt::format("{}: [distill].align_compat empty_row: the target model", job.file),
                                 [&] { return CausalLM::load(target_model_path(job)); });
}

Teacher::~Teacher() = default;

void Teacher::require_head(const char* what) const {
  if (!mapping_) fail("Teacher '{}': {} needs the stage holding the head (this one holds layers [{}, {}) of {})", name_,
                      what, model_->range().first, model_->range().last, model_->arch().layers);
}

Teacher::Tokens Teacher::tokenize(const Segment& s) const {
  Tokens t;
  t.src_ids = src_tok_->encode(s.text, true).ids;
  t.tgt_ids = tgt_tok_->encode(s.text, true).ids;
  const int64_t T = int64_t(t.src_ids.size());
  for (int64_t i = 0; i < T; ++i)
    if (t.src_ids[size_t(i)] < 0 || t.src_ids[size_t(i)] >= vocab_)
      fail("segment {}: source token {} has id {}, outside [[source]] '{}''s vocabulary of {} (tokenizer and model "
           "disagree)", s.id, i, t.src_ids[size_t(i)], name_, vocab_);
  if (context_ > 0 && T > context_) fail("segment {}: {} source tokens exceed the context {}", s.id, T, context_);
  return t;
}

// score() from the device's results: the same fields, from the same formulas (SegmentScores::ce).
Teacher::Scored Teacher::score_on_device(Tokens tokens) const {
  Scored f;
  f.tokens = std::move(tokens);
  const std::vector<int32_t> gold = next_token_gold(f.tokens.src_ids);
  const int64_t T = int64_t(gold.size());
  device::SegmentScoresOnHost s =
      on_device_->score(f.tokens.src_ids, gold, {k_, topk_.temperature, topk_.keep_tail}, name_);
  f.rows = fusion::HostRows("teach.src", T, k_, topk_.keep_tail);
  std::copy(s.ids.begin(), s.ids.end(), f.rows.ids.data());
  std::copy(s.probs.begin(), s.probs.end(), f.rows.probs.data());
  if (topk_.keep_tail) std::copy(s.tail.begin(), s.tail.end(), f.rows.tail.data());
  fusion::SegmentScores sc;
  sc.ce_sum = {s.ce_sum};
  sc.tokens = {s.scored};
  sc.ce_position = std::move(s.ce_position);
  set_ce(f, std::move(sc), gold);
  return f;
}

// The CE fields of f from the segment's scores (one segment; gold: its next tokens).
void Teacher::set_ce(Scored& f, fusion::SegmentScores sc, const std::vector<int32_t>& gold) const {
  f.ce = sc.ce(0);
  f.ce_tokens = sc.tokens[0];
  if (!position_ce_) return;
  f.ce_position = std::move(sc.ce_position);  // the source's CE at each position; none after the last token
  for (size_t i = 0; i < gold.size(); ++i)
    if (gold[i] < 0) f.ce_position[i] = std::numeric_limits<float>::infinity();
}

Teacher::Scored Teacher::score(Tokens tokens, const Tensor& logits) const {
  require_head("score");
  Scored f;
  f.tokens = std::move(tokens);
  const std::vector<int32_t>& ids = f.tokens.src_ids;
  const int64_t T = int64_t(ids.size());
  if (logits.size() != T * vocab_)
    fail("Teacher '{}': logits of shape {} for {} tokens of a vocabulary of {}", name_, shape_str(logits.shape()), T,
         vocab_);
  f.rows = fusion::topk_softmax(logits.span(), T, vocab_, topk_, name_);
  const std::vector<int32_t> gold = next_token_gold(ids);
  const std::vector<int64_t> offs{0, T};
  set_ce(f, fusion::score_segments(logits.span(), T, vocab_, gold, offs, name_), gold);
  return f;
}

std::vector<TeacherRows> Teacher::rows(std::span<const Segment> segments) const {
  std::vector<Scored> scored;
  scored.reserve(segments.size());
  for (const Segment& s : segments) {
    Tokens t = tokenize(s);
    if (on_device_) {
      scored.push_back(score_on_device(std::move(t)));
      continue;
    }
    const Tensor logits = model_->forward(t.src_ids);
    scored.push_back(score(std::move(t), logits));
  }
  return finish(segments, scored);
}

std::vector<TeacherRows> Teacher::finish(std::span<const Segment> segments, const std::vector<Scored>& fw) const {
  require_head("finish");
  if (fw.size() != segments.size()) fail("Teacher '{}': {} scored for {} segments", name_, fw.size(), segments.size());
  std::vector<TeacherRows> out = identity_ ? identity_rows(segments, fw) : aligned_rows(segments, fw);
  for (size_t d = 0; d < segments.size(); ++d) {
    TeacherRows& r = out[d];
    r.segment = segments[d].id;
    r.doc = segments[d].doc;
    r.piece = segments[d].piece;
    r.bytes = int64_t(segments[d].text.size());
    r.ce = fw[d].ce;
    r.ce_tokens = fw[d].ce_tokens;
    r.source_tokens = int64_t(fw[d].tokens.src_ids.size());
    r.target_ids = fw[d].tokens.tgt_ids;
  }
  return out;
}

// The identity path: the source's rows as they are, without the ids the target does not have.
std::vector<TeacherRows> Teacher::identity_rows(std::span<const Segment> segs, const std::vector<Scored>& fw) const {
  std::vector<TeacherRows> out(segs.size());
  const int32_t tv = int32_t(tgt_vocab_->size());
  for (size_t d = 0; d < segs.size(); ++d) {
    const Scored& f = fw[d];
    if (f.tokens.src_ids != f.tokens.tgt_ids) fail("teach: segment {}: one tokenizer gave two tokenizations", segs[d].id);
    TeacherRows& r = out[d];
    const int64_t T = int64_t(f.tokens.tgt_ids.size());
    r.k = k_;
    r.status.assign(size_t(T), uint8_t(align::kKeptExact));
    r.resize_rows(T);
    for (int64_t t = 0; t < T; ++t) {
      bool any = false;
      for (int64_t j = 0; j < k_; ++j) {
        const int32_t id = f.rows.ids(t, j);
        const bool ok = id >= 0 && id < tv && !tgt_vocab_->hole(id);
        r.set(t, j, ok ? id : -1, ok ? f.rows.probs(t, j) : 0.f);
        any = any || ok;
      }
      if (!any) r.status[size_t(t)] = uint8_t(align::kFallbackEmpty);
    }
    r.position_ce = f.ce_position;  // the same positions
  }
  return out;
}

// Per-position CE at target positions [b, e) of the batch: the CE at the source position whose row
// the target position keeps (Alignment::source, global over the batch's source positions); +Inf
// where it keeps none (a fallback row: no score, so per-position MinCE never prefers it).
std::vector<float> Teacher::aligned_position_ce(const align::Alignment& al, const std::vector<Scored>& fw, int64_t b,
                                                int64_t e) const {
  std::vector<float> all;  // the batch's source positions, in order
  for (const Scored& f : fw) all.insert(all.end(), f.ce_position.begin(), f.ce_position.end());
  std::vector<float> out(size_t(e - b), std::numeric_limits<float>::infinity());
  for (int64_t t = b; t < e; ++t)
    if (const int32_t s = al.source(t); s >= 0 && size_t(s) < all.size()) out[size_t(t - b)] = all[size_t(s)];
  return out;
}

// Through the alignment: one DTW batch for all the segments.
std::vector<TeacherRows> Teacher::aligned_rows(std::span<const Segment> segs, const std::vector<Scored>& fw) const {
  align::DocBatch sb, tb;
  int64_t ns = 0;
  for (size_t d = 0; d < segs.size(); ++d) {
    sb.add(*src_vocab_, fw[d].tokens.src_ids, segs[d].text);
    tb.add(*tgt_vocab_, fw[d].tokens.tgt_ids, segs[d].text);
    ns += int64_t(fw[d].tokens.src_ids.size());
  }
  fusion::HostRows all("teach.src", ns, k_, topk_.keep_tail);
  for (int64_t d = 0, r = 0; d < int64_t(fw.size()); r += fw[size_t(d)].rows.rows(), ++d)
    copy_rows(fw[size_t(d)].rows, 0, fw[size_t(d)].rows.rows(), all, r);
  const align::Alignment al = aligner_->align(sb, tb, method_);
  std::optional<fusion::DeviceRows> target_rows;
  if (target_model_) target_rows = target_model_rows(tb, fw);
  const auto aligned = aligner_->apply(al, tb, fusion::rows_to_device(all), method_, onehot_compat_,
                                       target_rows ? &*target_rows : nullptr);
  const fusion::HostRows host = fusion::rows_to_host(aligned.rows);
  const auto status = fusion::to_std_vector(aligned.status);
  if (host.k() != k_) fail("teach: alignment returned rows of {} entries, expected k = {}", host.k(), k_);
  std::vector<TeacherRows> out(segs.size());
  for (size_t d = 0; d < segs.size(); ++d) {
    TeacherRows& r = out[d];
    const int64_t b = tb.offsets[d], e = tb.offsets[d + 1];
    r.k = k_;
    r.status.assign(status.begin() + b, status.begin() + e);
    r.ids.assign(host.ids.data() + b * k_, host.ids.data() + e * k_);
    r.probs.resize(r.ids.size());
    for (size_t i = 0; i < r.probs.size(); ++i) r.probs[i] = f32_to_f16(host.probs.data()[size_t(b * k_) + i]);
    if (position_ce_) r.position_ce = aligned_position_ce(al, fw, b, e);
  }
  return out;
}

// The target model's own top-k rows at every target position (the original's empty_row rule).
fusion::DeviceRows Teacher::target_model_rows(const align::DocBatch& tb, const std::vector<Scored>& fw) const {
  fusion::HostRows trows("teach.tgt", tb.tokens(), k_, topk_.keep_tail);
  int64_t at = 0;
  for (const Scored& f : fw) {
    const Tensor tl = target_model_->forward(f.tokens.tgt_ids);
    const int64_t T = int64_t(f.tokens.tgt_ids.size());
    const fusion::HostRows one = fusion::topk_softmax(tl.span(), T, target_model_->info().vocab_size, topk_, "target");
    copy_rows(one, 0, T, trows, at);
    at += T;
  }
  return fusion::rows_to_device(trows);
}

}  // namespace fusellm
