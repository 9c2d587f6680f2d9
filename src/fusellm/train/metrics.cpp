#include "fusellm/train/metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}

}  // namespace

// Model FLOPs of one trained token (forward + backward = 3 x forward, 2 FLOPs per multiply-add),
// PaLM's accounting (Chowdhery et al. 2022, appendix B): 6 per weight of every matrix product
// (the embedding lookup is none, the output head is one) plus causal attention's two products,
// 6 * layers * heads * head_dim * T per token at sequence length T. Achieved model TFLOP/s over
// the hardware's peak is MFU.
double model_flops_per_token(const model::Arch& a, int64_t T) {
  const double Hd = double(a.hidden), qd = double(a.heads * a.head_dim), kvd = double(a.kv_heads * a.head_dim);
  const double per_layer = Hd * qd * 2 + Hd * kvd * 2 + 3 * Hd * double(a.intermediate);
  const double matmul = double(a.layers) * per_layer + Hd * double(a.vocab);
  return 6 * matmul + 6 * double(a.layers) * qd * double(T);
}

Metrics::Metrics(MetricsSettings s)
    : set_(std::move(s)), out_(set_.path, std::ios::app), tty_(set_.progress && ::isatty(2)), t0_(Clock::now()),
      interval_start_(t0_), wins_(set_.sources.size(), 0), weight_sum_(set_.sources.size(), 0.0) {
  if (!out_) fail("{}: cannot open for writing", set_.path);
}

void Metrics::record(const StepLog& s, const StepTerms& terms, int64_t epoch, int64_t done, bool last) {
  const size_t K = set_.sources.size();
  tokens_ += terms.tokens;
  sequences_ += terms.sequences;
  for (size_t j = 0; j < K && j < terms.wins.size(); ++j) wins_[j] += int64_t(terms.wins[j]);
  for (size_t j = 0; j < K && j < terms.weights.size(); ++j) weight_sum_[j] += terms.weights[j];
  if (s.step % set_.log_interval == 0 || last) {
    const auto now = Clock::now();
    const double sec = std::chrono::duration<double>(now - interval_start_).count();
    const double tps = sec > 0 ? double(tokens_) / sec : 0.0;
    const nlohmann::json m = line(s, epoch, tps);
    out_ << m.dump() << "\n";
    out_.flush();
    if (set_.progress) human_line(s, m, tps, done);
    interval_start_ = now;
    tokens_ = 0;
    sequences_ = 0;
    std::fill(wins_.begin(), wins_.end(), 0);
    std::fill(weight_sum_.begin(), weight_sum_.end(), 0.0);
  }
  if (tty_) bar(s, done);
}

nlohmann::json Metrics::line(const StepLog& s, int64_t epoch, double tps) const {
  nlohmann::json m = {{"step", s.step}, {"tokens", s.tokens}, {"loss", s.loss}, {"clm", s.clm},
                      {"fusion", s.fusion}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"tokens_per_s", tps},
                      {"model_tflops", tps * set_.flops_per_token * 1e-12}, {"epoch", epoch}};
  // Over the interval's sequences: how often each source won (MinCE), its mean weight (AvgCE).
  const auto per_source = [&](auto value) {
    nlohmann::json w = nlohmann::json::object();
    for (size_t j = 0; j < set_.sources.size(); ++j) w[set_.sources[j]] = sequences_ > 0 ? value(j) / double(sequences_) : 0.0;
    return w;
  };
  if (set_.fusion == kernels::FusionMode::kMinCE) m["win_rate"] = per_source([&](size_t j) { return double(wins_[j]); });
  if (set_.fusion == kernels::FusionMode::kAvgCE) m["avg_weight"] = per_source([&](size_t j) { return weight_sum_[j]; });
  return m;
}

// The time this run has left, from its mean step time so far.
double Metrics::eta(int64_t step, int64_t done) const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0_).count();
  return elapsed / double(done) * double(std::min(set_.total_steps - step, set_.run_steps - done));
}

void Metrics::human_line(const StepLog& s, const nlohmann::json& m, double tps, int64_t done) const {
  std::string wr;
  if (m.contains("win_rate"))
    for (auto& [k, v] : m["win_rate"].items()) wr += fmt::format(" {}:{:.2f}", k, v.get<double>());
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "step %lld/%lld  loss %.4f (clm %.4f, fusion %.4f)  lr %.3g  grad_norm %.3g  %.0f tok/s%s%s  eta %s\n",
               (long long)s.step, (long long)set_.total_steps, s.loss, s.clm, s.fusion, s.lr, s.grad_norm, tps,
               wr.empty() ? "" : "  win", wr.c_str(), fmt_duration(done > 0 ? eta(s.step, done) : 0).c_str());
}

void Metrics::bar(const StepLog& s, int64_t done) const {
  const int width = 30;
  const int filled = int(double(width) * double(s.step) / double(set_.total_steps));
  std::fprintf(stderr, "\r\033[K[%s%s] %lld/%lld eta %s", std::string(size_t(filled), '#').c_str(),
               std::string(size_t(width - filled), '.').c_str(), (long long)s.step, (long long)set_.total_steps,
               fmt_duration(eta(s.step, done)).c_str());
  std::fflush(stderr);
}

void Metrics::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace fusellm
