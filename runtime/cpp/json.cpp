// See json.h.
#include "json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

namespace hyperverify {

const Json* Json::get(const std::string& key) const {
  for (const auto& member : members)
    if (member.first == key) return &member.second;
  return nullptr;
}

namespace {

constexpr size_t kMaxIntegerDigits = 4300;  // Python's int() limit for a decimal string

class Parser {
 public:
  Parser(const char* data, size_t size) : p_(data), end_(data + size) {}

  bool document(Json& out) {
    space();
    if (!value(out, 0)) return false;
    space();
    return p_ == end_ || failed("extra data after the document");
  }
  const std::string& why() const { return why_; }

 private:
  bool failed(const char* message) {
    if (why_.empty()) why_ = message;
    return false;
  }
  void space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) p_++;
  }
  bool literal(const char* word) {
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return failed("bad literal");
    p_ += n;
    return true;
  }

  bool value(Json& out, int depth) {
    if (depth > kMaxJsonDepth) return failed("nested too deep");
    if (p_ == end_) return failed("unexpected end");
    switch (*p_) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': out.kind = Json::String; return string(out.text);
      case 't': out.kind = Json::Bool; out.boolean = true; return literal("true");
      case 'f': out.kind = Json::Bool; out.boolean = false; return literal("false");
      case 'n': out.kind = Json::Null; return literal("null");
      default: return number(out);
    }
  }

  bool object(Json& out, int depth) {
    out.kind = Json::Object;
    p_++;
    space();
    std::set<std::string> keys;
    if (p_ < end_ && *p_ == '}') { p_++; return true; }
    while (true) {
      space();
      if (p_ == end_ || *p_ != '"') return failed("expected a key");
      std::string key;
      if (!string(key)) return false;
      if (!keys.insert(key).second) return failed("duplicate key");
      space();
      if (p_ == end_ || *p_ != ':') return failed("expected ':'");
      p_++;
      space();
      Json child;
      if (!value(child, depth + 1)) return false;
      out.members.emplace_back(std::move(key), std::move(child));
      space();
      if (p_ == end_) return failed("unexpected end");
      if (*p_ == ',') { p_++; continue; }
      if (*p_ == '}') { p_++; return true; }
      return failed("expected ',' or '}'");
    }
  }

  bool array(Json& out, int depth) {
    out.kind = Json::Array;
    p_++;
    space();
    if (p_ < end_ && *p_ == ']') { p_++; return true; }
    while (true) {
      space();
      Json child;
      if (!value(child, depth + 1)) return false;
      out.items.push_back(std::move(child));
      space();
      if (p_ == end_) return failed("unexpected end");
      if (*p_ == ',') { p_++; continue; }
      if (*p_ == ']') { p_++; return true; }
      return failed("expected ',' or ']'");
    }
  }

  static void put_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  bool hex4(unsigned& code) {
    if (end_ - p_ < 4) return failed("short \\u escape");
    code = 0;
    for (int i = 0; i < 4; i++) {
      char c = *p_++;
      code <<= 4;
      if (c >= '0' && c <= '9') code |= c - '0';
      else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
      else return failed("bad \\u escape");
    }
    return true;
  }

  // One UTF-8 sequence (strict, as Python's decode), copied to out.
  bool utf8(std::string& out) {
    const unsigned char* s = reinterpret_cast<const unsigned char*>(p_);
    size_t left = end_ - p_;
    unsigned char c = s[0];
    size_t more;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) more = 1;
    else if (c == 0xE0) { more = 2; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) more = 2;
    else if (c == 0xED) { more = 2; hi = 0x9F; }
    else if (c == 0xF0) { more = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) more = 3;
    else if (c == 0xF4) { more = 3; hi = 0x8F; }
    else return failed("invalid UTF-8");
    if (left <= more || s[1] < lo || s[1] > hi) return failed("invalid UTF-8");
    for (size_t k = 2; k <= more; k++)
      if (s[k] < 0x80 || s[k] > 0xBF) return failed("invalid UTF-8");
    out.append(p_, more + 1);
    p_ += more + 1;
    return true;
  }

  bool string(std::string& out) {
    p_++;  // opening quote
    while (true) {
      if (p_ == end_) return failed("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') { p_++; return true; }
      if (c < 0x20) return failed("control character in a string");
      if (c >= 0x80) {
        if (!utf8(out)) return false;
        continue;
      }
      if (c != '\\') { out += static_cast<char>(c); p_++; continue; }
      p_++;
      if (p_ == end_) return failed("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code;
          if (!hex4(code)) return false;
          if (code >= 0xDC00 && code <= 0xDFFF) return failed("lone surrogate");
          if (code >= 0xD800 && code <= 0xDBFF) {
            unsigned low;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return failed("lone surrogate");
            p_ += 2;
            if (!hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return failed("lone surrogate");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          put_utf8(out, code);
          break;
        }
        default: return failed("bad escape");
      }
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  bool number(Json& out) {
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') p_++;
    if (p_ == end_ || !digit(*p_)) return failed("unexpected character");
    if (*p_ == '0') p_++;
    else while (p_ < end_ && digit(*p_)) p_++;
    bool integer = true;
    if (p_ < end_ && *p_ == '.') {
      integer = false;
      p_++;
      if (p_ == end_ || !digit(*p_)) return failed("bad number");
      while (p_ < end_ && digit(*p_)) p_++;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      p_++;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) p_++;
      if (p_ == end_ || !digit(*p_)) return failed("bad number");
      while (p_ < end_ && digit(*p_)) p_++;
    }
    std::string token(start, p_);
    if (integer && token.size() - (token[0] == '-') > kMaxIntegerDigits) return failed("integer too long");
    errno = 0;
    out.kind = Json::Number;
    out.integer = integer;
    out.number = std::strtod(token.c_str(), nullptr);  // overflow: +-HUGE_VAL (inf), as Python
    return true;
  }

  const char* p_;
  const char* end_;
  std::string why_;
};

}  // namespace

Result<Json> parse_json(const char* data, size_t size, hv_status code) {
  Parser parser(data, size);
  Json out;
  if (!parser.document(out)) return fail(code, "malformed JSON (" + parser.why() + ")");
  return out;
}

}  // namespace hyperverify
