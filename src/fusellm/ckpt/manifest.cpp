#include "fusellm/ckpt/manifest.hpp"

#include <sstream>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {
constexpr const char* kFormat = "fusellm-checkpoint";
}

std::string Manifest::text() const {
  std::string t = fmt::format("{}\nstep {}\n", kFormat, step);
  for (const DigestRecord& f : files) {
    t += f.xxh64 ? digest_line(f.name, FileDigest{f.size, *f.xxh64}) : fmt::format("{} {}", f.name, f.size);
    t += "\n";
  }
  return t;
}

Manifest Manifest::parse(const std::string& text, const std::string& where) {
  std::istringstream m(text);
  std::string format, step_line, line;
  std::getline(m, format);
  std::getline(m, step_line);
  Manifest out;
  while (std::getline(m, line)) {
    if (line.empty()) continue;
    const auto r = parse_digest_line(line);
    if (!r) fail("{}: damaged COMPLETE marker (line \"{}\")", where, line);
    if (out.find(r->name)) fail("{}: damaged COMPLETE marker ({} listed twice)", where, r->name);
    out.files.push_back(*r);
  }
  std::istringstream sl(step_line);
  std::string step_word, rest;
  out.step = -1;
  if (format != kFormat || !(sl >> step_word >> out.step) || step_word != "step" || (sl >> rest) || out.files.empty())
    fail("{}: damaged COMPLETE marker", where);
  return out;
}

const DigestRecord* Manifest::find(const std::string& file) const {
  for (const DigestRecord& f : files)
    if (f.name == file) return &f;
  return nullptr;
}

}  // namespace fusellm
