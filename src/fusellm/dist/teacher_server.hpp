#pragma once
// A teacher replica of the online job (DESIGN.md section 2; issue 11 item 2): it walks the same
// schedule as the students (the job's Sampler, restored to the position the students resumed
// from), and for every micro-batch its replica serves (Topology::serving_replica) it runs its
// Teacher over the micro-batch's segments (tokenization, forward, top-k, CE, alignment, the
// vocabulary mapping) and sends the rows to the owning student as one rows message
// (rows_message.hpp). A source in pipeline stages (`[[source]].stages`) runs the same loop on
// each stage rank of the replica (stage_pipeline.hpp: hidden states flow stage to stage); only
// the last stage has rows, and only it sends them and deals in the students' credits.
//
// Credit-based flow control: the teacher starts with `prefetch` credits per student and spends one
// per micro-batch it sends that student; the student returns one (a Tag::credit message holding
// the micro-batch id) when it has consumed the micro-batch. With no credit left for the student
// it must serve next, the teacher waits for one before it computes, so at most `prefetch`
// micro-batches per student are in flight (computed, sent or buffered, not yet consumed) and the
// memory of both sides stays bounded whichever side is slower. At the end it waits for every
// credit back, so no message is left unreceived when the job ends. A segment the packer cut
// across two micro-batches is run once while it is recent (recent_rows.hpp), its rows sent again.
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "fusellm/dist/job_transport.hpp"
#include "fusellm/dist/timeline.hpp"
#include "fusellm/dist/topology.hpp"
#include "fusellm/dist/transport.hpp"
#include "fusellm/job/sampler.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/dist/recent_rows.hpp"
#include "fusellm/dist/stage_pipeline.hpp"

namespace fusellm::dist {

// The part of a run every rank must agree on before the first micro-batch: where the students
// resumed (run_start.hpp broadcasts it) and how many steps this run does.
struct ServeRange {
  int64_t start_step = 0;  // steps done before this run
  int64_t steps = 0;       // steps of this run (at most; the data may end earlier)
};

class TeacherServer {
 public:
  // source: index of the [[source]] this rank serves (its Topology role); `pipeline`: this rank's
  // stage of its replica; `segments`: the job's segments (not owned); `sampler`: restored to the
  // run's start.
  TeacherServer(const Topology& topo, JobTransport& world, int source, std::unique_ptr<StagePipeline> pipeline,
                const CorpusSegments& segments, Sampler& sampler, int64_t prefetch, Timeline* timeline = nullptr);

  // Serves every micro-batch of the range this replica owns; returns the micro-batches it served.
  // Between micro-batches, and in every wait, it runs `world`'s interrupt (job_end.hpp: the
  // students' end message, when they stopped early, leaves the loop by exception).
  int64_t serve(const ServeRange& range);

  // The most micro-batches that were in flight to one student at once (the bounded-memory test).
  int64_t max_in_flight() const { return max_in_flight_; }
  // Resident memory (bytes) right after the first micro-batch this replica served (0: none
  // served), against which the bounded-memory test compares the end's.
  int64_t resident_after_first() const { return resident_after_first_; }

 private:
  void serve_micro_batch(int64_t id, int64_t step, std::span<const int64_t> sequences);
  void take_credit(int student, int64_t step);  // waits for one credit from `student`
  void reap_sends();                            // frees the buffers of completed sends
  void credit_back(int student, std::span<const std::byte> message);  // checks and returns one credit
  void drain();                                 // every credit back

  Timeline& tl() { return timeline_ ? *timeline_ : off_; }

  struct Pending {
    std::vector<std::byte> bytes;
    std::unique_ptr<Request> request;
  };

  const Topology& topo_;
  JobTransport& world_;
  int source_, replica_;
  std::unique_ptr<StagePipeline> pipeline_;
  const CorpusSegments& segments_;
  Sampler& sampler_;
  int64_t prefetch_;
  Timeline* timeline_;
  Timeline off_;  // when no timeline is kept
  std::vector<std::deque<int64_t>> in_flight_;  // per student: micro-batch ids sent, not yet credited
  std::deque<Pending> sends_;
  RecentRows recent_{64};  // rows of the last segments run, sent again when a micro-batch shares them
  int64_t max_in_flight_ = 0;
  int64_t resident_after_first_ = 0;
};

}  // namespace fusellm::dist
