// See runner.h.
#include "runner.h"

#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/extension/threadpool/threadpool_guard.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <numeric>
#include <tuple>

#include "hyperverify.h"

namespace hyperverify {

using executorch::aten::ScalarType;
using executorch::extension::BufferDataLoader;
using executorch::extension::TensorPtr;
using executorch::extension::from_blob;
using executorch::extension::module::Module;
using executorch::extension::threadpool::NoThreadPoolGuard;
using EtError = executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Tag;

namespace {

std::string describe(EtError error) {
  char text[32];
  std::snprintf(text, sizeof text, "ExecuTorch error 0x%x", static_cast<unsigned>(error));
  return text;
}

// Run a constant method (no inputs, one int output).
Result<int64_t> constant(Module& module, const std::string& name) {
  auto out = module.execute(name);
  if (!out.ok())
    return fail(HV_PROGRAM, "not a hyperverify program: constant method '" + name +
                                "' cannot run (" + describe(out.error()) + ")");
  if (out->size() != 1 || !(*out)[0].isInt())
    return fail(HV_PROGRAM, "constant method '" + name + "' does not return one integer");
  return (*out)[0].toInt();
}

// A State holding `program` and a Module over it (the bytes outlive the
// Module) with `methods` loaded ({"forward"} for all but the refinement
// program); the caller holds a NoThreadPoolGuard, so XNNPACK's delegate gets
// no thread pool.
template <typename State>
Result<std::unique_ptr<State>> load_methods(std::vector<uint8_t> program, const std::string& name,
                                            std::initializer_list<const char*> methods) {
  auto state = std::make_unique<State>();
  state->program = std::move(program);
  state->module = std::make_unique<Module>(
      std::make_unique<BufferDataLoader>(state->program.data(), state->program.size()));
  EtError error = state->module->load(executorch::runtime::Program::Verification::InternalConsistency);
  if (error != EtError::Ok)
    return fail(HV_PROGRAM, name + ": not a loadable ExecuTorch program (" + describe(error) + ")");
  for (const char* method : methods) {
    error = state->module->load_method(method);
    if (error != EtError::Ok)
      return fail(HV_PROGRAM, name + ": method '" + method + "' cannot be loaded (" + describe(error) + ")");
  }
  return state;
}

}  // namespace

struct Runner::State {
  std::vector<uint8_t> program;                 // the bytes the module reads (outlive it)
  std::unique_ptr<Module> module;
  std::vector<std::vector<float>> user;         // per-user input buffers
  std::vector<TensorPtr> tensors;               // views on input_ and user (kept alive)
  std::vector<EValue> inputs;                   // what forward receives
};

Runner::Runner(std::unique_ptr<State> state) : state_(std::move(state)) {}
Runner::~Runner() = default;

Result<std::unique_ptr<Runner>> Runner::load(std::vector<uint8_t> program, const std::string& name) {
  // The network runs on the calling thread: XNNPACK takes its pthreadpool when
  // the delegate is initialised (load_method), and a null pool means "inline".
  NoThreadPoolGuard no_pool;
  auto loaded = load_methods<State>(std::move(program), name, {"forward"});
  if (!loaded.ok()) return loaded.error();
  std::unique_ptr<State> state = std::move(loaded.value());
  Module& module = *state->module;

  auto layout = constant(module, "layout_hash");
  if (!layout.ok()) return layout.error();
  auto version = constant(module, "model_version");
  if (!version.ok()) return version.error();
  auto size = constant(module, "input_size");
  if (!size.ok()) return size.error();
  if (size.value() != HV_INPUT_SIZE)
    return fail(HV_PROGRAM, "program takes " + std::to_string(size.value()) +
                                "-pixel inputs, this runtime makes " + std::to_string(HV_INPUT_SIZE));

  auto meta = module.method_meta("forward");
  if (!meta.ok()) return fail(HV_PROGRAM, "forward has no metadata (" + describe(meta.error()) + ")");
  if (meta->num_inputs() < 2 || meta->num_outputs() != 1)
    return fail(HV_PROGRAM, "forward must take x and the user's slices and return one logit");
  std::unique_ptr<Runner> runner(new Runner(std::move(state)));
  State& s = *runner->state_;
  runner->input_.assign(3 * HV_INPUT_SIZE * HV_INPUT_SIZE, 0.0f);
  for (size_t i = 0; i < meta->num_inputs(); i++) {
    auto tag = meta->input_tag(i);
    auto info = meta->input_tensor_meta(i);
    if (!tag.ok() || *tag != Tag::Tensor || !info.ok() || info->scalar_type() != ScalarType::Float)
      return fail(HV_PROGRAM, "forward input " + std::to_string(i) + " is not a float tensor");
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    size_t numel = std::accumulate(sizes.begin(), sizes.end(), size_t{1},
                                   [](size_t a, int32_t b) { return a * static_cast<size_t>(b); });
    float* data;
    if (i == 0) {
      const std::vector<executorch::aten::SizesType> x = {1, 3, HV_INPUT_SIZE, HV_INPUT_SIZE};
      if (sizes != x) return fail(HV_PROGRAM, "forward input 0 is not (1, 3, 64, 64)");
      data = runner->input_.data();
    } else {
      s.user.emplace_back(numel, 0.0f);
      data = s.user.back().data();
    }
    s.tensors.push_back(from_blob(data, std::move(sizes), ScalarType::Float));
  }
  for (const TensorPtr& tensor : s.tensors) s.inputs.emplace_back(*tensor);
  runner->layout_hash_ = layout.value();
  runner->model_version_ = version.value();
  runner->input_size_ = size.value();
  return runner;
}

size_t Runner::user_input_count() const { return state_->user.size(); }

size_t Runner::user_value_count() const {
  size_t total = 0;
  for (const auto& slice : state_->user) total += slice.size();
  return total;
}

Status Runner::set_user_values(const std::vector<float>& theta) {
  if (theta.size() != user_value_count())
    return fail(HV_LAYOUT, "user file holds " + std::to_string(theta.size()) +
                               " values, the program needs " + std::to_string(user_value_count()));
  size_t offset = 0;
  for (auto& slice : state_->user) {
    std::memcpy(slice.data(), theta.data() + offset, slice.size() * sizeof(float));
    offset += slice.size();
  }
  return Ok{};
}

Result<float> Runner::forward() {
  NoThreadPoolGuard no_pool;
  auto out = state_->module->execute("forward", state_->inputs);
  if (!out.ok()) return fail(HV_PROGRAM, "forward failed (" + describe(out.error()) + ")");
  if (out->size() != 1 || !(*out)[0].isTensor())
    return fail(HV_PROGRAM, "forward did not return one tensor");
  const auto& tensor = (*out)[0].toTensor();
  if (tensor.scalar_type() != ScalarType::Float || tensor.numel() != 1)
    return fail(HV_PROGRAM, "forward did not return one float logit");
  return tensor.const_data_ptr<float>()[0];
}

struct Backbone::State {
  std::vector<uint8_t> program;  // the bytes the module reads (outlive it)
  std::unique_ptr<Module> module;
  std::vector<float> input;      // K x 3 x 112 x 112, CHW, 0..255
};

Backbone::Backbone(std::unique_ptr<State> state) : state_(std::move(state)) {}
Backbone::~Backbone() = default;

Result<std::unique_ptr<Backbone>> Backbone::load(std::vector<uint8_t> program, const std::string& name) {
  NoThreadPoolGuard no_pool;
  auto loaded = load_methods<State>(std::move(program), name, {"forward"});
  if (!loaded.ok()) return loaded.error();
  return std::unique_ptr<Backbone>(new Backbone(std::move(loaded.value())));
}

Result<std::pair<std::vector<float>, std::vector<float>>> Backbone::run(const uint8_t* crops, int count) {
  NoThreadPoolGuard no_pool;
  State& s = *state_;
  constexpr size_t kPlane = HV_CROP_SIZE * HV_CROP_SIZE;
  s.input.assign(static_cast<size_t>(count) * 3 * kPlane, 0.0f);
  for (int k = 0; k < count; k++) {
    const uint8_t* crop = crops + static_cast<size_t>(k) * kPlane * 3;
    float* planes = s.input.data() + static_cast<size_t>(k) * 3 * kPlane;
    for (size_t p = 0; p < kPlane; p++)
      for (size_t c = 0; c < 3; c++) planes[c * kPlane + p] = static_cast<float>(crop[p * 3 + c]);
  }
  auto tensor = from_blob(s.input.data(), {count, 3, HV_CROP_SIZE, HV_CROP_SIZE}, ScalarType::Float);
  auto out = s.module->execute("forward", {EValue(*tensor)});
  if (!out.ok()) return fail(HV_PROGRAM, "the enrollment program failed (" + describe(out.error()) + ")");
  if (out->size() != 2 || !(*out)[0].isTensor() || !(*out)[1].isTensor())
    return fail(HV_PROGRAM, "the enrollment program did not return (embedding, theta)");
  std::pair<std::vector<float>, std::vector<float>> result;
  for (size_t i = 0; i < 2; i++) {
    const auto& tensor_out = (*out)[i].toTensor();
    if (tensor_out.scalar_type() != ScalarType::Float || tensor_out.numel() < 1)
      return fail(HV_PROGRAM, "the enrollment program's outputs are not float vectors");
    const float* data = tensor_out.const_data_ptr<float>();
    (i == 0 ? result.first : result.second).assign(data, data + tensor_out.numel());
  }
  return result;
}

Result<std::vector<float>> Backbone::embed(const uint8_t* rgb112) {
  auto out = run(rgb112, 1);
  if (!out.ok()) return out.error();
  return std::move(out.value().first);
}

namespace {

// A float tensor the refinement owns: a method's output copied out of the method's memory (which
// its next execute overwrites), or what a method is given (from_blob over it, of these sizes).
struct Owned {
  std::vector<executorch::aten::SizesType> sizes;
  std::vector<float> values;

