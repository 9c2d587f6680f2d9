#pragma once
// The decoder-only transformer: ONE forward pass for every family (teachers, inference, the
// student), and ONE backward pass for every family (the student), over one flat fp32 buffer
// of parameters laid out by a parameter table (decoder_params.hpp), running its operations on a
// backend (backend.hpp; the CPU one by default).
//
// Per layer (LlamaDecoderLayer, MptBlock, GPTNeoXLayer, GPT2Block):
//   sequential:  x = x + o(attn(norm1 x));  x = x + mlp(norm2 x)
//   parallel:    x = x + o(attn(norm1 x)) + mlp(norm2 x)          (use_parallel_residual)
// with attn = fused QKV projection (+ bias, clip), RoPE on q/k (rotary) and causal attention
// within documents (+ ALiBi, sliding window); mlp = down(act(gate x) * up x) or down(act(up x)).
// Then the final norm and the LM head (the token embedding when tied). The residual stream is
// updated in place by accumulating GEMMs (beta = 1).
//
// The forward pass in three pieces, cut at layer boundaries for pipeline stages
// (dist/stage_pipeline.hpp): embed (ids -> the residual stream [T, hidden]), layers [first, last)
// on it in place, head (final norm and LM head -> logits). forward() runs exactly these pieces on
// the same code, so a model cut into stages computes the same bits as one forward pass.
// A decoder built for a LayerRange (a stage) loads only that range's tensors (decoder_params.hpp)
// into a buffer of the whole model's layout whose other pages are never touched, so a stage's
// resident memory is its own parameters (the untouched part is address space only); it runs the
// pieces its range holds, and forward() only when it holds the whole model.
//
// The save switch: forward(ids, doc_ids, &saved) runs the same operations in the same order and
// also keeps what backward() needs, so the logits are bit for bit those of forward(ids, doc_ids).
// Kept per layer, for T tokens: the layer input and the residual after attention [T, hidden]
// each, q/k/v after clip and RoPE [T, (H + 2 KV) D], the attention output [T, H D] and the MLP's
// pre-activations ([gate | up] [T, 2 I], or up [T, I] for a plain MLP). Recomputed in backward
// instead of kept: the norms' outputs, the MLP's activation, and the attention probabilities
// (never T x T).
//
// Backward (every family; check_trainable says what is refused), layer by layer in reverse:
//   logits = norm(x_L) W_head^T          dW_head += dz^T xn;  dx = norm_bwd(dz W_head)
//   x_{l+1} = x_mid + down(h),  h = act(gate xn2) * up xn2  or  act(up xn2),  xn2 = norm2(x_mid)
//       dW_down += dx^T h (+ bias: column sums);  dh = dx W_down;
//       d[gate|up] = swiglu_bwd  or  d up = dh * act'(up xn2);  dW_[gate;up] += d^T xn2 (+ bias);
//       dx += norm_bwd(d[gate|up] W_[gate;up])
//   x_mid = x_l + o(attn(rope(q), rope(k), v)),  [q|k|v] = clip(xn1 W_[q;k;v]^T + b),  xn1 = norm1(x_l)
//       dW_o += dx^T att (+ bias);  datt = dx W_o;  dqkv = attention_bwd (ALiBi: a constant bias);
//       rope_bwd on dq, dk (the first rotary_dim of each head); clip's mask;
//       dW_[q;k;v] += dqkv^T xn1 (+ bias);  dx += norm_bwd(dqkv W_[q;k;v])
//   parallel residual (GPT-NeoX): x_{l+1} = x_l + o(attn(norm1 x_l)) + down(h(norm2 x_l)): both
//       branches take dx_{l+1}, and dx_l = dx_{l+1} + norm1_bwd(...) + norm2_bwd(...)
//   x_0 = E[ids] (+ P[positions])        dE[ids[t]] += dx_0[t] (+ the head's gradient when tied);
//                                        dP[pos[t]] += dx_0[t]  (GPT-2's learned positions)
// with norm = RMSNorm or LayerNorm (with or without bias). Each backward op lives in its own file
// (train_ops.hpp) with its math. Gradients are added into a buffer of the parameters' layout, so
// several sequences add up into one batch.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <span>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/core/tensor.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/arch.hpp"
#include "fusellm/model/backend.hpp"
#include "fusellm/model/decoder_params.hpp"
#include "fusellm/model/model.hpp"

