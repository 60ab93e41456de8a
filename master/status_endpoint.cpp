#include "master/status_endpoint.hpp"

#include <ctime>

#include "master/prometheus.hpp"
#include "master/status_json.hpp"

namespace netsvr {

extern const char kStatusPageHtml[];  // master/status_page.html, embedded by the build

StatusEndpoint::StatusEndpoint(uv_loop_t* loop, const shm::ControlBlock& control,
                               std::string instance, std::string configPath, std::vector<int> items)
    : control_(control),
      instance_(std::move(instance)),
      configPath_(std::move(configPath)),
      items_(std::move(items)),
      server_(loop, [this](std::string_view path) { return respond(path); }) {}

HttpResponse StatusEndpoint::respond(std::string_view path) const {
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", renderPrometheus(control_, items_)};
  if (path == "/status.json")
    return {200, "application/json",
            renderStatusJson(control_, instance_, configPath_, int64_t(time(nullptr)))};
  if (path == "/" || path == "/index.html")
    return {200, "text/html; charset=utf-8", kStatusPageHtml};
  return {404, "text/plain; charset=utf-8", "404 page not found\n"};
}

}  // namespace netsvr