  TensorPtr view() { return from_blob(values.data(), sizes, ScalarType::Float); }
};

// The float tensors `out` (`count` of them, all it returns) as buffers of ours.
Result<std::vector<Owned>> take_outputs(const std::vector<EValue>& out, size_t count, const std::string& what) {
  if (out.size() != count)
    return fail(HV_PROGRAM, what + " returned " + std::to_string(out.size()) + " values, not " +
                                std::to_string(count));
  std::vector<Owned> owned(count);
  for (size_t i = 0; i < count; i++) {
    if (!out[i].isTensor() || out[i].toTensor().scalar_type() != ScalarType::Float)
      return fail(HV_PROGRAM, what + "'s output " + std::to_string(i) + " is not a float tensor");
    const auto& tensor = out[i].toTensor();
    owned[i].sizes.assign(tensor.sizes().begin(), tensor.sizes().end());
    owned[i].values.assign(tensor.const_data_ptr<float>(), tensor.const_data_ptr<float>() + tensor.numel());
  }
  return owned;
}

using Sizes = std::vector<executorch::aten::SizesType>;

}  // namespace

struct Refiner::State {
  std::vector<uint8_t> program;  // the bytes the module reads (outlive it)
  std::unique_ptr<Module> module;
  int64_t iterations = 0;        // how many times run() executes step
};

Refiner::Refiner(std::unique_ptr<State> state) : state_(std::move(state)) {}
Refiner::~Refiner() = default;

Result<std::unique_ptr<Refiner>> Refiner::load(std::vector<uint8_t> program, const std::string& name) {
  NoThreadPoolGuard no_pool;
  auto loaded = load_methods<State>(std::move(program), name, {"start", "step"});
  if (!loaded.ok()) return loaded.error();
  std::unique_ptr<State> state = std::move(loaded.value());
  // Checked here rather than when it runs: another role's program in its place is a bundle error
  // to report by its shape, not an ExecuTorch argument error.
  for (const auto& [method, inputs, outputs] :
       {std::tuple<const char*, size_t, size_t>{"start", kStartInputs, 1 + kStateSize},
        std::tuple<const char*, size_t, size_t>{"step", 2 + kStateSize, kStateSize}}) {
    auto meta = state->module->method_meta(method);
    if (!meta.ok())
      return fail(HV_PROGRAM, name + ": " + method + " has no metadata (" + describe(meta.error()) + ")");
    if (meta->num_inputs() != inputs || meta->num_outputs() != outputs)
      return fail(HV_PROGRAM, name + ": not a refinement program (start must take the crops' inputs and the "
                                     "generated head and return the positives and the solver's state, step the "
                                     "positives, the head and the state and return the next state)");
  }
  auto iterations = constant(*state->module, "iterations");
  if (!iterations.ok()) return iterations.error();
  if (iterations.value() < 1 || iterations.value() > 1000)
    return fail(HV_PROGRAM, name + ": the refinement program's iteration count is not a small integer (" +
                                std::to_string(iterations.value()) + ")");
  state->iterations = iterations.value();
  return std::unique_ptr<Refiner>(new Refiner(std::move(state)));
}

int64_t Refiner::iterations() const { return state_->iterations; }

Result<std::vector<float>> Refiner::run(std::vector<float>& small, int count, const std::vector<float>& theta) {
  NoThreadPoolGuard no_pool;
  Module& module = *state_->module;
  if (count < 1 || small.size() != static_cast<size_t>(count) * HV_INPUT_VALUES || theta.empty())
    return fail(HV_BAD_INPUT, "the refinement takes count x 3 x 64 x 64 inputs and a head");
  const auto views = static_cast<executorch::aten::SizesType>(2 * count);  // each crop and its mirror image
  const auto dim = static_cast<executorch::aten::SizesType>(theta.size());
  Owned prior{{1, dim}, theta};
  TensorPtr inputs = from_blob(small.data(), {count, 3, HV_INPUT_SIZE, HV_INPUT_SIZE}, ScalarType::Float);
  TensorPtr prior_view = prior.view();

  // start(small, prior) -> positives (1, 2K, D), then the state: p (1, D), zp (1, 2K, 1), zn (1, n),
  // g (1, D), s_history (1, H, D), y_history (1, H, D).
  auto out = module.execute("start", {EValue(*inputs), EValue(*prior_view)});
  if (!out.ok()) return fail(HV_PROGRAM, "the refinement program's start failed (" + describe(out.error()) + ")");
  auto started = take_outputs(*out, 1 + kStateSize, "the refinement program's start");
  if (!started.ok()) return started.error();
  Owned positives = std::move(started.value()[0]);
  std::vector<Owned> state(std::make_move_iterator(started.value().begin() + 1),
                           std::make_move_iterator(started.value().end()));
  {
    const Sizes& zn = state[2].sizes;
    const Sizes& history = state[4].sizes;
    if (positives.sizes != Sizes{1, views, dim} || state[0].sizes != Sizes{1, dim} ||
        state[1].sizes != Sizes{1, views, 1} || zn.size() != 2 || zn[0] != 1 || zn[1] < 1 ||
        state[3].sizes != Sizes{1, dim} || history.size() != 3 || history[0] != 1 || history[1] < 1 ||
        history[2] != dim || state[5].sizes != history)
      return fail(HV_PROGRAM, "the refinement program's start did not return the positives and the state of a "
                              "head of " + std::to_string(dim) + " values and " + std::to_string(count) + " crop(s)");
  }

  // step(positives, prior, *state) -> the next state, of the same shapes, `iterations` times; each
  // output is copied out before the next execute overwrites it.
  TensorPtr positives_view = positives.view();
  for (int64_t i = 0; i < state_->iterations; i++) {
    std::vector<TensorPtr> views_of_state;  // kept alive until step has run
    views_of_state.reserve(kStateSize);
    std::vector<EValue> step_inputs = {EValue(*positives_view), EValue(*prior_view)};
    for (Owned& part : state) {
      views_of_state.push_back(part.view());
      step_inputs.emplace_back(*views_of_state.back());
    }
    auto stepped = module.execute("step", step_inputs);
    if (!stepped.ok())
      return fail(HV_PROGRAM, "the refinement program's step failed (" + describe(stepped.error()) + ")");
    auto next = take_outputs(*stepped, kStateSize, "the refinement program's step");
    if (!next.ok()) return next.error();
    for (size_t k = 0; k < kStateSize; k++)
      if (next.value()[k].sizes != state[k].sizes)
        return fail(HV_PROGRAM, "the refinement program's step changed the shape of its state's part " +
                                    std::to_string(k));
    state = std::move(next.value());
  }
  std::vector<float>& refined = state[0].values;  // the final p
  if (refined.size() != theta.size())
    return fail(HV_PROGRAM, "the refinement program returned " + std::to_string(refined.size()) +
                                " values for a head of " + std::to_string(theta.size()));
  return std::move(refined);
}

struct Detector::State {
  std::vector<uint8_t> program;  // the bytes the module reads (outlive it)
  std::unique_ptr<Module> module;
};

Detector::Detector(std::unique_ptr<State> state) : state_(std::move(state)) {}
Detector::~Detector() = default;

Result<std::unique_ptr<Detector>> Detector::load(std::vector<uint8_t> program, const std::string& name) {
  NoThreadPoolGuard no_pool;
  auto loaded = load_methods<State>(std::move(program), name, {"forward"});
  if (!loaded.ok()) return loaded.error();
  return std::unique_ptr<Detector>(new Detector(std::move(loaded.value())));
}

Result<std::vector<std::vector<float>>> Detector::run(std::vector<float>& chw, int height, int width) {
  NoThreadPoolGuard no_pool;
  auto tensor = from_blob(chw.data(), {1, 3, height, width}, ScalarType::Float);
  auto out = state_->module->execute("forward", {EValue(*tensor)});
  if (!out.ok()) return fail(HV_PROGRAM, "the detector program failed (" + describe(out.error()) + ")");
  constexpr size_t kHeads = 12;
  if (out->size() != kHeads) return fail(HV_PROGRAM, "the detector program did not return YuNet's twelve heads");
  std::vector<std::vector<float>> heads;
  for (const EValue& value : *out) {
    if (!value.isTensor() || value.toTensor().scalar_type() != ScalarType::Float)
      return fail(HV_PROGRAM, "the detector program's heads are not float tensors");
    const auto& head = value.toTensor();
    heads.emplace_back(head.const_data_ptr<float>(), head.const_data_ptr<float>() + head.numel());
  }
  return heads;
}

}  // namespace hyperverify
