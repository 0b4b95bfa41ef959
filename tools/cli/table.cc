#include "table.h"

#include <algorithm>
#include <array>

#include "outcome.h"
#include "text.h"

namespace paddock::cli {
namespace {

constexpr size_t kPreviewBytes = 40;
constexpr size_t kColumns = 7;

size_t display_width(const std::string& s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

TableRow row_for(const schemas::JobResult& r, uint64_t duration_us) {
  return {r.job_id,
          "ok",
          describe_result(r),
          format_duration_us(duration_us),
          first_line_preview(r.stdout_data, kPreviewBytes),
          r.warm ? "warm" : "cold",
          r.backend};
}

TableRow row_for(const schemas::JobError& e, uint64_t duration_us) {
  return {e.job_id,
          "error",
          variant_of(e) + " (" + std::to_string(e.code) + ")",
          format_duration_us(duration_us),
          first_line_preview(e.message, kPreviewBytes),
          "-",
          "-"};
}

TableRow row_without_answer(const std::string& job_id) {
  return {job_id, "-", "no answer", "-", "", "-", "-"};
}

void print_table(std::FILE* out, const std::vector<TableRow>& rows) {
  auto cells = [](const TableRow& r) {
    return std::array<const std::string*, kColumns>{
        &r.job_id, &r.status, &r.outcome, &r.time, &r.stdout_preview, &r.start, &r.backend};
  };
  const TableRow header{"JOB_ID",           "STATUS", "OUTCOME", "TIME",
                        "STDOUT / MESSAGE", "START",  "BACKEND"};
  std::array<size_t, kColumns> width{};
  for (const auto* row : {&header}) {
    for (size_t c = 0; c < kColumns; ++c) width[c] = display_width(*cells(*row)[c]);
  }
  for (const auto& row : rows) {
    for (size_t c = 0; c < kColumns; ++c)
      width[c] = std::max(width[c], display_width(*cells(row)[c]));
  }
  auto print_row = [&](const TableRow& row) {
    std::string line;
    const auto cs = cells(row);
    for (size_t c = 0; c < kColumns; ++c) {
      line += *cs[c];
      if (c + 1 < kColumns) line.append(width[c] - display_width(*cs[c]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::fprintf(out, "%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

}  // namespace paddock::cli
