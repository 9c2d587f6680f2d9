#include "fusellm/train/train_step.hpp"

#include <cmath>

#include "fusellm/fusion/fused_classifier.hpp"
#include "fusellm/fusion/fusion.hpp"
#include "fusellm/train/train_observer.hpp"

namespace fusellm {

namespace {

// A micro-batch's sequences as one forward pass: their tokens concatenated, and doc_ids that give
// each sequence (and, with document masks, each of its documents) an attention block of its own
// with positions from 0.
struct Concatenated {
  std::vector<int32_t> ids, doc_ids;
};
Concatenated concatenate(std::span<const PackedSequence> batch) {
  Concatenated c;
  int32_t next_doc = 0;
  for (const PackedSequence& ps : batch) {
    c.ids.insert(c.ids.end(), ps.ids.begin(), ps.ids.end());
    if (ps.doc_ids.empty()) {
      c.doc_ids.insert(c.doc_ids.end(), ps.ids.size(), next_doc++);
    } else {
      for (int32_t d : ps.doc_ids) c.doc_ids.push_back(next_doc + d);
      next_doc += ps.doc_ids.back() + 1;
    }
  }
  return c;
}

// A packed sequence's targets: the K sources' rows fused by MinCE / AvgCE over the sequence's CE
// (what fusion chose recorded for the metrics), or none when training CLM only.
fusion::HostRows targets_of(const PackedSequence& ps, const StepSettings& s, StepTerms& terms) {
  const int64_t T = ps.tokens(), K = int64_t(s.sources.size());
  if (!s.fusion) return fusion::HostRows("clm", T, 1);
  std::vector<float> scores(static_cast<size_t>(K));
  const std::vector<double>& by = s.score == fusion::ScoreUnit::kNatsPerByte ? ps.nats_per_byte : ps.ce;
  if (int64_t(by.size()) != K) fail("train: the packed sequence has {} source scores for {} sources", by.size(), K);
  for (int64_t j = 0; j < K; ++j) scores[size_t(j)] = float(by[size_t(j)]);
  const std::vector<int64_t> offs{0, T};
  if (s.fusion == kernels::FusionMode::kMinCEPerPosition) {  // each position its own lowest-CE source
    if (ps.position_ce.size() != size_t(K * T))
      fail("train: MinCE per position needs every source's per-position CE; the rows carry {} values for {} "
           "sources x {} positions (the distribution cache does not store them: run the job online)",
           ps.position_ce.size(), K, T);
    fusion::Fused f = fusion::fuse_minCE_per_position(ps.rows, s.sources, ps.position_ce, s.vocab);
    terms.fused.push_back({-1, {}});
    return std::move(f.rows);
  }
  fusion::Fused f = s.fusion == kernels::FusionMode::kMinCE ? fusion::fuse_minCE(ps.rows, s.sources, scores, offs, s.vocab)
                                                  : fusion::fuse_avgCE(ps.rows, s.sources, scores, offs, s.vocab);
  terms.fused.push_back({f.choice.empty() ? -1 : f.choice[0], std::move(f.weights)});
  return std::move(f.rows);
}

// The totals of one sequence's loss, checked and added to the step's terms.
void add_terms(double loss, double clm, double fusion, const PackedSequence& ps, int64_t seq, bool fusing,
               StepTerms& terms) {
  if (!std::isfinite(clm)) throw NonFiniteLoss(fmt::format("the CLM loss is {} (sequence {})", clm, seq));
  if (fusing && !std::isfinite(fusion))
    throw NonFiniteLoss(fmt::format("the Fusion loss is {} (sequence {})", fusion, seq));
  terms.loss += loss;
  terms.clm += clm;
  terms.fusion += fusion;
  terms.tokens += ps.tokens();
  ++terms.sequences;
}

// The classifiers refuse NaN/Inf logits or a non-finite position loss themselves: their error as
// the step's NonFiniteLoss.
template <class F>
auto classify(F&& f, int64_t seq, bool fusing) {
  try {
    return f();
  } catch (const Error& e) {
    throw NonFiniteLoss(
        fmt::format("the {} loss is not finite (sequence {}: {})", fusing ? "CLM (and Fusion)" : "CLM", seq, e.what()));
  }
}

// One sequence's loss on its logits z [T, V]: dL/dz written into z, scaled by `scale`. z is the
// host's (the Kokkos classifier), or with `on_device` the backend's (the GPU's classifier).
void sequence_loss(std::span<float> z, const PackedSequence& ps, int64_t seq, const fusion::HostRows& targets,
                   const StepSettings& s, float scale, StepTerms& terms, device::DeviceLoss* on_device) {
  const bool fusing = s.fusion.has_value();
  if (on_device) {
    const device::SequenceLoss r = classify(
        [&] {
          return on_device->sequence(z, s.vocab, ps.gold, {targets.ids.data(), targets.ids.size()},
                                     {targets.probs.data(), targets.probs.size()}, targets.k(), float(s.lambda), scale);
        },
        seq, fusing);
    return add_terms(r.loss, r.clm, r.fusion, ps, seq, fusing, terms);
  }
  fusion::FusedClassifierParams fcp;
  fcp.lambda = float(s.lambda);
  fcp.reduction = fusion::LossReduction::kMean;
  const auto r = classify([&] { return fusion::fused_classifier(z, ps.tokens(), s.vocab, ps.gold, targets, fcp); }, seq,
                          fusing);
  for (float& g : z) g *= scale;
  add_terms(r.loss, r.clm, r.fusion, ps, seq, fusing, terms);
}

}  // namespace

void tally_fusion(StepTerms& t, size_t K) {
  t.wins.assign(K, 0.0);
  t.weights.assign(K, 0.0);
  for (const SequenceFusion& f : t.fused) {
    if (f.choice >= 0 && size_t(f.choice) < K) t.wins[size_t(f.choice)] += 1.0;
    for (size_t j = 0; j < f.weights.size() && j < K; ++j) t.weights[j] += f.weights[j];
  }
}

bool fuses_teachers(const JobConfig& job) {
  return job.distill.fusion.has_value() && job.distill.lambda != 1.0;
}

StepSettings StepSettings::of(const JobConfig& job, std::vector<std::string> sources, int64_t vocab) {
  StepSettings s;
  const bool fusing = fuses_teachers(job);
  s.fusion = fusing ? job.distill.fusion : std::optional<kernels::FusionMode>{};
  s.lambda = fusing ? job.distill.lambda : 1.0;
  s.sources = std::move(sources);
  s.vocab = vocab;
  s.score = job.distill.score;
  return s;
}

StepTerms train_step(model::TrainableModel& model, const StepSettings& settings, int64_t step,
                     const StepBatches& batches, int64_t step_sequences, const MicroBatchFetch& fetch,
                     TrainObserver* observer, device::DeviceLoss* loss_on_device) {
  device::DeviceLoss* const on_device = observer ? nullptr : loss_on_device;
  const int64_t V = settings.vocab;
  const float scale = 1.0f / float(step_sequences);
  StepTerms terms;
  model.zero_grad();
  // Each micro-batch's gradient is computed on its own, then added to the earlier ones' (as torch
  // accumulates .grad; TrainableModel::backward): g = (g_0 + g_1) + g_2 ..., so that data-parallel
  // students holding one micro-batch each sum exactly what one process sums (dist/zero1.hpp).
  for (size_t m = 0; m < batches.micro_batches.size(); ++m) {
    const std::vector<int64_t>& seqs = batches.micro_batches[m];
    const std::vector<PackedSequence> batch = fetch(m, seqs);
    const Concatenated in = concatenate(batch);
    // The logits stay where the passes run when the loss can run there too (an observer reads
    // them on the host).
    Tensor host_logits;
    if (!on_device) host_logits = model.forward(in.ids, in.doc_ids);
    const std::span<float> logits = on_device ? model.forward_in_backend(in.ids, in.doc_ids) : host_logits.span();
    if (observer) observer->on_logits(step, m, logits, V);
    int64_t off = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      const PackedSequence& ps = batch[b];
      const std::span<float> z = logits.subspan(size_t(off * V), size_t(ps.tokens() * V));
      off += ps.tokens();
      const fusion::HostRows targets = targets_of(ps, settings, terms);
      if (observer) observer->on_sequence(step, ps, targets);
      sequence_loss(z, ps, seqs[b], targets, settings, scale, terms, on_device);
    }
    if (on_device)
      model.backward_in_backend();
    else
      model.backward(logits);
  }
  return terms;
}

}  // namespace fusellm
