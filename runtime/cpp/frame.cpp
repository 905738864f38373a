// See frame.h. Decoding and suppression follow OpenCV's FaceDetectorYN
// (objdetect/src/face_detect.cpp) and NMSBoxes, written from their description.
#include "frame.h"

#include <algorithm>
#include <cmath>

#include "hyperverify.h"
#include "preprocess.h"

namespace hyperverify {

const double kArcfaceTemplate[5][2] = {
    {38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041}};

namespace {

constexpr int kStrides[3] = {8, 16, 32};

struct Candidate {
  float values[14];  // x1, y1, w, h, 5 landmarks (detector pixels)
  float score;
};

// cv::Rect2i's intersection over union, as NMSBoxes computes it for integer boxes.
float overlap(const int a[4], const int b[4]) {
  double area_a = static_cast<double>(a[2]) * a[3], area_b = static_cast<double>(b[2]) * b[3];
  int x1 = std::max(a[0], b[0]), y1 = std::max(a[1], b[1]);
  int x2 = std::min(a[0] + a[2], b[0] + b[2]), y2 = std::min(a[1] + a[3], b[1] + b[3]);
  double inter = x2 > x1 && y2 > y1 ? static_cast<double>(x2 - x1) * (y2 - y1) : 0.0;
  if (area_a + area_b <= 1e-12) return 0.0f;
  return 1.0f - static_cast<float>(1.0 - inter / (area_a + area_b - inter));
}

}  // namespace

DetectorInput detector_input(const uint8_t* rgb, int height, int width) {
  DetectorInput input;
  int border = std::min(height, width) < kPadBelow
                   ? static_cast<int>(std::nearbyint(kPadFraction * std::max(height, width)))
                   : 0;
  int bordered_h = height + 2 * border, bordered_w = width + 2 * border;
  std::vector<uint8_t> bordered;
  const uint8_t* image = rgb;
  if (border) {
    bordered.assign(static_cast<size_t>(bordered_h) * bordered_w * 3, 0);
    for (int y = 0; y < height; y++)
      std::copy(rgb + static_cast<size_t>(y) * width * 3, rgb + static_cast<size_t>(y + 1) * width * 3,
                bordered.data() + (static_cast<size_t>(y + border) * bordered_w + border) * 3);
    image = bordered.data();
  }
  double scale = std::min(1.0, static_cast<double>(kDetectMaxSide) / std::max(bordered_h, bordered_w));
  int h = bordered_h, w = bordered_w;
  std::vector<uint8_t> reduced;
  if (scale < 1.0) {  // cv::resize(fx = fy = scale): the size rounded half to even
    h = static_cast<int>(std::nearbyint(bordered_h * scale));
    w = static_cast<int>(std::nearbyint(bordered_w * scale));
    reduced.resize(static_cast<size_t>(h) * w * 3);
    resize_area(image, bordered_h, bordered_w, 3, reduced.data(), h, w);
    image = reduced.data();
  }
  input.valid_height = h;
  input.valid_width = w;
  input.height = (h + kDetectorStride - 1) / kDetectorStride * kDetectorStride;
  input.width = (w + kDetectorStride - 1) / kDetectorStride * kDetectorStride;
  input.scale = scale;
  input.border = border;
  size_t plane = static_cast<size_t>(input.height) * input.width;
  input.chw.assign(3 * plane, 0.0f);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t* p = image + (static_cast<size_t>(y) * w + x) * 3;
      size_t at = static_cast<size_t>(y) * input.width + x;
      for (int c = 0; c < 3; c++) input.chw[c * plane + at] = p[2 - c];  // BGR planes
    }
  return input;
}

