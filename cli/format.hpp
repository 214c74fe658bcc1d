#pragma once
/// Pure formatting for the CLI's human output: durations, sizes, terminal
/// column widths and the tables of `corral ps` and `corral show`.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral::cli {

/// 12s, 3m05s, 1h02m, 2d03h; negative or NaN counts as 0s.
std::string format_duration(double seconds);

/// Terminal columns the UTF-8 text takes: wide (East Asian and emoji)
/// characters count 2, combining marks and joiners 0, and a character
/// followed by VS16 (U+FE0F, as in ⏸️) is shown as a 2-column emoji.
std::size_t display_width(std::string_view utf8);

/// `s` padded with spaces to `width` display columns.
std::string pad_right(std::string_view s, std::size_t width);

/// Rows (the first is the header) as columns separated by two spaces,
/// aligned by display width, no trailing spaces; each line ends in '\n'.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

/// argv joined with spaces, each argument single-quoted if a shell would
/// split or expand it.
std::string shell_join(const std::vector<std::string>& argv);

/// "🟢 running" for a state name.
std::string state_label(std::string_view state);

/// The REASON/EXIT cell of a run: "exit 1", "signal SIGKILL",
/// "user (SIGTERM)", "queue #2", or "".
std::string reason_text(const nlohmann::json& run);

/// `corral ps`: one row per run of the API's {"runs": [...]} array, with a
/// QUEUE column while any run is queued, and a legend line when a paused
/// run holds GPUs.
std::string render_ps(const nlohmann::json& runs);

/// `corral gpus`: the table of GET /api/v1/gpus's answer and a line naming
/// where the inventory comes from.
std::string render_gpus(const nlohmann::json& answer);

/// The legend `corral ps` prints under a paused run that holds GPUs.
inline constexpr std::string_view paused_gpus_legend
    = "⏸️ paused runs keep their GPUs (their memory stays allocated)";

/// `corral artifacts`: GET .../artifacts as a table (or "no artifacts").
std::string render_artifacts(const nlohmann::json& answer);

/// The PROGRESS cell of a run: "42.0%", or "" when unknown.
std::string progress_text(const nlohmann::json& run);

/// The ETA cell of a run: "1h02m", or "" when unknown.
std::string eta_text(const nlohmann::json& run);

/// `corral show`: a run's fields and its process tree.
std::string render_show(const nlohmann::json& run);

} // namespace corral::cli
