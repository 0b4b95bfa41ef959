// The human-readable output of `paddock batch`: one row per job, columns aligned.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "paddock/schemas/messages.h"

namespace paddock::cli {

struct TableRow {
  std::string job_id;
  std::string status;  // "ok", "error", or "-" when no answer came
  // "exit 0", "timed out", "killed for memory (guest OOM)", "signal 9", "Jailer (11)", "no answer"
  std::string outcome;
  std::string time;  // from submission to answer, as the CLI saw it
  std::string stdout_preview;
  std::string start;  // "warm" (a template's clone), "cold" (booted for the job), "-"
  std::string backend;
};

TableRow row_for(const schemas::JobResult& r, uint64_t duration_us);
TableRow row_for(const schemas::JobError& e, uint64_t duration_us);
TableRow row_without_answer(const std::string& job_id);

// Header and rows, columns padded to their widest cell (counted in UTF-8 code points).
void print_table(std::FILE* out, const std::vector<TableRow>& rows);

}  // namespace paddock::cli
