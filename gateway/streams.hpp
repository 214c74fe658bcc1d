#pragma once
/// Bodies the router streams: server-sent events of a run's log lines and
/// of events, and byte ranges of artifact files.

#include "gateway/router.hpp"
#include "services/api_backend.hpp"
#include "services/unique_fd.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace corral::gateway {

/// {"stream", "t", "text"}: one line of GET .../logs.
nlohmann::json log_line_json(const log_line& l);

/// SSE of a run's output: `answer`, the backend's answer to `first` (a
/// tail, or what follows a cursor), then each new line as it is written,
/// as `event: line` with the cursor after it as `id:`; `event: end` once
/// the run has ended and every line was sent. A comment every wait_timeout
/// keeps proxies from closing an idle stream and lets the server notice a
/// client that left.
std::shared_ptr<body_source> log_event_stream(api_backend& backend,
                                              std::string id, log_query first,
                                              log_answer answer);

/// SSE of events (`event: event`, `id:` its sequence number): `first`
/// (the backend's answer to the first query), then each new one; one run's
/// (ending with `event: end` when it has ended for good) or, with an empty
/// id, every run's.
std::shared_ptr<body_source> event_stream(api_backend& backend, std::string id,
                                          event_answer first);

/// `length` bytes of `fd` from `offset`, in 64 KiB pieces.
std::shared_ptr<body_source> file_stream(unique_fd fd, std::uint64_t offset,
                                         std::uint64_t length);

} // namespace corral::gateway
