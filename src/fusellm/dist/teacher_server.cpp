#include "fusellm/dist/teacher_server.hpp"

#include <cstring>
#include <unordered_map>

#include "fusellm/core/error.hpp"
#include "fusellm/core/resident_memory.hpp"
#include "fusellm/dist/credit.hpp"
#include "fusellm/dist/rank_status.hpp"
#include "fusellm/dist/rows_message.hpp"

namespace fusellm::dist {

TeacherServer::TeacherServer(const Topology& topo, JobTransport& world, int source, std::unique_ptr<StagePipeline> pipeline,
                             const CorpusSegments& segments, Sampler& sampler, int64_t prefetch, Timeline* timeline)
    : topo_(topo), world_(world), source_(source), replica_(topo.role(world.rank()).replica),
      pipeline_(std::move(pipeline)), segments_(segments), sampler_(sampler), prefetch_(prefetch),
      timeline_(timeline), in_flight_(size_t(topo.student_ranks())) {
  if (prefetch_ < 1) fail("[topology].prefetch = {}: a teacher needs at least one credit per student", prefetch_);
}

// The students' loop (train/trainer.cpp Run::run), step for step: the same steps, the same
// micro-batches, the same ids (counted from 0 in this run).
int64_t TeacherServer::serve(const ServeRange& range) {
  int64_t id = 0, served = 0;
  const int64_t total = sampler_.total_steps();
  for (int64_t step = range.start_step, done = 0; step < total && done < range.steps; ++done) {
    const StepBatches batches = sampler_.next();
    if (batches.empty()) break;
    RankStatus::set_step(++step);  // for the messages that end the MPI job
    for (const auto& mb : batches.micro_batches) {
      if (topo_.serving_replica(source_, id) == replica_) {
        world_.check_interrupt();
        serve_micro_batch(id, step, mb);
        if (++served == 1) resident_after_first_ = resident_bytes();
      }
      ++id;
    }
  }
  pipeline_->flush();
  drain();
  return served;
}

void TeacherServer::serve_micro_batch(int64_t id, int64_t step, std::span<const int64_t> sequences) {
  const int student = topo_.owner_student(id);
  if (pipeline_->last()) take_credit(student, step);
  const std::vector<int64_t> ids = sampler_.segments(sequences);
  std::vector<Segment> todo;  // the micro-batch's segments this replica has not run recently
  for (const int64_t s : ids)
    if (!recent_.find(s)) todo.push_back(segments_.segment(s));
  std::vector<TeacherRows> computed;
  if (!todo.empty()) {
    auto t = tl().scope(Phase::teacher_forward, step);
    computed = pipeline_->run(todo);
  }
  std::unordered_map<int64_t, TeacherRows> fresh;
  for (auto& r : computed) fresh.emplace(r.segment, std::move(r));
  std::vector<TeacherRows> rows;
  if (pipeline_->last())
    for (const int64_t s : ids) rows.push_back(fresh.count(s) ? fresh.at(s) : *recent_.find(s));
  for (const Segment& g : todo) recent_.add(g.id, pipeline_->last() ? std::move(fresh.at(g.id)) : TeacherRows{});
  if (!pipeline_->last()) return;  // an earlier stage: its hidden states went on to the next
  RowsMessageInfo info;
  info.micro_batch = id;
  info.source = source_;
  info.sender_rank = world_.rank();
  info.k = pipeline_->teacher().k();
  info.position_ce = pipeline_->teacher().position_ce();
  Pending p;
  p.bytes = encode_rows(info, rows);
  {
    auto t = tl().scope(Phase::send, step);
    t.bytes = int64_t(p.bytes.size());
    p.request = world_.isend(student, Tag::rows, p.bytes);
  }
  sends_.push_back(std::move(p));
  in_flight_[size_t(student)].push_back(id);
  max_in_flight_ = std::max(max_in_flight_, int64_t(in_flight_[size_t(student)].size()));
  reap_sends();
}

void TeacherServer::take_credit(int student, int64_t step) {
  auto& q = in_flight_[size_t(student)];
  // Credits already back are taken without waiting; then wait only while none is left.
  while (!q.empty()) {
    std::optional<std::vector<std::byte>> m;
    if (int64_t(q.size()) >= prefetch_) {
      auto t = tl().scope(Phase::wait_credit, step);
      m = world_.recv(student, Tag::credit);
    } else {
      m = world_.try_recv(student, Tag::credit);
      if (!m) return;
    }
    credit_back(student, *m);
  }
}

// A credit from `student`: it must be for the oldest micro-batch sent to it (the student consumes
// them in order).
void TeacherServer::credit_back(int student, std::span<const std::byte> message) {
  auto& q = in_flight_[size_t(student)];
  const int64_t got = read_credit(message, world_.describe(student));
  if (q.empty() || got != q.front())
    fail("rank {}: source {}: a credit for micro-batch {} from student {}, expected one for micro-batch {}",
         world_.rank(), pipeline_->teacher().source(), got, world_.describe(student), q.empty() ? -1 : q.front());
  q.pop_front();
}

void TeacherServer::reap_sends() {
  while (!sends_.empty() && sends_.front().request->done()) sends_.pop_front();
}

void TeacherServer::drain() {
  for (int s = 0; s < int(in_flight_.size()); ++s)
    while (!in_flight_[size_t(s)].empty()) credit_back(s, world_.recv(s, Tag::credit));
  for (auto& p : sends_) p.request->wait();
  sends_.clear();
}

}  // namespace fusellm::dist
