// Stand-ins for the parts of a worker that own sockets (see fake_worker.hpp). They define the
// member functions of WsServer, BizLink(s) and PeerLinks that the command handlers call, in
// place of ws_*.cpp, biz_link.cpp and peer_links.cpp, which are not linked into the fuzz targets.
#include "tests/fuzz/fake_worker.hpp"

#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "common/packet.hpp"
#include "shm/names.hpp"
#include "tests/fuzz/check.hpp"
#include "worker/peer_links.hpp"
#include "worker/router.hpp"
#include "worker/ws_handshake.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

namespace {
fuzz::FakeStats gStats;
std::vector<Conn*> gConns;  // the client set of serial 0, in the order of their uniqIds
std::unordered_map<uint32_t, BizLink*> gLinks;  // by id (BizLinks::find)
constexpr uint64_t kSegmentBytes = 8u << 20;
}  // namespace

// --- the websocket server: a fixed client set ------------------------------------------------

const size_t OutMessage::kHeadroom = 16;

OutMessage* OutMessage::make(std::string_view payload, Kind kind) {
  auto* m = static_cast<OutMessage*>(malloc(sizeof(OutMessage) + kHeadroom + payload.size()));
  m->refs = 1;
  m->size = uint32_t(payload.size());
  m->kind = kind;
  memcpy(m->payload(), payload.data(), payload.size());
  return m;
}

void OutMessage::release() {
  if (--refs == 0) free(this);
}

WsServer::WsServer(Worker& worker) : worker_(worker) {}
WsServer::~WsServer() = default;

void WsServer::start() {
  for (Conn* c : gConns) link(c);
}

void WsServer::link(Conn* conn) {
  conn->next = head_;
  if (head_) head_->prev = conn;
  head_ = conn;
}

Conn* WsServer::findOpen(uint64_t key) const {
  for (Conn* c = head_; c; c = c->next)
    if (c->key == key && c->phase == Conn::Open && (c->flags & Conn::InTable)) return c;
  return nullptr;
}

void WsServer::deliver(Conn& conn, OutMessage* message) {
  FUZZ_CHECK(conn.phase == Conn::Open && message->refs > 0);
  ++gStats.delivered;
}

void WsServer::deliver(Conn& conn, std::string_view data) {
  OutMessage* m = OutMessage::make(data);
  deliver(conn, m);
  m->release();
}

void WsServer::closePolitely(Conn& conn, uint16_t code, std::string_view) {
  FUZZ_CHECK(code >= 1000 && code < 5000);
  conn.phase = Conn::Closing;  // no longer found by commands, as in the real server
  ++gStats.kicked;
}

// --- business links: replies are checked for framing and counted -----------------------------

BizLink::BizLink(BizLinks& owner, Port port, uint32_t id, uint32_t maxPacket)
    : port(port), id(id), owner_(owner), decoder_(maxPacket) {
  gLinks[id] = this;
}

void BizLink::send(std::string packet, bool) {
  FUZZ_CHECK(packet.size() >= kLengthSize + kCmdSize);
  FUZZ_CHECK(readBe32(packet.data()) == packet.size() - kLengthSize);
  ++gStats.replies;
}

void BizLink::close() {
  closing_ = true;  // only when the registry is full, which one link cannot make it
}

void BizLink::pause() {
  paused_ = true;
}

void BizLink::resume() {
  paused_ = false;
}

BizLinks::BizLinks(Worker& w) : worker(w) {}

BizLink* BizLinks::find(uint32_t id) const {
  auto it = gLinks.find(id);
  return it == gLinks.end() ? nullptr : it->second;
}

// --- peer links: forwarded requests wait for settle() to acknowledge them --------------------

PeerLinks::PeerLinks(Worker& worker) : worker_(worker) {}

bool PeerLinks::sendTask(int serial, uint32_t requestId, std::string_view taskPayload) {
  FUZZ_CHECK(serial != worker_.serial && serial >= 0 && serial < kMaxWorkerSerials);
  FUZZ_CHECK(taskPayload.size() >= kCmdSize);
  if (requestId) gStats.pendingAcks.push_back(requestId);
  return true;
}