namespace fusellm::model {

// What one forward pass keeps for its backward pass. Its buffers are reused by the next forward
// pass that saves into it (no page faults for fresh ones each step). The activations are in the
// memory of the backend of the decoder that saved them (the device's for a GPU backend); the
// tokens, document starts and RoPE table are the host's.
//
// Activation recomputation (Megatron-LM's full recomputation per layer, torchtitan's
// activation_checkpoint every N-th layer): with recompute_every = N > 0, every N-th layer
// (1-based: layers N-1, 2N-1, ...) keeps only its input x_in; the backward pass runs that layer's
// forward again from x_in, with the same operations in the same order, just before the layer's
// backward, so the gradients are those of keeping everything. N = 1 keeps [T, hidden] per layer
// instead of [T, 2 hidden + Q + H D + G] for one more forward pass of the layers.
struct SavedActivations {
  struct Layer {
    GrowingBuffer x_in, qkv, att, x_mid, gate_up;
  };
  std::vector<int32_t> ids, doc_start;
  RopeTable rope;
  std::vector<Layer> layers;
  GrowingBuffer x_final;
  GrowingBuffer logits;  // Decoder::forward_in_backend's [T, vocab], and dL/dlogits over them
  int64_t recompute_every = 0;  // set by the owner before forward(); 0: keep every layer
  bool valid = false;           // set by forward, cleared by whoever consumes it
  bool recomputes(int64_t layer) const { return recompute_every > 0 && (layer + 1) % recompute_every == 0; }
};

// Error naming what the backward pass does not implement for this architecture: a gated MLP with
// an activation other than SiLU, clip_qkv together with rotary embeddings.
void check_trainable(const Arch& a);

class Decoder final : public CausalLM {
 public:
  // The whole model, or (range) one pipeline stage's part of it.
  Decoder(Arch arch, const Checkpoint& ck, const Backend& backend = cpu_backend(), LayerRange range = {});

  const ModelInfo& info() const override { return info_; }
  const Arch& arch() const { return arch_; }
  const Backend& backend() const { return *backend_; }  // where the passes run
  const ParamTable& parameter_table() const { return params_.table; }
  const DecoderRegions& regions() const { return params_.regions; }
  const DecoderParams& params() const { return params_; }
  std::span<float> parameters() { return weights_; }
  std::span<const float> parameters() const { return weights_; }
  // A GPU backend's copy of the parameters, the one the ops read (an optimizer on the device
  // writes it in place: parameters() is then stale until copied back); empty on the host.
  std::span<float> device_parameters() {
    if (!device_weights_) return {};
    return {static_cast<float*>(device_weights_->data), weights_.size()};
  }
  // Copies parameters() to the backend's copy the ops read (a GPU backend's device memory) after
  // the host's were changed (an optimizer step, a checkpoint load); nothing on the CPU in fp32.
  void upload_parameters();
  // The precision of the weights the ops read ([train].dtype): F32, parameters() as they are;
  // BF16, a copy of them rounded to bfloat16 (round to nearest even, torch's .to(torch.bfloat16)),
  // Megatron-LM's bf16 model copy beside the fp32 master: parameters() stays the fp32 master that
  // the optimizer updates, and upload_parameters() rounds it into the copy (on the host for the
  // CPU backend, uploaded for a GPU one). The arithmetic stays fp32 (bf16 values, fp32 products
  // and sums) on both backends today. Other types: Error.
  void set_weight_dtype(DType d);
  DType weight_dtype() const { return weight_dtype_; }
  // For a model that never trains (a teacher: no fp32 master to keep): parameters() rounded to
  // `d` in place (BF16: round to nearest even, as set_weight_dtype's copy) and uploaded, so its
  // passes read bf16 values at no extra memory. F32: nothing. Other types: Error.
  void round_parameters_to(DType d);
  // The layers this decoder holds (resolved; the whole model unless built for a stage).
  LayerRange range() const { return range_; }

