#pragma once
// A ControlApi over a fresh state_dir in /tmp, removed afterwards: shared by the API's and the
// control server's tests.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "app/daemon.hpp"
#include "control/api.hpp"

namespace egressd::testing {

struct ApiFixture {
  std::string dir;
  Config config;
  std::unique_ptr<Shared> shared;
  SecretBox box = SecretBox::ephemeral();
  std::unique_ptr<StateDir> state;
  std::unique_ptr<ControlApi> api;

  explicit ApiFixture(const std::string& state_subdir = "") {
    char pattern[] = "/tmp/egressd-api-XXXXXX";
    dir = mkdtemp(pattern);
    shared = std::make_unique<Shared>(Settings::from(config));
    state = std::make_unique<StateDir>(state_subdir.empty() ? dir : dir + "/" + state_subdir, &box);
    REQUIRE(state->prepare().empty());
    api = std::make_unique<ControlApi>(shared->control(), *state);
  }
  ~ApiFixture() { std::filesystem::remove_all(dir); }
};

}  // namespace egressd::testing
