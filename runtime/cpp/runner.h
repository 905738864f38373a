// The shared verifier program (.pte from converters/executorch_export.py),
// run through ExecuTorch's Module facade.
//
// Inputs of "forward": x (1,3,64,64) float32, then the per-user slices of
// theta in spec order (for generate="head": head.weight (1,384), head.bias (1,)).
// Constant methods: layout_hash, model_version (int64 of a 16-hex hash) and
// input_size. The Module owns the Program, which therefore outlives every
// Method it runs. Not thread-safe (neither is Module).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "status.h"

namespace hyperverify {

class Runner {
 public:
  // Load the program from its bytes (already checked against the manifest:
  // what was hashed is what runs) and its forward method; HV_PROGRAM for
  // anything that is not a loadable verifier program. `name` is for messages.
  static Result<std::unique_ptr<Runner>> load(std::vector<uint8_t> program, const std::string& name);

  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  int64_t layout_hash() const { return layout_hash_; }
  int64_t model_version() const { return model_version_; }
  int64_t input_size() const { return input_size_; }
  // Number of per-user inputs (the generated slices).
  size_t user_input_count() const;
  // Number of theta values the per-user inputs take, in total.
  size_t user_value_count() const;

  // Copy a user's flat theta into the per-user inputs (split by their shapes).
  Status set_user_values(const std::vector<float>& theta);

  // The input buffer (3 * input_size^2 floats, CHW) that forward() reads.
  float* input() { return input_.data(); }

  // Run forward on input(); returns the logit.
  Result<float> forward();

 private:
  struct State;
  explicit Runner(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
  std::vector<float> input_;
  int64_t layout_hash_ = 0;
  int64_t model_version_ = 0;
  int64_t input_size_ = 0;
};

// The bundle's enrollment program (converters/enroll_program.py: K x 3 x 112
// x 112 RGB floats 0..255 -> the pooled unit embedding and theta): on-device
// enrollment (hv_enroll), and the backbone the cascade escalates to (K = 1,
// the embedding only). Not thread-safe.
class Backbone {
 public:
  static Result<std::unique_ptr<Backbone>> load(std::vector<uint8_t> program, const std::string& name);

  ~Backbone();
  Backbone(const Backbone&) = delete;
  Backbone& operator=(const Backbone&) = delete;

  // The unit embedding of a 112x112x3 uint8 RGB crop (row-major).
  Result<std::vector<float>> embed(const uint8_t* rgb112);

  // (pooled unit embedding, theta) of `count` such crops of one person, one after the other.
  Result<std::pair<std::vector<float>, std::vector<float>>> run(const uint8_t* crops, int count);

 private:
  struct State;
  explicit Backbone(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The bundle's refinement program (converters/refine_program.py: the backend's
// refinement, converters/torch_refinement.py, as three methods), run by
// hv_enroll after the enrollment program, so that a device-made head is the
// backend's (runtime/enroll.py Refiner):
//   iterations()                    constant: how many steps (1..1000)
//   start(small, prior)             small (K, 3, 64, 64): f's normalised input of
//                                   the K enrollment crops; prior (1, D): the
//                                   generated head (D = F + 1)
//     -> positives (1, 2K, D), then the solver's state: p (1, D), zp (1, 2K, 1),
//        zn (1, n), g (1, D), s_history (1, H, D), y_history (1, H, D)
//   step(positives, prior, p, zp, zn, g, s_history, y_history)
//     -> the next state, of the same shapes
// start once, then step `iterations` times, each step's state fed to the next;
// the refined head is the final p. Not thread-safe.
class Refiner {
 public:
  static Result<std::unique_ptr<Refiner>> load(std::vector<uint8_t> program, const std::string& name);

  ~Refiner();
  Refiner(const Refiner&) = delete;
  Refiner& operator=(const Refiner&) = delete;

  // How many times run() executes step (the program's constant method `iterations`).
  int64_t iterations() const;

  // The refined head of `count` crops' inputs (count x HV_INPUT_VALUES floats, CHW, one crop after
  // the other: what preprocess_crop writes) and their generated head `theta`; of theta's size.
  Result<std::vector<float>> run(std::vector<float>& small, int count, const std::vector<float>& theta);

 private:
  static constexpr size_t kStartInputs = 2;  // small, prior
  static constexpr size_t kStateSize = 6;    // p, zp, zn, g, s_history, y_history

  struct State;
  explicit Refiner(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The bundle's detector program (converters/detector_program.py: YuNet, 1 x 3 x
// H x W BGR floats 0..255, H and W multiples of 32 up to 640 -> its twelve heads),
// for the frame path (frame.h). Not thread-safe.
class Detector {
 public:
  static Result<std::unique_ptr<Detector>> load(std::vector<uint8_t> program, const std::string& name);

  ~Detector();
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // The twelve heads for a 3 x height x width CHW image, each flattened, in the program's order.
  Result<std::vector<std::vector<float>>> run(std::vector<float>& chw, int height, int width);

 private:
  struct State;
  explicit Detector(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace hyperverify