  // Logits [T, vocab]; see CausalLM::forward for doc_ids. With `save`, also keeps what
  // backward() needs (same logits).
  Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {}) const override {
    return forward(ids, doc_ids, nullptr);
  }
  Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids, SavedActivations* save) const;
  // forward(ids, doc_ids, &save) with the logits left in the backend's memory, in save.logits
  // ([T, vocab]; the same values), for a loss computed there (a GPU's fused classifier): no copy
  // to the host. Returns them.
  std::span<float> forward_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                      SavedActivations& save) const;
  // forward(ids, doc_ids) without saving, its logits left in the backend's memory in `into`
  // ([T, vocab]; the same values), for a teacher's top-k and CE computed there (device/
  // device_scoring.hpp). Error for a model with a logit_scale other than 1 (MPT's, applied on
  // the host by forward()) or a decoder that holds a stage only.
  std::span<const float> logits_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                           GrowingBuffer& into) const;
  // The pieces of forward() (see above); doc_ids as forward's. embed needs range().first == 0,
  // head range().last == layers, layers a sub-range of range().
  Tensor embed(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {}) const;  // [T, hidden]
  void layers(Tensor& hidden, int64_t first, int64_t last, std::span<const int32_t> doc_ids = {}) const;
  Tensor head(const Tensor& hidden) const;  // logits [T, vocab]

  // How backward() adds the pass's gradient into `grads`:
  //   kAsComputed  every op adds its contribution into `grads` as it runs: g = ((g + c_1) + c_2)...
  //                Right for a `grads` of zeros (a step's first micro-batch): g = the pass's gradient.
  //   kPerPart     the pass's gradient of each part of the model (the token and position
  //                embeddings; the final norm and an untied head; each layer) is computed into
  //                zeros of its own and added to `grads` when that part is done: g = g + (c_1 + c_2
  //                ...), torch's .grad accumulation over micro-batches (AccumulateGrad adds each
  //                backward's sum for the tensor, a tied weight's two uses summed first), so a
  //                step's gradient is (g_0 + g_1) + g_2 ... as data-parallel ranks sum it. The
  //                scratch is one part's (decoder_params.hpp's GradientPart): a layer's parameters
  //                (or the head's), plus the embeddings', held over the pass; not a second buffer
  //                of the whole model.
  enum class GradientAdd { kAsComputed, kPerPart };
  // Where kPerPart may hand each part's gradient instead of adding it to `grads`: its offset in
  // the buffer and its values (in the backend's memory, valid during the call). ZeRO-2's students
  // send it to the owners of its shards (dist/sharded_gradients.hpp) and keep no `grads` at all.
  using PartSink = std::function<void(int64_t begin, std::span<const float> grad)>;
  // dlogits [T, vocab]: dL/dlogits of the forward pass that filled `saved`; adds the gradient of
  // every parameter into `grads` (parameter_table()'s layout) as `how` says, or with a `sink`
  // (kPerPart only) hands each part to it and leaves `grads` (which may be empty) alone. Needs
  // check_trainable(arch()). Both in the backend's memory (a GPU backend: device memory, from its
  // allocate()).
  void backward(const SavedActivations& saved, std::span<const float> dlogits, std::span<float> grads,
                GradientAdd how = GradientAdd::kAsComputed, const PartSink* sink = nullptr) const;

 private:
  // Activations of a forward pass that are not kept, reused between calls so that a pass does
  // not page-fault in fresh buffers (a tenth of a pass at T = 512 otherwise). A concurrent call
  // that finds it in use allocates its own.
  // In the backend's memory; the tokens, document starts, positions and logits are copied
  // there when it is not the host's.
  struct Workspace {
    GrowingBuffer x, xn, qkv, att, mlp, h;
    GrowingBuffer ids, doc_start, pos, logits;
  };
  struct Pass;      // one forward pass's buffers and sequence (decoder.cpp)
  struct Backward;  // one backward pass's gradients of activations (decoder_backward.cpp)
  void open_pass(Pass& p, int64_t T, std::span<const int32_t> doc_ids, float* x, SavedActivations* save) const;
  void embed_into(Pass& p, std::span<const int32_t> ids) const;
  void head_into(Pass& p, Tensor& logits) const;
  MatView head_in_backend(Pass& p, GrowingBuffer& into) const;  // the head's GEMM into `into`
  std::span<float> head_output_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                          SavedActivations* save, GrowingBuffer& into) const;
  bool begin_forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids, SavedActivations* save) const;
  void run_saving(Pass& p, std::span<const int32_t> ids, SavedActivations& save) const;
  void run_layers(Pass& p, std::span<const int32_t> ids) const;
  void layer_forward(Pass& p, int64_t l) const;
  // A layer that kept only x_in, run again from it (decoder.cpp), and the buffers it runs in.
  struct Recomputed {
    SavedActivations::Layer layer;
    GrowingBuffer x, xn, h;
  };
  void rerun_layer(const SavedActivations& s, int64_t l, std::span<const int32_t> doc_start, Recomputed& r) const;
  // The backward pass's buffers (decoder_backward.cpp), kept between calls as the forward's
  // Workspace is, so that a micro-batch's backward pass allocates nothing (no page faults on the
  // host, no cudaMalloc / cudaFree on a GPU, which wait for the device): one layer's gradients of
  // the activations, the tokens copied in, a recomputed layer, the gradient parts' scratch
  // (GradientAdd::kPerPart). A concurrent call that finds it in use allocates its own.
  struct BackwardWorkspace {
    GrowingBuffer xn, dxn, dxn2, dx, h, dh, dgu, datt, dqkv;
    GrowingBuffer ids, pos, starts;
    Recomputed recomputed;
    GrowingBuffer embedding_scratch, part_scratch;
  };
  const SavedActivations::Layer& recompute_layer(Backward& b, int64_t l) const;
  void require_range(const char* what, int64_t first, int64_t last) const;
  void norm_backward(Backward& b, ConstMatView x, const Region& w, const Region& bias, ConstMatView dy, MatView dx,
                     bool accumulate) const;
  void mlp_backward(Backward& b, const SavedActivations::Layer& S, int64_t l) const;
  void attention_backward(Backward& b, const SavedActivations::Layer& S, int64_t l) const;
  AttentionShape attention_shape(int64_t layer) const;
  void norm(ConstMatView x, const Region& w, const Region& b, MatView y) const;

  Arch arch_;
  ModelInfo info_;
  const Backend* backend_;
  DecoderParams params_;
  LayerRange range_;
  // The flat buffer, params_.table's layout, allocated without being written (DefaultInit) so
  // that the pages of tensors a stage does not load stay untouched.
  template <class T>
  struct DefaultInit : std::allocator<T> {
    template <class U>
    struct rebind {
      using other = DefaultInit<U>;
    };
    template <class U>
    void construct(U* p) noexcept {
      ::new (static_cast<void*>(p)) U;
    }
  };
  std::vector<float, DefaultInit<float>> weights_;
  // The copy the ops read (forward and backward) when the backend's memory is not the host's (a
  // GPU's): weights_ uploaded (upload_parameters), or written in place by an optimizer on the
  // device (device_parameters()).
  std::unique_ptr<Backend::Memory> device_weights_;
  DType weight_dtype_ = DType::F32;
  std::vector<float> rounded_;  // the bf16-valued copy on the host (weight_dtype_ BF16)
  std::span<const float> op_weights() const;
  std::vector<float> alibi_;
  mutable std::mutex workspace_mutex_;
  mutable Workspace workspace_;
  mutable std::mutex backward_mutex_;
  mutable BackwardWorkspace backward_workspace_;
};

// config.json's model_type picks the family (registry.cpp); `range` as Decoder's.
Arch read_arch(const std::string& dir);
std::unique_ptr<Decoder> load_decoder(const std::string& dir, LayerRange range = {},
                                      const Backend& backend = cpu_backend());

}  // namespace fusellm::model
