#include "master/status_json.hpp"

#include <map>
#include <vector>

#include "common/json.hpp"

namespace netsvr {
namespace {

using json::quote;

struct Row {
  int serial;
  uint32_t slot;
  int32_t pid;
  shm::WorkerState state;
  int64_t clients, bizLinks, taskLinks;
};

// A JSON array of the values `get` picks from each sample.
template <typename Get>
std::string series(const std::vector<const shm::HistorySample*>& samples, Get get) {
  std::string out = "[";
  for (size_t i = 0; i < samples.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(get(i));
  }
  return out + "]";
}

std::string renderHistory(const shm::ControlBlock& control) {
  const auto& history = control.history;
  uint64_t written = history.written.load();
  uint64_t n = std::min<uint64_t>(written, shm::kHistorySamples);
  std::vector<const shm::HistorySample*> samples;
  for (uint64_t i = written - n; i < written; ++i)
    samples.push_back(&history.samples[i % shm::kHistorySamples]);
  // Per-second rate of one item: the difference to the sample before (0 for the first one, and
  // never negative: a count can only look lower while a retiring worker's meters move over).
  auto rate = [&](int item) {
    return [&samples, item](size_t i) -> int64_t {
      if (i == 0) return 0;
      int64_t d = samples[i]->counts[item].load() - samples[i - 1]->counts[item].load();
      int64_t dt = samples[i]->unixSec.load() - samples[i - 1]->unixSec.load();
      return d > 0 ? d / (dt > 0 ? dt : 1) : 0;
    };
  };
  std::string out = "{\"intervalSeconds\":1";
  out += ",\"time\":" + series(samples, [&](size_t i) { return samples[i]->unixSec.load(); });
  out += ",\"clients\":" + series(samples, [&](size_t i) { return samples[i]->clients.load(); });
  out += ",\"messagesIn\":" + series(samples, rate(4));   // packets to the business
  out += ",\"messagesOut\":" + series(samples, rate(6));  // frames to clients
  out += ",\"opens\":" + series(samples, rate(1));
  out += ",\"closes\":" + series(samples, rate(2));
  return out + "}";
}

}  // namespace

std::string renderStatusJson(const shm::ControlBlock& control, const std::string& instance,
                             const std::string& configPath, int64_t nowUnixSec) {
  std::map<uint32_t, std::vector<Row>> generations;  // oldest first
  int64_t clients = 0, bizLinks = 0, taskLinks = 0;
  int workers = 0;
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& w = control.workers[serial];
    auto state = shm::WorkerState(w.state.load());
    if (state == shm::WorkerState::Free) continue;
    Row row{serial,           w.slot.load(),     w.pid.load(),      state,
            w.clients.load(), w.bizLinks.load(), w.taskLinks.load()};
    generations[w.generation.load()].push_back(row);
    if (!shm::isLive(state)) continue;
    ++workers;
    clients += row.clients;
    bizLinks += row.bizLinks;
    taskLinks += row.taskLinks;
  }
  std::string out = "{\"instance\":" + quote(instance);
  out += ",\"masterPid\":" + std::to_string(control.masterPid.load());
  out += ",\"startedAt\":" + std::to_string(control.startedAt.load());
  out += ",\"now\":" + std::to_string(nowUnixSec);
  out += ",\"generation\":" + std::to_string(control.generation.load());
  out += ",\"generations\":[";
  bool firstGeneration = true;
  for (const auto& [generation, rows] : generations) {
    out += firstGeneration ? "" : ",";
    firstGeneration = false;
    out += "{\"generation\":" + std::to_string(generation) + ",\"workers\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      out += i ? "," : "";
      out += "{\"serial\":" + std::to_string(r.serial) + ",\"slot\":" + std::to_string(r.slot) +
             ",\"pid\":" + std::to_string(r.pid) +
             ",\"state\":" + quote(shm::workerStateName(r.state)) +
             ",\"clients\":" + std::to_string(r.clients) +
             ",\"businessLinks\":" + std::to_string(r.bizLinks) +
             ",\"taskLinks\":" + std::to_string(r.taskLinks) + "}";
    }
    out += "]}";
  }
  out += "],\"totals\":{\"workers\":" + std::to_string(workers) +
         ",\"clients\":" + std::to_string(clients) +
         ",\"businessLinks\":" + std::to_string(bizLinks) +
         ",\"taskLinks\":" + std::to_string(taskLinks) + "}";
  out += ",\"metrics\":[";
  for (int item = 1; item <= kMetricItems; ++item) {
    shm::MeterTotal t = shm::meterTotal(control, item);
    out += item > 1 ? "," : "";
    out += "{\"item\":" + std::to_string(item) + ",\"name\":" + quote(metricItemName(item)) +
           ",\"count\":" + std::to_string(t.count) + ",\"rate1\":" + json::number(t.rate1) +
           ",\"rate5\":" + json::number(t.rate5) + ",\"rate15\":" + json::number(t.rate15) + "}";
  }
  out += "],\"history\":" + renderHistory(control);
  out += ",\"config\":{\"path\":" + quote(configPath) +
         ",\"text\":" + quote(shm::readConfigText(control)) + "}}";
  return out;
}

}  // namespace netsvr
