#include "services/result.hpp"

namespace corral {

int http_status(ec code) {
  switch (code) {
    case ec::none:
      return 200;
    case ec::bad_request:
      return 400;
    case ec::unauthorized:
      return 401;
    case ec::forbidden:
      return 403;
    case ec::not_found:
      return 404;
    case ec::method_not_allowed:
      return 405;
    case ec::invalid_transition:
      return 409;
    case ec::payload_too_large:
      return 413;
    case ec::unsupported_media_type:
      return 415;
    case ec::invalid_spec:
      return 422;
    case ec::internal:
      return 500;
    case ec::unavailable:
      return 503;
    case ec::pause_timeout:
      return 504;
    case ec::range_not_satisfiable:
      return 416;
  }
  return 500;
}

std::string_view code_name(ec code) {
  switch (code) {
    case ec::none:
      return "none";
    case ec::bad_request:
      return "bad_request";
    case ec::unauthorized:
      return "unauthorized";
    case ec::forbidden:
      return "forbidden";
    case ec::not_found:
      return "not_found";
    case ec::method_not_allowed:
      return "method_not_allowed";
    case ec::invalid_transition:
      return "invalid_transition";
    case ec::payload_too_large:
      return "payload_too_large";
    case ec::unsupported_media_type:
      return "unsupported_media_type";
    case ec::invalid_spec:
      return "invalid_spec";
    case ec::internal:
      return "internal";
    case ec::unavailable:
      return "unavailable";
    case ec::pause_timeout:
      return "pause_timeout";
    case ec::range_not_satisfiable:
      return "range_not_satisfiable";
  }
  return "internal";
}

} // namespace corral
