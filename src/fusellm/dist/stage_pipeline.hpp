#pragma once
// A teacher replica in pipeline stages (DESIGN.md section 2, "Pipeline-parallel teachers";
// `[[source]].stages = S`): the source's layers cut into S contiguous stages balanced by
// parameters (model/stage_plan.hpp), stage s on rank first_rank + s of a transport, each rank
// loading only its stage's layers (model/decoder.hpp). Per segment:
//
//   stage 0      tokenize (Teacher::tokenize), embed, its layers  -> hidden [T, d] to stage 1
//   stage s      hidden from stage s - 1, its layers              -> to stage s + 1
//   stage S - 1  hidden from stage S - 2, its layers, head -> logits, Teacher::score (top-k, CE);
//                after the call's segments, Teacher::finish (alignment, vocabulary mapping) -> rows
//
// The hidden states travel as hidden_message.hpp's messages with Tag::hidden. Sends are
// non-blocking: a stage starts its next segment as soon as it has started sending the last one,
// so while stage s + 1 runs segment i, stage s runs segment i + 1 (GPipe's schedule, forward
// only: with S stages and n segments a call takes about n + S - 1 stage-steps instead of n S).
// Flow control by credits, as between teachers and students: stage s + 1 returns a credit
// (Tag::credit, the segment id, 8 bytes) to stage s for every message it takes, and stage s
// has at most `window` messages without their credit; so a stage runs at most window + 1 segments
// ahead of the next and no mailbox holds more than `window` hidden states, whichever stage is
// slower (a send that completes at once, as MPI's eager sends and the in-process ones do, bounds
// nothing by itself). Messages stay in flight across calls, so the next micro-batch's first
// segment overlaps the last one's tail; flush() collects every credit at the end.
//
// The arithmetic is one forward pass's (Decoder's pieces are forward's own code) and the last
// stage runs the Teacher's own scoring and alignment over the same batch, so the rows are bit
// for bit those of one Teacher::rows over the same segments; S = 1 runs the same loop without
// messages.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/data/teacher_rows.hpp"
#include "fusellm/dist/transport.hpp"
#include "fusellm/model/stage_plan.hpp"
#include "fusellm/teach/teacher.hpp"

namespace fusellm::dist {

class StagePipeline {
 public:
  struct Options {
    int64_t window = 2;  // hidden-state messages without their credit, per stage (>= 1)
  };
  // This rank's stage of a replica of [[source]] `source`, whose `stages` ranks are
  // first_rank, ..., first_rank + stages - 1 of `transport` (this rank among them). `transport`
  // may be null when the source has one stage. Plans the stages (every rank computes the same
  // plan), logs it from stage 0, and loads this stage's Teacher (Teacher's arguments). Errors
  // name the job file's [[source]] stages setting.
  StagePipeline(const JobConfig& job, const std::string& source, std::shared_ptr<const JobTokenizers> tokenizers,
                const std::string& vocab_map_path, Transport* transport, int first_rank, Options opt);
  StagePipeline(const JobConfig& job, const std::string& source, std::shared_ptr<const JobTokenizers> tokenizers,
                const std::string& vocab_map_path, Transport* transport, int first_rank)
      : StagePipeline(job, source, std::move(tokenizers), vocab_map_path, transport, first_rank, Options{}) {}
  ~StagePipeline();  // waits for the sends in flight (with the transport's timeout), not for credits
  StagePipeline(const StagePipeline&) = delete;
  StagePipeline& operator=(const StagePipeline&) = delete;

  // Every stage of the replica calls it with the same segments, call for call. The last stage
  // returns their rows in order (one alignment batch, as Teacher::rows); the others return none.
  std::vector<TeacherRows> run(std::span<const Segment> segments);
  // Waits until every message this stage sent has been taken by the next stage (its credit is
  // back) and every send has completed. The driver calls it once the replica's work is done, so
  // that no message is left unreceived when the job ends.
  void flush();

  int64_t stage() const { return stage_; }
  int64_t stages() const { return int64_t(plan_.stages.size()); }
  bool last() const { return stage_ + 1 == stages(); }
  const model::StagePlan& plan() const { return plan_; }
  const Teacher& teacher() const { return *teacher_; }
  int64_t in_flight() const { return int64_t(uncredited_.size()); }  // messages without their credit

 private:
  struct Send {
    std::vector<std::byte> bytes;  // alive until the request completes
    std::unique_ptr<Request> request;
  };
  std::vector<TeacherRows> run_segments(std::span<const Segment> segments);
  void send(int64_t segment, std::vector<std::byte> bytes);
  bool take_credit(bool wait);        // the oldest uncredited message's: waits, or takes one arrived
  void give_credit(int64_t segment);  // to the previous stage
  void reap_sends();
  std::string where() const;  // "[[source]] 'llama' stage 1 of 3 (rank 4)"

  std::string source_;
  Transport* transport_;
  int first_rank_;
  int64_t stage_ = 0;
  Options opt_;
  model::StagePlan plan_;
  std::unique_ptr<Teacher> teacher_;
  std::deque<Send> sends_;          // hidden states to the next stage, credits to the previous one
  std::deque<int64_t> uncredited_;  // segment ids sent to the next stage, credit not yet back
};

}  // namespace fusellm::dist
