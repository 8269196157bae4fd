// `orderflow ctl`: the admin command line. Talks to a server over HTTP.
//
// Exit codes: 0 done; 2 usage; 3 not found; 4 refused (another 4xx: invalid, unauthorized,
// forbidden, conflict); 5 the server failed or could not be reached (5xx, connection).
#pragma once

#include <string>
#include <functional>
#include <vector>

namespace CLI {
class App;
}

namespace orderflow::app {

struct CtlOptions {
  std::string server = "http://127.0.0.1:8080";
  std::string api_key;  // default: $ORDERFLOW_API_KEY
  bool json = false;
  // Arguments of the chosen command.
  std::string id;
  std::string customer_id, merchant_id, status, reason;
  int limit = 20;
};

// Adds `ctl` and its commands to `app`; `run` is set to the chosen command.
void add_ctl(CLI::App& app, CtlOptions& options, std::function<int()>& run);

}  // namespace orderflow::app