std::vector<Face> decode_faces(const std::vector<std::vector<float>>& heads, const DetectorInput& input) {
  std::vector<Candidate> candidates;
  for (int i = 0; i < 3; i++) {
    int stride = kStrides[i], cols = input.width / stride, rows = input.height / stride;
    const std::vector<float>& cls = heads[i];
    const std::vector<float>& obj = heads[3 + i];
    const std::vector<float>& bbox = heads[6 + i];
    const std::vector<float>& kps = heads[9 + i];
    size_t cells = static_cast<size_t>(rows) * cols;
    if (cls.size() != cells || obj.size() != cells || bbox.size() != 4 * cells || kps.size() != 10 * cells) continue;
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        size_t idx = static_cast<size_t>(r) * cols + c;
        float score = std::sqrt(std::clamp(cls[idx], 0.0f, 1.0f) * std::clamp(obj[idx], 0.0f, 1.0f));
        if (score < kScoreThreshold) continue;
        Candidate face;
        float cx = (c + bbox[idx * 4 + 0]) * stride, cy = (r + bbox[idx * 4 + 1]) * stride;
        float w = std::exp(bbox[idx * 4 + 2]) * stride, h = std::exp(bbox[idx * 4 + 3]) * stride;
        face.values[0] = cx - w / 2.f;
        face.values[1] = cy - h / 2.f;
        face.values[2] = w;
        face.values[3] = h;
        for (int n = 0; n < 5; n++) {
          face.values[4 + 2 * n] = (kps[idx * 10 + 2 * n] + c) * stride;
          face.values[5 + 2 * n] = (kps[idx * 10 + 2 * n + 1] + r) * stride;
        }
        face.score = score;
        candidates.push_back(face);
      }
  }
  // NMSBoxes: scores above the threshold, best first (stable), top_k of them, then greedy suppression.
  std::vector<size_t> order;
  for (size_t i = 0; i < candidates.size(); i++)
    if (candidates[i].score > kScoreThreshold) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return candidates[a].score > candidates[b].score; });
  if (order.size() > static_cast<size_t>(kTopK)) order.resize(kTopK);
  std::vector<size_t> kept;
  for (size_t index : order) {
    const float* v = candidates[index].values;
    int box[4] = {static_cast<int>(v[0]), static_cast<int>(v[1]), static_cast<int>(v[2]), static_cast<int>(v[3])};
    bool keep = true;
    for (size_t other : kept) {
      const float* o = candidates[other].values;
      int other_box[4] = {static_cast<int>(o[0]), static_cast<int>(o[1]), static_cast<int>(o[2]),
                          static_cast<int>(o[3])};
      if (overlap(box, other_box) > kNmsThreshold) {
        keep = false;
        break;
      }
    }
    if (keep) kept.push_back(index);
  }
  if (candidates.size() == 1) kept.assign(1, 0);  // FaceDetectorYN skips the suppression for one face
  std::vector<Face> faces;
  for (size_t index : kept) {
    const Candidate& found = candidates[index];
    Face face;
    for (int k = 0; k < 14; k++) {
      double value = static_cast<double>(found.values[k]) / input.scale;
      bool coordinate = k < 2 || k >= 4;
      (k < 4 ? face.box[k] : face.landmarks[k - 4]) = coordinate ? value - input.border : value;
    }
    face.score = found.score;
    faces.push_back(face);
  }
  std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) {
    return a.area() > b.area() || (a.area() == b.area() && a.score > b.score);
  });
  return faces;
}

namespace {

// numpy's sum of a contiguous float64 array (the first value, plus the pairwise sum of
// the rest: eight accumulators, then the tail), so that the alignment matrix equals
// faces.similarity_transform's to the bit for up to 128 values.
double numpy_sum(const double* v, int n) {
  if (n == 0) return 0.0;
  const double* rest = v + 1;
  int m = n - 1;
  double tail;
  if (m < 8) {
    tail = 0.0;
    for (int i = 0; i < m; i++) tail += rest[i];
  } else {
    double r[8];
    for (int k = 0; k < 8; k++) r[k] = rest[k];
    int i = 8;
    for (; i < m - (m % 8); i += 8)
      for (int k = 0; k < 8; k++) r[k] += rest[i + k];
    tail = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < m; i++) tail += rest[i];
  }
  return v[0] + tail;
}

}  // namespace

