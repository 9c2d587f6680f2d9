#pragma once
// One source model as a teacher (DESIGN.md section 2): segments in, that source's rows out
// (data/teacher_rows.hpp), the per-segment work of the original FuseLLM's forward_for_logits.py and
// its token alignment. `fusellm teach` runs one over the corpus into the distribution cache
// (teach.hpp); the MPI job's teacher ranks run one per micro-batch and send the rows.
//
// Per segment: tokenize with the source's and the target's tokenizer, source forward -> logits
// [T, V], CE of the source on its own gold next tokens (mean over positions, fusion/sequence_ce.hpp),
// top-k softmax at the job's temperature (fusion/topk_softmax.hpp); then, for the segments of one
// call together (one DTW batch), alignment source -> target with the job's method and the
// vocabulary mapping (align/align_tokens.hpp), and the probabilities rounded to fp16.
//
// Single-teacher KD (the source shares the target's tokenizer): both tokenize every segment alike,
// so the alignment is the identity and the source's top-k ids are target ids already; the rows are
// kept as they are (ids the target tokenizer does not have are dropped, as the vocabulary mapping
// would drop them).
//
// On a GPU the whole model's rows() keeps the logits in device memory: the top-k and the CE run
// there (device/device_scoring.hpp) and only the k ids and probabilities per position come back.
//
// rows() is three pieces, public so that a forward pass run elsewhere can feed them (the pipeline
// stages of dist/stage_pipeline.hpp: the first stage tokenizes, the last one scores and
// finishes): tokenize (both tokenizations), the source's forward pass, score (top-k and CE from the
// logits), and finish (alignment and mapping of a batch of scored segments, the rows). rows() is
// exactly these pieces, so a pipelined source gives the rows of one Teacher.
//
// Needs Kokkos initialized for its whole life.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/data/segmenter.hpp"
#include "fusellm/data/teacher_rows.hpp"
#include "fusellm/device/device_scoring.hpp"
#include "fusellm/fusion/kokkos_glue.hpp"
#include "fusellm/fusion/sequence_ce.hpp"
#include "fusellm/fusion/topk_softmax.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/teach/job_tokenizers.hpp"

namespace fusellm {

class Teacher {
 public:
  // Loads [[source]] `source`'s model and, for the original's empty_row rule, the target model;
  // loads the vocabulary mapping from `vocab_map_path`, or builds and saves it there. Refuses,
  // naming the job file and field, a source whose context is shorter than the segments.
  // `layers` (a pipeline stage's, model/stage_plan.hpp): only those layers of the source are loaded;
  // the mapping, the aligner and the target model only by the stage that holds the head.
  Teacher(const JobConfig& job, const std::string& source, std::shared_ptr<const JobTokenizers> tokenizers,
          const std::string& vocab_map_path, model::LayerRange layers = {});
  ~Teacher();
  Teacher(const Teacher&) = delete;
  Teacher& operator=(const Teacher&) = delete;

  // The rows of `segments`, in their order (needs the whole model).
  std::vector<TeacherRows> rows(std::span<const Segment> segments) const;

  // ---- the pieces of rows() ---------------------------------------------------------------------
  struct Tokens {
    std::vector<int32_t> src_ids, tgt_ids;  // the source's and the target's tokenization
  };
  struct Scored {  // one segment after the source's forward pass
    Tokens tokens;
    fusion::HostRows rows;  // [source tokens, k], over the source vocabulary
    double ce = 0;          // mean over ce_tokens
    int64_t ce_tokens = 0;
    std::vector<float> ce_position;  // [source tokens] with per-position fusion (+Inf: no next token)
  };
  // Both tokenizations of a segment; Error when a source id is outside the source model's
  // vocabulary or the segment exceeds its context.
  Tokens tokenize(const Segment& s) const;
  // Top-k rows and CE from the source's logits [T, vocab] of tokens.src_ids (holds the head).
  Scored score(Tokens tokens, const Tensor& logits) const;
  // The rows of segments scored in order: one alignment batch (holds the head).
  std::vector<TeacherRows> finish(std::span<const Segment> segments, const std::vector<Scored>& scored) const;

  // The source model (a stage's part of it when built for one).
  const model::Decoder& model() const { return *model_; }

  const std::string& source() const { return name_; }
  bool identity() const { return identity_; }  // the source has the target's tokenizer
  int64_t k() const { return k_; }
  // Whether its rows carry per-position CE (the job fuses with MinCE per position).
  bool position_ce() const { return position_ce_; }
  // The vocabulary mapping's fingerprint (0 for an identity teacher): ranks compare it at start.
  uint64_t mapping_fingerprint() const { return mapping_ ? mapping_->fingerprint() : 0; }

 private:
  void require_head(const char* what) const;
  std::vector<TeacherRows> identity_rows(std::span<const Segment> segs, const std::vector<Scored>& fw) const;
  std::vector<float> aligned_position_ce(const align::Alignment& al, const std::vector<Scored>& fw, int64_t b,
                                         int64_t e) const;
  std::vector<TeacherRows> aligned_rows(std::span<const Segment> segs, const std::vector<Scored>& fw) const;
  fusion::DeviceRows target_model_rows(const align::DocBatch& tb, const std::vector<Scored>& fw) const;

  std::string name_;
  std::shared_ptr<const JobTokenizers> toks_;
  const Tokenizer* src_tok_ = nullptr;
  const Tokenizer* tgt_tok_ = nullptr;
  const align::TokenVocab* src_vocab_ = nullptr;
  const align::TokenVocab* tgt_vocab_ = nullptr;
  bool identity_ = false;
  int64_t k_ = 0;
  align::AlignMethod method_;
  bool onehot_compat_ = false;
  bool position_ce_ = false;
  fusion::TopkParams topk_;
  std::unique_ptr<model::Decoder> model_;
  // The whole model on a GPU: its forward pass, top-k and CE there (device/device_scoring.hpp);
  // nullptr on the host, for a stage, or an MPT with a logit_scale (scored as score() does).
  std::unique_ptr<device::DeviceScoring> on_device_;
  Scored score_on_device(Tokens tokens) const;
  void set_ce(Scored& f, fusion::SegmentScores sc, const std::vector<int32_t>& gold) const;
  int64_t vocab_ = 0, context_ = 0;  // of the source model
  std::unique_ptr<align::VocabMapping> mapping_;
  std::unique_ptr<align::Aligner<Kokkos::DefaultExecutionSpace>> aligner_;
  std::unique_ptr<CausalLM> target_model_;  // the original's empty_row rule: its own rows
};

}  // namespace fusellm
