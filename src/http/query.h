// Query strings: application/x-www-form-urlencoded decoding.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace orderflow::http {

// Decodes a%20b and a+b; invalid_argument on a bad escape or a repeated name.
Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query);

}  // namespace orderflow::http
