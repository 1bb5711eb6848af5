// libFuzzer target for the readers of data-set folders, whose file names come from whoever made
// the data set: list_spoof_frames (the NUAA layout of the liveness evaluation), list_lfw_images
// and list_identity_images (the LFW layout and a deployment's calibration folders).
//
// Input: one entry per line, built as a tree in /dev/shm before the readers run:
//   "PATH"          a regular file (parent folders made as needed)
//   "d PATH"        a folder
//   "l PATH>OTHER"  a symbolic link at PATH to the regular file made earlier at OTHER
// Components "", "." and ".." are dropped; nothing is made below a symbolic link.
//
// Contracts (include/facelogin/eval.h), checked against a model of the tree the input made:
// - list_spoof_frames: kNotFound when neither ClientRaw/ nor ImposterRaw/ is a folder; otherwise
//   exactly the files "<F>/<S>/<S>_<g>_<t>_<s>_<frame>.jpg" (all fields digits, frame at most six
//   digits) of real subject folders S (symbolic links to folders are not followed; a link to a
//   file counts), each with its fields parsed, live first, sorted by sequence then frame.
// - list_lfw_images: exactly the real files "<N>/<N>_<dddd>.jpg" of real folders, sorted.
// - list_identity_images: exactly the real files of real folders whose name, in lower case,
//   ends in .jpg, .jpeg or .png and does not start with '.', sorted.
//
// Run: build-fuzz/fuzz/dataset_dirs_fuzzer CORPUS -dict=fuzz/dataset_dirs.dict

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "facelogin/eval.h"
#include "fuzz_util.h"

namespace {

namespace fs = std::filesystem;
namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;

constexpr std::size_t kMaxEntries = 32;
constexpr std::size_t kMaxDepth = 4;
constexpr std::size_t kMaxComponent = 100;

enum class Kind { kDir, kFile, kLink };

// The tree as the input made it: relative path -> kind.
using Tree = std::map<std::string, Kind>;

std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> parts;
  for (std::string_view part : fz::split(path, "/")) {
    if (part.empty() || part == "." || part == "..") {
      continue;
    }
    std::string p(part.substr(0, kMaxComponent));
    std::replace(p.begin(), p.end(), '\0', '_');
    parts.push_back(std::move(p));
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += (i ? "/" : "") + parts[i];
  }
  return out;
}

// Makes the entries of `input` below `root`; returns what was made.
Tree build(const fs::path& root, std::string_view input) {
  Tree tree;
  std::size_t made = 0;
  for (std::string_view line : fz::split(input, "\n")) {
    if (++made > kMaxEntries) {
      break;
    }
    Kind kind = Kind::kFile;
    std::string_view target;
    if (line.starts_with("d ")) {
      kind = Kind::kDir;
      line.remove_prefix(2);
    } else if (line.starts_with("l ")) {
      kind = Kind::kLink;
      line.remove_prefix(2);
      const std::size_t arrow = line.find('>');
      if (arrow == std::string_view::npos) {
        continue;
      }
      target = line.substr(arrow + 1);
      line = line.substr(0, arrow);
    }
    const std::vector<std::string> parts = components(line);
    if (parts.empty() || parts.size() > kMaxDepth) {
      continue;
    }
    // Every parent must be a folder of the model (or absent: made now); the entry itself new.
    bool usable = !tree.contains(join(parts, parts.size()));
    for (std::size_t i = 1; i < parts.size() && usable; ++i) {
      const auto it = tree.find(join(parts, i));
      usable = it == tree.end() || it->second == Kind::kDir;
    }
    const std::string link_target = join(components(target), components(target).size());
    if (kind == Kind::kLink) {
      const auto it = tree.find(link_target);
      usable = usable && it != tree.end() && it->second == Kind::kFile;
    }
    if (!usable) {
      continue;
    }
    std::error_code ec;
    for (std::size_t i = 1; i < parts.size(); ++i) {
      tree[join(parts, i)] = Kind::kDir;
    }
    const fs::path path = root / join(parts, parts.size());
    fs::create_directories(path.parent_path(), ec);
    if (kind == Kind::kDir) {
      fs::create_directory(path, ec);
    } else if (kind == Kind::kFile) {
      fz::write_file(path, "x");
    } else {
      fs::create_symlink(root / link_target, path, ec);
    }
    if (ec) {
      std::fprintf(stderr, "dataset_dirs_fuzzer: cannot make %s: %s\n", path.c_str(),
                   ec.message().c_str());
      std::abort();
    }
    tree[join(parts, parts.size())] = kind;
  }
  return tree;
}

bool digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Entries of the model directly inside `dir` ("" for the root): name -> kind.
std::map<std::string, Kind> children(const Tree& tree, const std::string& dir) {
  std::map<std::string, Kind> out;
  const std::string prefix = dir.empty() ? "" : dir + "/";
  for (const auto& [path, kind] : tree) {
    if (path.starts_with(prefix) && path.find('/', prefix.size()) == std::string::npos &&
        path.size() > prefix.size()) {
      out[path.substr(prefix.size())] = kind;
    }
  }
  return out;
}

