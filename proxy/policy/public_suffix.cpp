#include "policy/public_suffix.hpp"

#include <libpsl.h>

#include <memory>
#include <string>

namespace egressd {
namespace {

struct PslDeleter {
  void operator()(psl_ctx_t* context) const {
    if (context != psl_builtin()) psl_free(context);
  }
};

const psl_ctx_t* public_suffix_list() {
  static const std::unique_ptr<psl_ctx_t, PslDeleter> list = [] {
    psl_ctx_t* loaded = psl_load_file("/usr/share/publicsuffix/public_suffix_list.dat");
    return std::unique_ptr<psl_ctx_t, PslDeleter>(loaded ? loaded
                                                         : const_cast<psl_ctx_t*>(psl_builtin()));
  }();
  return list.get();
}

}  // namespace

bool is_public_suffix(std::string_view name) {
  const psl_ctx_t* list = public_suffix_list();
  if (list == nullptr) return name.find('.') == std::string_view::npos;
  std::string terminated(name);
  return psl_is_public_suffix2(list, terminated.c_str(), PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE) !=
         0;
}

std::string_view registrable_domain(std::string_view name) {
  // From the shortest suffix up: the first that is not a public suffix is the registrable one.
  size_t end = name.size();
  size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return name;
  while (dot != std::string_view::npos) {
    std::string_view suffix = name.substr(dot + 1);
    if (!is_public_suffix(suffix)) return suffix;
    if (dot == 0) return name;
    end = dot;
    dot = name.rfind('.', end - 1);
  }
  return name;
}

}  // namespace egressd
