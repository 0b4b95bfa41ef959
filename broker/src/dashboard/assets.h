// The dashboard's pages (broker/dashboard/*.html, *.js, *.css), embedded in the binary at build
// time by broker/dashboard/embed.cmake: no install directory, nothing read at run time.
//
// Thread-safety: constant data.
#pragma once

#include <string_view>

namespace paddock::broker::dashboard {

struct Asset {
  std::string_view name;  // the file's name, e.g. "app.js"
  std::string_view content_type;
  std::string_view body;
};

// The asset named `name`; nullptr if there is none.
const Asset* find_asset(std::string_view name);

}  // namespace paddock::broker::dashboard