struct ExpectedFrame {
  std::string key, subject, type, sequence;
  bool live;
  int frame;
};

void check_spoof(const fs::path& root, const Tree& tree) {
  auto frames = facelogin::eval::list_spoof_frames(root);
  const auto top = children(tree, "");
  const bool client = top.contains("ClientRaw") && top.at("ClientRaw") == Kind::kDir;
  const bool imposter = top.contains("ImposterRaw") && top.at("ImposterRaw") == Kind::kDir;
  if (!client && !imposter) {
    FUZZ_REQUIRE(!frames && frames.error().code() == ErrorCode::kNotFound,
                 frames ? "listed frames without a folder" : frames.error().to_string());
    return;
  }
  FUZZ_REQUIRE(frames.has_value(), frames.error().to_string());
  std::vector<ExpectedFrame> expected;
  for (const auto& [folder, live] : {std::pair{"ClientRaw", true}, std::pair{"ImposterRaw", false}}) {
    if (!top.contains(folder) || top.at(folder) != Kind::kDir) {
      continue;
    }
    for (const auto& [subject, kind] : children(tree, folder)) {
      if (kind != Kind::kDir) {
        continue;
      }
      for (const auto& [name, file_kind] : children(tree, std::string(folder) + "/" + subject)) {
        if (file_kind == Kind::kDir || !name.ends_with(".jpg")) {
          continue;
        }
        const auto f = fz::split(std::string_view(name).substr(0, name.size() - 4), "_");
        if (f.size() != 5 || f[0] != subject || !std::all_of(f.begin(), f.end(), digits) ||
            f[4].size() > 6) {
          continue;
        }
        expected.push_back({std::string(folder) + "/" + subject + "/" + name, subject,
                            std::string(f[2]),
                            std::string(f[0]) + "_" + std::string(f[1]) + "_" +
                                std::string(f[2]) + "_" + std::string(f[3]),
                            live, std::stoi(std::string(f[4]))});
      }
    }
  }
  FUZZ_REQUIRE(frames->size() == expected.size(), "list_spoof_frames: a different number of frames");
  std::map<std::string, const ExpectedFrame*> by_key;
  for (const auto& e : expected) {
    by_key[e.key] = &e;
  }
  for (std::size_t i = 0; i < frames->size(); ++i) {
    const auto& got = (*frames)[i];
    const auto it = by_key.find(got.key);
    FUZZ_REQUIRE(it != by_key.end(), got.key);
    const ExpectedFrame& e = *it->second;
    FUZZ_REQUIRE(got.subject == e.subject && got.type == e.type && got.sequence == e.sequence &&
                     got.live == e.live && got.frame == e.frame,
                 got.key);
    by_key.erase(it);  // each file once
    if (i > 0) {
      const auto& prev = (*frames)[i - 1];
      const bool ordered =
          prev.live != got.live ? prev.live
          : prev.sequence != got.sequence ? prev.sequence < got.sequence
                                          : prev.frame <= got.frame;
      FUZZ_REQUIRE(ordered, prev.key + " before " + got.key);
    }
  }
}

void check_identity_lists(const fs::path& root, const Tree& tree) {
  std::vector<std::string> lfw, identity;
  for (const auto& [person, kind] : children(tree, "")) {
    if (kind != Kind::kDir) {
      continue;
    }
    for (const auto& [file, file_kind] : children(tree, person)) {
      if (file_kind != Kind::kFile) {
        continue;  // folders, and symbolic links (not followed)
      }
      if (file.size() == person.size() + 9 && file.starts_with(person + "_") &&
          file.ends_with(".jpg") && digits(std::string_view(file).substr(person.size() + 1, 4))) {
        lfw.push_back(person + "/" + file);
      }
      std::string lower = file;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!lower.starts_with(".") &&
          (lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png"))) {
        identity.push_back(person + "/" + file);
      }
    }
  }
  std::sort(lfw.begin(), lfw.end());
  std::sort(identity.begin(), identity.end());
  auto got_lfw = facelogin::eval::list_lfw_images(root);
  FUZZ_REQUIRE(got_lfw.has_value(), got_lfw.error().to_string());
  FUZZ_REQUIRE(*got_lfw == lfw, "list_lfw_images differs from the model");
  auto got_identity = facelogin::eval::list_identity_images(root);
  FUZZ_REQUIRE(got_identity.has_value(), got_identity.error().to_string());
  FUZZ_REQUIRE(*got_identity == identity, "list_identity_images differs from the model");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path root = fz::scratch_dir() / "tree";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root);
  const Tree tree = build(root, fz::as_text(data, size));
  check_spoof(root, tree);
  check_identity_lists(root, tree);

  auto absent = facelogin::eval::list_lfw_images(root / "absent");
  FUZZ_REQUIRE(!absent && absent.error().code() == ErrorCode::kNotFound, "an absent folder");
  return 0;
}
