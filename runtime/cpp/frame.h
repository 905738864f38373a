// A camera frame -> the face to judge and its aligned crop: the C++ twin of
// runtime/faces.py (detection rules, alignment) and the quality gates of
// runtime/verifier.py. The detector network itself is the bundle's program
// (runner.h Detector); decoding its heads and the non-maximum suppression follow
// OpenCV's FaceDetectorYN, which the Python runtime calls.
#pragma once

#include <cstdint>
#include <vector>

namespace hyperverify {

// Facts of runtime/faces.py and runtime/verifier.py, restated (C++ cannot import
// them; tests/test_cpp_frame.py checks that they are equal).
constexpr float kScoreThreshold = 0.6f;  // faces.SCORE_THRESHOLD
constexpr float kNmsThreshold = 0.3f;    // faces.NMS_THRESHOLD
constexpr int kTopK = 50;                // faces.TOP_K
constexpr int kDetectMaxSide = 640;      // faces.DETECT_MAX_SIDE
constexpr int kPadBelow = 160;           // faces.PAD_BELOW
constexpr double kPadFraction = 0.25;    // faces.PAD_FRACTION
constexpr double kMinFacePx = 48;        // verifier.MIN_FACE_PX
constexpr double kMinDetectorScore = 0.75;  // verifier.MIN_DETECTOR_SCORE
constexpr double kMinSharpness = 15.0;   // verifier.MIN_SHARPNESS
constexpr double kAmbiguousArea = 0.5;   // verifier.AMBIGUOUS_AREA
constexpr int kDetectorStride = 32;      // YuNet's coarsest stride: its input is padded to a multiple
extern const double kArcfaceTemplate[5][2];  // faces.ARCFACE_TEMPLATE

struct Face {
  double box[4];        // x, y, width, height in frame pixels
  double landmarks[10]; // 5 x (x, y), template order
  double score;
  double area() const { return box[2] * box[3]; }
};

// What YuNet reads for an RGB frame: the frame as BGR, black borders around a
// small frame (faces.PAD_BELOW), reduced by area interpolation to at most
// kDetectMaxSide, then padded at the bottom and right to multiples of 32.
struct DetectorInput {
  std::vector<float> chw;  // 3 x height x width BGR floats 0..255
  int height = 0, width = 0;        // padded to multiples of kDetectorStride
  int valid_height = 0, valid_width = 0;  // the image inside the padding
  double scale = 1.0;      // frame (with its border) -> detector pixels
  int border = 0;          // black border added around a small frame, in frame pixels
};
DetectorInput detector_input(const uint8_t* rgb, int height, int width);

// YuNet's twelve heads (cls, obj, bbox, kps at strides 8, 16, 32) -> faces in
// frame coordinates, sorted by the faces.py rule (largest box, then score).
std::vector<Face> decode_faces(const std::vector<std::vector<float>>& heads, const DetectorInput& input);

// faces.align: the similarity warp of the five landmarks onto the template,
// 112x112x3 RGB, bilinear, black outside (cv::warpAffine's fixed-point path).
void align_crop(const uint8_t* rgb, int height, int width, const double landmarks[10], uint8_t* crop);

// verifier.sharpness: variance of the Laplacian of the crop's grey image.
double sharpness(const uint8_t* crop);

}  // namespace hyperverify