namespace fuzz {

FakeStats& fakeStats() {
  return gStats;
}

std::string FakeWorker::uniqId(int serial, int i) {
  return formatUniqId(
      UniqIdParts{kTaskIp, kTaskPort, kAcceptTime, (uint32_t(serial) << 24) | uint32_t(i + 1)});
}

namespace {

std::string gInstanceKey;

void removeSegments() {
  shm::ControlSegment::remove(shm::controlName(gInstanceKey));
  for (int serial : {0, 1}) shm::ConnTable::remove(shm::workerSegmentName(gInstanceKey, serial));
}

// Client i: customerId c(i%3) but the last has none (a guest), session "s" for client 4,
// topic t(i%3) and t(i%2).
void seedTable(shm::ConnTable& table, int serial) {
  for (int i = 0; i < kClientsPerWorker; ++i) {
    uint64_t key = uniqKeyOf(kAcceptTime, (uint32_t(serial) << 24) | uint32_t(i + 1));
    table.erase(key, nullptr);
    FUZZ_CHECK(table.insert(key, uint64_t(i)));
    if (i != kClientsPerWorker - 1) table.setCustomerId(key, "c" + std::to_string(i % 3));
    if (i == 4) table.setSession(key, "s");
    std::string a = "t" + std::to_string(i % 3), b = "t" + std::to_string(i % 2);
    table.subscribe(key, {a, b});
  }
}

}  // namespace

FakeWorker& FakeWorker::get() {
  static FakeWorker* instance = new FakeWorker;
  return *instance;
}

FakeWorker::FakeWorker() {
  google::protobuf::SetLogHandler(nullptr);  // no line per invalid UTF-8 string: discarded
  Worker& w = worker;
  w.config.worker.address = Ipv4Address{kTaskIp, uint16_t(kTaskPort - 1)};
  w.config.task.address = Ipv4Address{kTaskIp, kTaskPort};
  gInstanceKey = w.instanceKey = "fuzz" + std::to_string(getpid());
  atexit(removeSegments);
  w.serial = 0;
  w.incarnation = 1;
  w.loop = new uv_loop_t;
  uv_loop_init(w.loop);
  w.control = shm::ControlSegment::create(shm::controlName(w.instanceKey));
  w.control->block().limitOnOpen = 10;
  w.control->block().limitOnMessage = 10;
  for (int serial : {0, 1}) {
    auto& info = w.control->block().workers[serial];
    info.state = uint32_t(shm::WorkerState::Running);
    info.incarnation = 1;
    info.pid = getpid();
    auto table =
        shm::ConnTable::create(shm::workerSegmentName(w.instanceKey, serial), kSegmentBytes);
    if (serial == 1) seedTable(*table, 1);  // never changed: commands only forward to it
  }
  std::string error;
  w.table = shm::ConnTable::open(shm::workerSegmentName(w.instanceKey, 0), true, error);
  FUZZ_CHECK(w.table != nullptr);
  w.uniqIdPrefix = uniqIdPrefix(kTaskIp, kTaskPort);
  for (int item : w.config.metricsItems) w.metricEnabled[item] = true;
  for (int i = 0; i < kClientsPerWorker; ++i) {
    auto* c = new Conn;
    c->key = uniqKeyOf(kAcceptTime, uint32_t(i + 1));
    gConns.push_back(c);
  }
  w.ws = new WsServer(w);
  w.ws->start();
  w.links = links = new BizLinks(w);
  w.peers = new PeerLinks(w);
  w.router = new Router(w);
  taskLink = new BizLink(*links, BizLink::Port::Task, 1, 1u << 20);
  workerLink = new BizLink(*links, BizLink::Port::Worker, 2, 1u << 20);
  reset();
}

void FakeWorker::reset() {
  seedTable(*worker.table, 0);
  for (Conn* c : gConns) {
    c->phase = Conn::Open;
    c->flags = Conn::InTable;
  }
  auto& registry = worker.control->block().registry;
  for (auto& entry : registry.entries) entry.used = 0;
  registry.version.fetch_add(1);
  workerLink->events = 0;
  workerLink->connId.clear();
  taskLink->resume();
  gStats.delivered = gStats.kicked = gStats.replies = 0;
}

void FakeWorker::settle() {
  std::vector<uint32_t> acks;
  acks.swap(gStats.pendingAcks);
  for (uint32_t id : acks) onPeerAck(worker, id);
  std::vector<uv_timer_t*> timers;
  uv_walk(
      worker.loop,
      [](uv_handle_t* h, void* arg) {
        if (h->type == UV_TIMER && uv_is_active(h) && !uv_is_closing(h))
          static_cast<std::vector<uv_timer_t*>*>(arg)->push_back(reinterpret_cast<uv_timer_t*>(h));
      },
      &timers);
  // As if each timer's time had come (libuv keeps the callback in the handle).
  for (uv_timer_t* t : timers) t->timer_cb(t);
  uv_run(worker.loop, UV_RUN_NOWAIT);
}

}  // namespace fuzz
}  // namespace netsvr