void align_crop(const uint8_t* rgb, int height, int width, const double landmarks[10], uint8_t* crop) {
  // faces.similarity_transform (the closed form, numpy's summation order), landmarks -> template.
  double mus[2] = {0, 0}, mud[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    mus[k] = landmarks[k];
    mud[k] = kArcfaceTemplate[0][k];
    for (int i = 1; i < 5; i++) {
      mus[k] += landmarks[2 * i + k];
      mud[k] += kArcfaceTemplate[i][k];
    }
    mus[k] /= 5;
    mud[k] /= 5;
  }
  double s[10], d[10], ss[10], sd[10], cross[5];
  for (int i = 0; i < 5; i++)
    for (int k = 0; k < 2; k++) {
      s[2 * i + k] = landmarks[2 * i + k] - mus[k];
      d[2 * i + k] = kArcfaceTemplate[i][k] - mud[k];
    }
  for (int j = 0; j < 10; j++) {
    ss[j] = s[j] * s[j];
    sd[j] = s[j] * d[j];
  }
  for (int i = 0; i < 5; i++) cross[i] = s[2 * i] * d[2 * i + 1] - s[2 * i + 1] * d[2 * i];
  double norm = numpy_sum(ss, 10);
  double a = numpy_sum(sd, 10) / norm, b = numpy_sum(cross, 5) / norm;
  double m[6] = {a, -b, mud[0] - (a * mus[0] + -b * mus[1]), b, a, mud[1] - (b * mus[0] + a * mus[1])};
  // cv::invertAffineTransform, then cv::warpAffine's fixed-point bilinear path (INTER_LINEAR,
  // BORDER_CONSTANT 0): source positions in 1/1024 px, rounded to 1/32 px, weights of 15 bits.
  double det = m[0] * m[4] - m[1] * m[3];
  det = det != 0 ? 1.0 / det : 0.0;
  double i00 = m[4] * det, i11 = m[0] * det, i01 = -m[1] * det, i10 = -m[3] * det;
  double i02 = -i00 * m[2] - i01 * m[5], i12 = -i10 * m[2] - i11 * m[5];
  constexpr int kAbBits = 10, kInterBits = 5, kTab = 1 << kInterBits;
  constexpr double kAbScale = 1 << kAbBits;
  constexpr int kRoundDelta = (1 << kAbBits) / kTab / 2;
  auto pixel = [&](int x, int y, int c) -> int {
    return x >= 0 && y >= 0 && x < width && y < height ? rgb[(static_cast<size_t>(y) * width + x) * 3 + c] : 0;
  };
  for (int y = 0; y < HV_CROP_SIZE; y++) {
    long x_row = std::lrint((i01 * y + i02) * kAbScale) + kRoundDelta;
    long y_row = std::lrint((i11 * y + i12) * kAbScale) + kRoundDelta;
    for (int x = 0; x < HV_CROP_SIZE; x++) {
      long sx = (x_row + std::lrint(i00 * x * kAbScale)) >> (kAbBits - kInterBits);
      long sy = (y_row + std::lrint(i10 * x * kAbScale)) >> (kAbBits - kInterBits);
      int x0 = static_cast<int>(sx >> kInterBits), y0 = static_cast<int>(sy >> kInterBits);
      int fx = static_cast<int>(sx & (kTab - 1)), fy = static_cast<int>(sy & (kTab - 1));
      int w00 = (kTab - fx) * (kTab - fy) * kTab, w01 = fx * (kTab - fy) * kTab;
      int w10 = (kTab - fx) * fy * kTab, w11 = fx * fy * kTab;
      for (int c = 0; c < 3; c++) {
        int sum = pixel(x0, y0, c) * w00 + pixel(x0 + 1, y0, c) * w01 + pixel(x0, y0 + 1, c) * w10 +
                  pixel(x0 + 1, y0 + 1, c) * w11;
        crop[(static_cast<size_t>(y) * HV_CROP_SIZE + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp((sum + (1 << 14)) >> 15, 0, 255));
      }
    }
  }
}

double sharpness(const uint8_t* crop) {
  constexpr int n = HV_CROP_SIZE;
  std::vector<int> grey(n * n);
  for (int i = 0; i < n * n; i++) {  // cv::cvtColor(RGB2GRAY) on 8 bits: fixed point, 14 bits
    const uint8_t* p = crop + 3 * i;
    grey[i] = (p[0] * 4899 + p[1] * 9617 + p[2] * 1868 + (1 << 13)) >> 14;
  }
  auto at = [&](int x, int y) {  // BORDER_REFLECT_101
    x = x < 0 ? -x : x >= n ? 2 * n - 2 - x : x;
    y = y < 0 ? -y : y >= n ? 2 * n - 2 - y : y;
    return grey[y * n + x];
  };
  std::vector<double> laplacian(n * n);
  double sum = 0;
  for (int y = 0; y < n; y++)
    for (int x = 0; x < n; x++) {
      laplacian[y * n + x] = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4 * at(x, y);
      sum += laplacian[y * n + x];
    }
  double mean = sum / (n * n), squares = 0;
  for (double v : laplacian) squares += (v - mean) * (v - mean);
  return squares / (n * n);
}

}  // namespace hyperverify
