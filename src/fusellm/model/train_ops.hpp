#pragma once
// The CPU backward operations of the fp32 training pass (every family the decoder runs), one per file in model/
// (llm.c's layout: the math above each function, citing the PyTorch op whose autograd it
// reproduces), behind backend.hpp as the CPU backend's. They complement ops.hpp (the forward
// ops): each backward takes what its forward saw (or recomputes it: norm outputs, the MLP's
// activation and the attention probabilities are recomputed, never stored) and the gradient of
// its output.
// Weight and bias gradients accumulate (+=), so several sequences add up into one batch.
#include <cstdint>
#include <span>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

// ---- linear_backward.cpp ----------------------------------------------------------------------
// For y = x W^T + b (nn.Linear): dx (+)= dy W,  dW += dy^T x,  db += sum_rows dy.
void linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate);
void linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw);
void bias_backward(ConstMatView dy, std::span<float> db);

// ---- rmsnorm_backward.cpp ---------------------------------------------------------------------
// For y = rmsnorm(x) * w: dx (+)= ..., dw += ... (see the file).
void rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                      std::span<float> dw, bool accumulate);

// ---- layernorm_backward.cpp -------------------------------------------------------------------
// For y = layernorm(x) * w (+ b): dx (+)= ..., dw += ..., db += ... (db empty: no bias).
void layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                        std::span<float> dw, std::span<float> db, bool accumulate);

// ---- activation_backward.cpp ------------------------------------------------------------------
// For h = act(pre) (the plain MLP): dh <- dh * act'(pre), in place.
void activation_backward(Activation a, ConstMatView pre, MatView dh);

// ---- clamp_backward.cpp -----------------------------------------------------------------------
// For y = clamp(x, -c, c) (MPT's clip_qkv), from y: dy <- dy * [|y| < c], in place.
void clamp_backward(ConstMatView y, float c, MatView dy);

// ---- rope_backward.cpp ------------------------------------------------------------------------
// Gradient through apply_rope, in place: rotates by -theta.
void apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads, int64_t head_dim);

// ---- swiglu_backward.cpp ----------------------------------------------------------------------
// gate_up [T, 2n] holds the pre-activations [gate | up]; dh [T, n] the gradient of
// silu(gate) * up. Writes d[gate | up] into dgate_up [T, 2n]. (h = silu(gate) * up itself is
// recomputed by the forward's gated_activation, so that it is bit for bit what the forward used.)
void swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up);

// ---- embedding.cpp ----------------------------------------------------------------------------
// nn.Embedding's backward, a scatter-add of the rows: dtable[ids[t]] += dx[t].
void embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable);

// ---- attention_backward.cpp -------------------------------------------------------------------
// qkv [T, (H + 2 KV) D] as causal_attention read it (q, k after RoPE), out [T, H D] what it
// wrote, dout its gradient; writes dqkv [T, (H + 2 KV) D] (gradients of the post-RoPE q, k and v).
// Masks and bias as the forward: doc_start (packed documents), s.sliding_window, s.alibi.
void causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                               std::span<const int32_t> doc_start, const AttentionShape& s, MatView dqkv);

}  // namespace fusellm::model
