#include "control/state_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "control/spec_json.hpp"

namespace egressd {
namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

bool fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string StateDir::prepare() {
  for (const std::string& dir : {root_, directory()}) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_text("mkdir " + dir);
  }
  return {};
}

std::string StateDir::save(const SandboxSpec& spec, uint64_t generation) {
  nlohmann::json body = spec_to_json(spec);
  body["generation"] = generation;
  body.erase("secret_names");
  if (!spec.secrets.empty()) {
    if (!box_) return "no key to seal the secrets of " + spec.id + " with";
    nlohmann::json sealed = nlohmann::json::object();
    for (const auto& [name, value] : spec.secrets)
      sealed[name] = box_->seal(value, spec.id + "/" + name);
    body["sealed_secrets"] = std::move(sealed);
  }
  std::string text = body.dump(2) + "\n";
  std::string final_path = directory() + "/" + spec.id + ".json";
  std::string temp_path = final_path + ".tmp";
  int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_text("open " + temp_path);
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return errno_text("write " + temp_path);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return errno_text("fsync " + temp_path);
  }
  ::close(fd);
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0)
    return errno_text("rename " + temp_path);
  if (!fsync_path(directory(), O_RDONLY | O_DIRECTORY)) return errno_text("fsync " + directory());
  return {};
}

std::string StateDir::remove(const std::string& id) {
  std::string path = directory() + "/" + id + ".json";
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_text("unlink " + path);
  if (!fsync_path(directory(), O_RDONLY | O_DIRECTORY)) return errno_text("fsync " + directory());
  return {};
}

bool StateDir::has(const std::string& id) const {
  struct stat info {};
  return ::stat((directory() + "/" + id + ".json").c_str(), &info) == 0;
}

std::vector<StoredSandbox> StateDir::load(std::vector<std::string>& problems) const {
  std::vector<StoredSandbox> out;
  DIR* dir = ::opendir(directory().c_str());
  if (!dir) {
    if (errno != ENOENT) problems.push_back(errno_text("opendir " + directory()));
    return out;
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > 5 && name.ends_with(".json")) names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string path = directory() + "/" + name;
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto body = nlohmann::json::parse(text.str(), nullptr, false);
    std::string id = name.substr(0, name.size() - 5);
    if (body.is_discarded() || !body.is_object()) {
      problems.push_back(path + ": not valid JSON; skipped");
      continue;
    }
    nlohmann::json sealed = body.contains("sealed_secrets") ? body["sealed_secrets"] : nullptr;
    body.erase("sealed_secrets");
    auto spec = spec_from_json(id, body);
    if (auto* error = std::get_if<FieldError>(&spec)) {
      problems.push_back(path + ": " + error->field + ": " + error->message + "; skipped");
      continue;
    }
    uint64_t generation = body.contains("generation") && body["generation"].is_number_unsigned()
                              ? body["generation"].get<uint64_t>()
                              : 0;
    // A secret that does not open (another key, an altered file) is left out and said: the
    // sandbox's requests that need it are refused (missing_secret), never sent without it.
    if (sealed.is_object()) {
      for (const auto& [name, value] : sealed.items()) {
        std::optional<std::string> plain;
        if (value.is_string() && box_)
          plain = box_->unseal(value.get<std::string>(), id + "/" + name);
        if (plain && !secret_name_error(name)) {
          std::get<SandboxSpec>(spec).secrets[name] = std::move(*plain);
        } else {
          problems.push_back(path + ": secret \"" + name +
                             "\" does not open with this key; left out");
        }
      }
    }
    out.push_back(StoredSandbox{std::get<SandboxSpec>(spec), generation});
  }
  return out;
}

}  // namespace egressd
