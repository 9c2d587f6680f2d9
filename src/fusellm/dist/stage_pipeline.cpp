#include "fusellm/dist/stage_pipeline.hpp"

#include <fmt/format.h>

#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/dist/hidden_message.hpp"

namespace fusellm::dist {

namespace {

const SourceConfig& source_of(const JobConfig& job, const std::string& source, size_t& index) {
  for (index = 0; index < job.sources.size(); ++index)
    if (job.sources[index].name == source) return job.sources[index];
  fail("{}: no [[source]] named '{}'", job.file, source);
}

}  // namespace

StagePipeline::StagePipeline(const JobConfig& job, const std::string& source,
                             std::shared_ptr<const JobTokenizers> tokenizers, const std::string& vocab_map_path,
                             Transport* transport, int first_rank, Options opt)
    : source_(source), transport_(transport), first_rank_(first_rank), opt_(opt) {
  size_t si = 0;
  const SourceConfig& src = source_of(job, source, si);
  const std::string setting = fmt::format("{}: source[{}].stages", job.where("source", "stages", si), si);
  if (opt_.window < 1) fail("{} ([[source]] '{}'): an in-flight window of {} sends (at least 1)", setting, source, opt_.window);
  if (src.stages > 1) {
    if (!transport_) fail("{} = {}: a source in stages needs a transport between its ranks", setting, src.stages);
    stage_ = transport_->rank() - first_rank_;
    if (stage_ < 0 || stage_ >= src.stages || first_rank_ + src.stages > transport_->size())
      fail("{} = {}: rank {} of {} is not one of the replica's ranks [{}, {})", setting, src.stages,
           transport_->rank(), transport_->size(), first_rank_, first_rank_ + src.stages);
  }
  plan_ = with_context(fmt::format("{} = {} ([[source]] '{}')", setting, src.stages, source),
                       [&] { return model::plan_stages(src.path, src.stages); });
  if (stage_ == 0 && src.stages > 1)
    spdlog::info("[[source]] '{}' in {} pipeline stages, balanced by parameters:\n{}", source, src.stages,
                 plan_.describe());
  teacher_ = std::make_unique<Teacher>(job, source, std::move(tokenizers), vocab_map_path,
                                       plan_.stages[size_t(stage_)].layers);
}

StagePipeline::~StagePipeline() {
  try {
    for (; !sends_.empty(); sends_.pop_front()) sends_.front().request->wait();
  } catch (const std::exception& e) {
    spdlog::error("{}: sends in flight did not complete: {}", where(), e.what());
  }
}

std::string StagePipeline::where() const {
  return fmt::format("[[source]] '{}' stage {} of {}{}", source_, stage_, stages(),
                     transport_ ? fmt::format(" ({})", transport_->describe(transport_->rank())) : "");
}

void StagePipeline::reap_sends() {
  while (!sends_.empty() && sends_.front().request->done()) sends_.pop_front();
}

void StagePipeline::send(int64_t segment, std::vector<std::byte> bytes) {
  while (!uncredited_.empty() && take_credit(false)) {
  }
  while (int64_t(uncredited_.size()) >= opt_.window) take_credit(true);
  reap_sends();
  Send& s = sends_.emplace_back(Send{std::move(bytes), nullptr});
  s.request = transport_->isend(transport_->rank() + 1, Tag::hidden, s.bytes);
  uncredited_.push_back(segment);
}

bool StagePipeline::take_credit(bool wait) {
  const int from = transport_->rank() + 1;
  const std::optional<std::vector<std::byte>> b =
      wait ? std::optional(transport_->recv(from, Tag::credit)) : transport_->try_recv(from, Tag::credit);
  if (!b) return false;
  int64_t id = -1;
  if (b->size() == sizeof(id)) std::memcpy(&id, b->data(), sizeof(id));
  if (id != uncredited_.front())
    fail("a credit from {} ({} bytes) for segment {}, expected one for segment {}", transport_->describe(from),
         b->size(), id, uncredited_.front());
  uncredited_.pop_front();
  return true;
}

void StagePipeline::give_credit(int64_t segment) {
  reap_sends();
  Send& s = sends_.emplace_back(Send{std::vector<std::byte>(sizeof(segment)), nullptr});
  std::memcpy(s.bytes.data(), &segment, sizeof(segment));
  s.request = transport_->isend(transport_->rank() - 1, Tag::credit, s.bytes);
}

void StagePipeline::flush() {
  while (!uncredited_.empty()) take_credit(true);
  for (; !sends_.empty(); sends_.pop_front()) sends_.front().request->wait();
}

std::vector<TeacherRows> StagePipeline::run(std::span<const Segment> segments) {
  try {
    return run_segments(segments);
  } catch (const TransportTimeout& e) {  // keeps its type: the driver tells a dead peer from a bad message
    throw TransportTimeout(where() + ": " + e.what());
  } catch (const Error& e) {
    throw Error(where() + ": " + e.what());
  }
}

std::vector<TeacherRows> StagePipeline::run_segments(std::span<const Segment> segments) {
  const model::Decoder& m = teacher_->model();
  const model::LayerRange r = m.range();
  std::vector<Teacher::Scored> scored;
  for (const Segment& seg : segments) {
    Teacher::Tokens tokens;
    Tensor hidden;
    if (stage_ == 0) {
      tokens = teacher_->tokenize(seg);
      hidden = m.embed(tokens.src_ids);
    } else {
      const int from = transport_->rank() - 1;
      HiddenMessage msg = unpack_hidden(transport_->recv(from, Tag::hidden), seg.id, m.arch().hidden,
                                        transport_->describe(from));
      give_credit(seg.id);
      tokens = std::move(msg.tokens);
      hidden = std::move(msg.hidden);
    }
    m.layers(hidden, r.first, r.last);
    if (!last()) {
      send(seg.id, pack_hidden(seg.id, tokens, hidden));
      continue;
    }
    scored.push_back(teacher_->score(std::move(tokens), m.head(hidden)));
  }
  return last() ? teacher_->finish(segments, scored) : std::vector<TeacherRows>{};
}

}  // namespace fusellm::dist
