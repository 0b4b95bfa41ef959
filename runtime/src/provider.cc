#include "paddock/runtime/provider.h"

#include <algorithm>

namespace paddock::runtime {

namespace {

constexpr size_t kPiece = 64u << 10;  // the agent protocol's and OUTPUT's largest chunk

void give(const OutputSink& sink, schemas::OutputStream stream, const std::string& data) {
  for (size_t at = 0; at < data.size(); at += kPiece) {
    sink(stream, at, std::string_view(data).substr(at, std::min(kPiece, data.size() - at)));
  }
}

}  // namespace

Result<ExecResult> Provider::exec_streaming(const std::string& vm_id, const ExecRequest& request,
                                            std::stop_token cancel, const OutputSink& sink) {
  auto result = exec(vm_id, request, std::move(cancel));
  if (result && sink && !result.value().cancelled) {
    give(sink, schemas::OutputStream::kStdout, result.value().stdout_data);
    give(sink, schemas::OutputStream::kStderr, result.value().stderr_data);
  }
  return result;
}

}  // namespace paddock::runtime
