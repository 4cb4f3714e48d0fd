// The process group: joining (store, handshake, gloo rendezvous, PyTorch's store-based barrier) and
// the collectives over caller memory. See group.h for the threading model.
#include "group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace hg::dist {

std::size_t bytesOf(Dtype dtype) {
  return dtype == Dtype::Float64 || dtype == Dtype::Int64 ? 8 : 4;
}

namespace {

using Clock = std::chrono::steady_clock;

at::ScalarType scalarType(Dtype dtype) {
  switch (dtype) {
    case Dtype::Float32: return at::kFloat;
    case Dtype::Float64: return at::kDouble;
    case Dtype::Int32: return at::kInt;
    case Dtype::Int64: return at::kLong;
  }
  throw std::invalid_argument("unknown dtype");
}

std::string firstLine(const std::string& what) {
  std::string msg = what.substr(0, what.find("Exception raised from"));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

std::string messageOf(const std::exception& e) {
  if (auto c = dynamic_cast<const c10::Error*>(&e)) return firstLine(c->what_without_backtrace());
  return firstLine(e.what());
}

std::string text(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::vector<uint8_t> bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::string quoted(const std::string& s) {
  constexpr std::size_t kShown = 120;
  return "\"" + (s.size() > kShown ? s.substr(0, kShown) + "…" : s) + "\"";
}

// What each handgrad rank publishes before the gloo rendezvous: "worldSize\nverifyCalls\ncheck".
// verifyCalls must agree too: a rank that verifies makes an extra all-reduce before each call, which a
// rank that does not would pair with its data (Gloo then aborts one of them).
struct Record {
  int worldSize;
  bool verifyCalls;
  std::string check;
};

std::string recordOf(const GroupOptions& o) {
  return std::to_string(o.worldSize) + "\n" + (o.verifyCalls ? "1" : "0") + "\n" + o.check;
}

Record parseRecord(const std::string& s) {
  const auto nl = s.find('\n');
  const auto nl2 = nl == std::string::npos ? std::string::npos : s.find('\n', nl + 1);
  return {std::atoi(s.substr(0, nl).c_str()), nl != std::string::npos && s.compare(nl + 1, 1, "1") == 0,
          nl2 == std::string::npos ? std::string() : s.substr(nl2 + 1)};
}

// The devices PyTorch Python's ProcessGroupGloo(store, rank, size, timeout) binding builds: the
// interfaces of GLOO_SOCKET_IFNAME when set, else the address this host's name resolves to
// (loopback when it does not resolve), with two threads per device.
std::vector<std::shared_ptr<::gloo::transport::Device>> glooDevices() {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifnames != nullptr && std::strlen(ifnames) > 1) {
    std::stringstream list(ifnames);
    for (std::string name; std::getline(list, name, ',');) devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
  } else {
    devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return devices;
}

}  // namespace

class GroupImpl {
 public:
  GroupOptions options;
  c10::intrusive_ptr<c10d::TCPStore> tcp;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  bool allHandgrad = false;
  bool verify = false;

  // Verified calls enqueue their collectives later, on whichever thread waits for them; tickets,
  // taken in call order, make every rank enqueue (and so tag) them in that same order.
  uint64_t takeTicket() {
    std::lock_guard<std::mutex> lock(seqMutex_);
    return nextTicket_++;
  }
  class Turn {
   public:
    Turn(GroupImpl& g, uint64_t ticket) : g_(g) {
      std::unique_lock<std::mutex> lock(g_.seqMutex_);
      g_.seqCv_.wait(lock, [&] { return g_.serving_ == ticket; });
    }
    ~Turn() {
      {
        std::lock_guard<std::mutex> lock(g_.seqMutex_);
        g_.serving_++;
      }
      g_.seqCv_.notify_all();
    }

   private:
    GroupImpl& g_;
  };

  void fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure_.empty()) failure_ = why;
  }
  std::string failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }
  void throwIfFailed() const {
    const std::string why = failure();
    if (!why.empty())
      throw GroupError("the process group failed earlier (" + why + "): destroy() it and init() a new one");
  }

 private:
  mutable std::mutex mutex_;
  std::string failure_;
  std::mutex seqMutex_;
  std::condition_variable seqCv_;
  uint64_t nextTicket_ = 0;
  uint64_t serving_ = 0;
};

namespace {

std::string rankList(const std::vector<int>& ranks) {
  std::string s;
  for (std::size_t i = 0; i < ranks.size(); i++) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

// Before the gloo rendezvous, which would wait out the whole timeout on a rank that never comes:
// every handgrad rank publishes its worldSize and check under handgrad/, then waits until each rank
// in [0, worldSize) has either published a record (compared now: a mismatch fails every handgrad
// rank at once, naming both values) or entered the gloo rendezvous (a PyTorch Python rank, which
// publishes no record and is taken on trust; gloo's first key is rank_<r>, its host name). A rank
// number claimed twice is refused too.
bool handshake(GroupImpl& g, Clock::time_point deadline) {
  const GroupOptions& o = g.options;
  auto hg = c10::make_intrusive<c10d::PrefixStore>("handgrad", g.tcp);
  auto gloo = c10::make_intrusive<c10d::PrefixStore>("default_pg/0/0", g.tcp);
  const std::string abortKey = "abort";
  auto abort = [&](const std::string& why) {
    hg->set(abortKey, bytes(why));
    // Rank 0 serves the store: it stays a moment so that the others (polling every 10 ms) read this
    // reason rather than a closed connection.
    if (o.rank == 0) std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500), o.timeout));
    throw GroupError(why);
  };
  // A claim already there: another process took this rank in this store. A process of a previous
  // group never reaches that group's store here (awaitNewStore), so it is another process with
  // the same RANK, or this process is new to the port and reached a store an earlier job left open.
  if (hg->add("claim/" + std::to_string(o.rank), 1) > 1)
    abort("rank " + std::to_string(o.rank) + " was claimed twice in the store at " + o.masterAddr + ":" + std::to_string(o.masterPort) +
          ": two processes have RANK=" + std::to_string(o.rank) +
          ", or an earlier job's group on this MASTER_PORT has not closed yet (start each job on a port no other job is using)");
  hg->set("rank/" + std::to_string(o.rank), bytes(recordOf(o)));

  std::vector<bool> seen(o.worldSize, false);
  seen[o.rank] = true;
  bool allHandgrad = true;
  for (;;) {
    if (hg->check({abortKey})) throw GroupError(text(hg->get(abortKey)));
    std::vector<int> missing;
    for (int r = 0; r < o.worldSize; r++) {
      if (seen[r]) continue;
      const std::string key = "rank/" + std::to_string(r);
      // The gloo key first: a handgrad rank writes its record before it enters the rendezvous, so
      // a rank in the rendezvous without a record is a PyTorch Python rank.
      const bool inGloo = gloo->check({"rank_" + std::to_string(r)});
      if (hg->check({key})) {
        const Record peer = parseRecord(text(hg->get(key)));
        if (peer.worldSize != o.worldSize)
          abort("ranks disagree on worldSize: rank " + std::to_string(o.rank) + " has " + std::to_string(o.worldSize) + ", rank " +
                std::to_string(r) + " has " + std::to_string(peer.worldSize) + " (start every rank with the same WORLD_SIZE)");
        if (peer.verifyCalls != o.verifyCalls)
          abort("ranks disagree on verifyCalls: rank " + std::to_string(o.rank) + " has " + (o.verifyCalls ? "true" : "false") + ", rank " +
                std::to_string(r) + " has " + (peer.verifyCalls ? "true" : "false") + " (pass the same verifyCalls to init on every rank)");
        if (peer.check != o.check)
          abort("ranks disagree on the check: rank " + std::to_string(o.rank) + " has " + quoted(o.check) + ", rank " + std::to_string(r) +
                " has " + quoted(peer.check) + " (every rank must build the same model)");
        seen[r] = true;
      } else if (inGloo) {
        seen[r] = true;
        allHandgrad = false;
      } else {
        missing.push_back(r);
      }
    }
    if (missing.empty()) return allHandgrad;
    if (Clock::now() > deadline)
      throw GroupError("rank" + std::string(missing.size() > 1 ? "s " : " ") + rankList(missing) + " did not join within " +
                       std::to_string(o.timeout.count()) + " ms (master " + o.masterAddr + ":" + std::to_string(o.masterPort) + ", worldSize " +
                       std::to_string(o.worldSize) + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// torch.distributed's _store_based_barrier for the default group, which every PyTorch Python rank
// runs after the rendezvous (key store_based_barrier_key:1 under default_pg/): a Node rank must
// count itself in, or the Python ranks wait out their timeout.
void storeBarrier(GroupImpl& g, Clock::time_point deadline) {
  auto store = c10::make_intrusive<c10d::PrefixStore>("default_pg", g.tcp);
  const std::string key = "store_based_barrier_key:1";
  store->add(key, 1);
  for (int64_t n = store->add(key, 0); n != g.options.worldSize; n = store->add(key, 0)) {
    if (Clock::now() > deadline)
      throw GroupError("the ranks did not all pass init's barrier within " + std::to_string(g.options.timeout.count()) + " ms (" +
                       std::to_string(n) + " of " + std::to_string(g.options.worldSize) + " arrived)");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

namespace {

// A process that leaves a group and joins a new one on the same MASTER_PORT can reach the previous
// group's store while that group's rank 0 has not destroyed it yet. LibTorch 1.13's TCPStore client
// cannot be made safe there: its constructor always opens a second connection watched by a
// background thread (TCPCallbackClient's TCPStoreWorkerDaemon, for watchKey, started whether or not
// anyone watches), and when the store closes while that connection still waits in its listen queue
// the peer resets it, the thread's recv throws std::system_error, and nothing can catch it there:
// std::terminate, the process aborts. So before a process that has been in a group before creates
// its client, it asks the store at the master's address, over a plain socket of its own, whether it
// holds this process's mark, which every join writes into its store: one that does is a store this
// process was in, still open, and the join waits for it to close (a store never reopens: whatever
// answers on the port next is a new one).
const std::string& processMark() {
  static const std::string mark = [] {
    std::random_device rd;
    std::ostringstream s;
    s << "handgrad/process/" << std::hex << rd() << rd() << rd() << rd();
    return s.str();
  }();
  return mark;
}
std::atomic<bool> markedAStore{false};

// The TCPStore wire protocol of LibTorch 1.13 (torch/csrc/distributed/c10d/TCPStore.cpp), the one
// query asked here: CHECK = 4, then the key count and each key as a uint64 length and its bytes
// (the client prefixes every key with "/"); the answer is one byte, READY = 0 or NOT_READY = 1.
constexpr uint8_t kQueryCheck = 4;
constexpr uint8_t kCheckReady = 0;
constexpr uint8_t kCheckNotReady = 1;

enum class Probe {
  Nothing,    // nothing accepts a connection there: a previous store is closed
  NewStore,   // a store without this process's mark
  OurStore,   // a store this process was in, still open
  NoAnswer,   // connected, then closed or reset, or no answer by the deadline
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Waits until fd is ready for `events` or the deadline passes; false on the deadline.
bool pollUntil(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // the next call on fd reports the error
  }
}

// Asks the store at host:port whether it holds `key`, with a socket of this function's own (no
// thread, every wait bounded by the deadline).
Probe probeStore(const std::string& host, int port, const std::string& key, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return Probe::Nothing;  // the store's own client reports it
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  // Nothing only when every address refused: a connection still pending at the deadline may be
  // the old store's (its listen queue full), and says nothing about whether it closed.
  Fd sock;
  for (addrinfo* a = found; a != nullptr && sock.fd < 0; a = a->ai_next) {
    Fd s;
    s.fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (s.fd < 0) continue;
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) continue;
      if (!pollUntil(s.fd, POLLOUT, deadline)) return Probe::NoAnswer;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) continue;
    }
    std::swap(sock.fd, s.fd);
  }
  if (sock.fd < 0) return Probe::Nothing;
  const std::string stored = "/" + key;
  std::string query(1, static_cast<char>(kQueryCheck));
  auto put64 = [&](uint64_t v) { query.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put64(1);
  put64(stored.size());
  query += stored;
  for (std::size_t sent = 0; sent < query.size();) {
    const ssize_t n = ::send(sock.fd, query.data() + sent, query.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!pollUntil(sock.fd, POLLOUT, deadline)) return Probe::NoAnswer;
    } else {
      return Probe::NoAnswer;
    }
  }
  for (;;) {
    if (!pollUntil(sock.fd, POLLIN, deadline)) return Probe::NoAnswer;
    uint8_t answer = 0;
    const ssize_t n = ::recv(sock.fd, &answer, 1, 0);
    if (n == 1) return answer == kCheckReady ? Probe::OurStore : answer == kCheckNotReady ? Probe::NewStore : Probe::NoAnswer;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    return Probe::NoAnswer;
  }
}

// Before a client that was in a group before connects: waits (within the join's deadline) until
// the store on the master's port is not one this process was in.
void awaitNewStore(const GroupOptions& o, Clock::time_point deadline) {
  const std::string master = o.masterAddr + ":" + std::to_string(o.masterPort);
  bool ours = false;
  for (;;) {
    const Probe p = probeStore(o.masterAddr, o.masterPort, processMark(), deadline);
    if (p == Probe::Nothing || p == Probe::NewStore) return;
    ours = ours || p == Probe::OurStore;
    if (Clock::now() > deadline) {
      if (ours)
        throw GroupError("the store at " + master + " is still the one of a previous group this process was in: its rank 0 has not destroyed that group within " +
                         std::to_string(o.timeout.count()) + " ms (call destroy() on every rank before a new init on the same MASTER_PORT, or start the new group on another port)");
      throw GroupError("the store at " + master + " did not answer within " + std::to_string(o.timeout.count()) +
                       " ms (another program listening on that port, or rank 0 stopped by SIGSTOP or a debugger)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The join itself; every wait of its own is bounded by the deadline, but a TCPStore client's reads
// are not (libtorch 1.13 sets no receive timeout on its socket): see Group::join.
std::shared_ptr<GroupImpl> joinNow(const GroupOptions& o) {
  auto g = std::make_shared<GroupImpl>();
  g->options = o;
  const auto deadline = Clock::now() + o.timeout;
  const std::string master = o.masterAddr + ":" + std::to_string(o.masterPort);
  // As torch.distributed's env:// rendezvous: rank 0 serves the store (multi-tenant), the others connect.
  if (o.rank != 0 && markedAStore) awaitNewStore(o, deadline);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.masterPort);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<std::size_t>(o.worldSize);
    so.waitWorkers = false;  // counted in below, after the handshake could fail fast
    so.timeout = o.timeout;
    so.multiTenant = true;
    g->tcp = c10::make_intrusive<c10d::TCPStore>(o.masterAddr, so);
  } catch (const std::exception& e) {
    throw GroupError(std::string(o.rank == 0 ? "could not serve the store on " : "could not reach the master's store at ") + master +
                     " within " + std::to_string(o.timeout.count()) + " ms: " + messageOf(e));
  }
  try {
    // This process's mark, before anything else: a later join of this process tells this store
    // from the next one on the same port by it (awaitNewStore).
    markedAStore = true;
    g->tcp->set(processMark(), bytes(std::to_string(o.rank)));
    // A client counts itself into "init/" now: a PyTorch Python rank 0 waits for that count before
    // it joins the rendezvous the handshake watches.
    if (o.rank != 0) g->tcp->waitForWorkers();
    g->allHandgrad = handshake(*g, deadline);
    g->verify = g->allHandgrad && o.verifyCalls;
    auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
    opts->devices = glooDevices();
    opts->threads = static_cast<int>(opts->devices.size() * 2);
    auto groupStore = c10::make_intrusive<c10d::PrefixStore>("0", c10::make_intrusive<c10d::PrefixStore>("default_pg", g->tcp));
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(groupStore, o.rank, o.worldSize, opts);
    storeBarrier(*g, deadline);
    g->pg->setSequenceNumberForGroup();
  } catch (const GroupError&) {
    throw;
  } catch (const std::exception& e) {
    throw GroupError("joining the group at " + master + " failed: " + messageOf(e));
  }
  return g;
}

}  // namespace

namespace {

std::terminate_handler previousTerminate = nullptr;
std::atomic<int> abortRank{-1};

// Gloo checks on its I/O thread that each message fits the buffer posted for it. When a peer sends
// more bytes (arrays of another length or a wider dtype on that rank, which nothing here can see
// beforehand: verifyCalls off, or PyTorch DDP ranks, whose protocol carries shapes but no dtype) the
// check throws on that thread, where nothing can catch it, and the process aborts (std::terminate).
// The abort cannot be avoided there; this says what it means first, then terminates as before.
[[noreturn]] void explainAbort() {
  if (std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      const std::string mark = "op.preamble.length <= op.nbytes. ";
      const auto at = what.find(mark);
      unsigned long long got = 0, want = 0;
      if (at != std::string::npos && std::sscanf(what.c_str() + at + mark.size(), "%llu vs %llu", &got, &want) == 2) {
        std::string likely = got == 2 * want ? " The peer's message is twice as long: most likely its elements are float64 where this rank's are float32 (a PyTorch model.double() beside a float32 Node model, or the reverse); every rank must use one dtype."
                                             : " Every rank must pass arrays of the same lengths and dtype, in the same order.";
        std::fprintf(stderr, "handgrad distributed: rank %d received a message of %llu bytes in a collective where it expected %llu: the ranks disagree on an array's length or dtype. Gloo aborts the process on this, on its own I/O thread, where no error can be raised.%s\n",
                     abortRank.load(), got, want, likely.c_str());
      }
    } catch (...) {
    }
  }
  if (previousTerminate != nullptr) previousTerminate();
  std::abort();
}

void installAbortHint(int rank) {
  abortRank = rank;
  static std::once_flag once;
  std::call_once(once, [] { previousTerminate = std::set_terminate(explainAbort); });
}

}  // namespace

// The join runs on a thread of its own, waited for at most timeout + 1 s: a TCPStore client blocks
// in recv(2) without a timeout when the master's port answers the connection but never replies (another
// program listening there, rank 0 stopped by SIGSTOP or a debugger), and init must still fail
// within its timeout. The abandoned thread keeps its own state and ends (and frees it) if an answer ever comes.
std::shared_ptr<Group> Group::join(const GroupOptions& o) {
  struct Outcome {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::shared_ptr<GroupImpl> group;
    std::exception_ptr error;
  };
  installAbortHint(o.rank);
  auto outcome = std::make_shared<Outcome>();
  std::thread([outcome, o] {
    std::shared_ptr<GroupImpl> g;
    std::exception_ptr error;
    try {
      g = joinNow(o);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(outcome->mutex);
    outcome->group = std::move(g);
    outcome->error = error;
    outcome->done = true;
    outcome->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(outcome->mutex);
  if (!outcome->cv.wait_for(lock, o.timeout + std::chrono::seconds(1), [&] { return outcome->done; })) {
    throw GroupError("rank " + std::to_string(o.rank) + " did not finish joining the group at " + o.masterAddr + ":" + std::to_string(o.masterPort) +
                     " within " + std::to_string(o.timeout.count()) +
                     " ms: the store or a peer stopped answering (another program listening on that port, or a rank stopped by SIGSTOP or a debugger)");
  }
  if (outcome->error) std::rethrow_exception(outcome->error);
  return std::shared_ptr<Group>(new Group(std::move(outcome->group)));
}

Group::Group(std::shared_ptr<GroupImpl> impl) : impl_(std::move(impl)) {}
Group::~Group() = default;

int Group::rank() const { return impl_->options.rank; }
bool Group::allHandgrad() const { return impl_->allHandgrad; }
bool Group::verifiesCalls() const { return impl_->verify; }
int Group::worldSize() const { return impl_->options.worldSize; }
std::chrono::milliseconds Group::timeout() const { return impl_->options.timeout; }
std::string Group::failure() const { return impl_->failure(); }

namespace {

// Waits for one collective; a failure marks the group failed (its pairs are unusable after one).
void waitWork(GroupImpl& g, c10d::Work& work, const std::string& name, const char* what) {
  try {
    work.wait(g.options.timeout);
  } catch (const std::exception& e) {
    const std::string why = messageOf(e);
    g.fail(why);
    throw GroupError(name + " failed on rank " + std::to_string(g.options.rank) + " of " + std::to_string(g.options.worldSize) +
                     " (a rank died, was stopped, or did not reach the same " + what + " within " + std::to_string(g.options.timeout.count()) +
                     " ms): " + why);
  }
}

// FNV-1a over a call's shape (kind, dtype, op or root, bucket size, every length), kept below 2^62
// so that it and its negation fit an int64.
struct Signature {
  uint64_t h = 1469598103934665603ull;
  void add(uint64_t v) {
    for (int i = 0; i < 8; i++) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  }
  int64_t value() const { return static_cast<int64_t>(h >> 2); }
};

// One small all-reduce (MAX of [sig, −sig, total, −total]) says whether every rank made the same
// call; on a mismatch every rank sees it (max ≠ min) and throws, in step, before any data moves.
void verifyCall(GroupImpl& g, const std::string& name, int64_t sig, int64_t total, const std::string& mine) {
  at::Tensor t = at::empty({4}, at::TensorOptions().dtype(at::kLong));
  int64_t* p = t.data_ptr<int64_t>();
  p[0] = sig, p[1] = -sig, p[2] = total, p[3] = -total;
  std::vector<at::Tensor> one{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  o.timeout = g.options.timeout;
  auto work = g.pg->allreduce(one, o);
  waitWork(g, *work, name, "call");
  if (p[0] == sig && -p[1] == sig) return;
  const std::string totals = p[2] == -p[3] ? "the same element count but not the same array lengths, dtype, op, root or bucketBytes"
                                           : "from " + std::to_string(-p[3]) + " to " + std::to_string(p[2]) + " elements";
  throw GroupError(name + " was called differently across ranks: rank " + std::to_string(g.options.rank) + " passed " + mine + ", the ranks passed " +
                   totals + " (every rank must pass arrays of the same lengths and dtype, in the same order)");
}

// Where each span lies in the flat buckets.
struct Slot {
  std::size_t bucket;
  std::size_t offset;  // elements
};

class CollectivePending final : public Pending {
 public:
  CollectivePending(std::shared_ptr<GroupImpl> group, std::string name, Dtype dtype) : group_(std::move(group)), name_(std::move(name)), dtype_(dtype) {}

  // Lays the spans out in buckets; direct (one span, in place) reduces the caller's memory itself.
  void pack(const std::vector<Span>& spans, std::size_t bucketBytes, bool inPlace) {
    inPlace_ = inPlace;
    const auto type = scalarType(dtype_);
    const std::size_t elem = bytesOf(dtype_);
    if (inPlace && spans.size() == 1) {
      direct_ = true;
      buckets_.push_back(at::from_blob(spans[0].data, {static_cast<int64_t>(spans[0].count)}, at::TensorOptions().dtype(type)));
      slots_.push_back({0, 0});
      spans_ = spans;
      return;
    }
    std::vector<std::size_t> sizes;
    for (const Span& s : spans) {
      if (sizes.empty() || (sizes.back() > 0 && (sizes.back() + s.count) * elem > bucketBytes)) sizes.push_back(0);
      slots_.push_back({sizes.size() - 1, sizes.back()});
      sizes.back() += s.count;
    }
    for (std::size_t n : sizes) buckets_.push_back(at::empty({static_cast<int64_t>(n)}, at::TensorOptions().dtype(type)));
    for (std::size_t i = 0; i < spans.size(); i++)
      std::memcpy(static_cast<char*>(buckets_[slots_[i].bucket].data_ptr()) + slots_[i].offset * elem, spans[i].data, spans[i].count * elem);
    if (inPlace) spans_ = spans;
    counts_.clear();
    for (const Span& s : spans) counts_.push_back(s.count);
  }

  std::vector<at::Tensor>& buckets() { return buckets_; }
  void add(c10::intrusive_ptr<c10d::Work> work) { works_.push_back(std::move(work)); }
  // A verified call: compare the call across ranks, then enqueue, in ticket order, at wait().
  void defer(uint64_t ticket, int64_t signature, int64_t total, std::string described, std::function<void()> enqueue) {
    deferred_ = true;
    ticket_ = ticket;
    signature_ = signature;
    total_ = total;
    described_ = std::move(described);
    enqueue_ = std::move(enqueue);
  }

  // A deferred call dropped unwaited still takes its turn, or every later call would wait forever.
  ~CollectivePending() override {
    if (deferred_ && !waited_) GroupImpl::Turn turn(*group_, ticket_);
  }

  void wait() override {
    waited_ = true;
    if (deferred_) {
      GroupImpl::Turn turn(*group_, ticket_);
      group_->throwIfFailed();
      verifyCall(*group_, name_, signature_, total_, described_);
      enqueue_();
    }
    for (auto& work : works_) waitWork(*group_, *work, name_, "call");
    checkFinite();
    if (inPlace_ && !direct_) copyOut(spans_);
  }

  void copyOut(const std::vector<Span>& spans) override {
    if (direct_) return;
    const std::size_t elem = bytesOf(dtype_);
    for (std::size_t i = 0; i < spans.size() && i < slots_.size(); i++)
      std::memcpy(spans[i].data, static_cast<const char*>(buckets_[slots_[i].bucket].data_ptr()) + slots_[i].offset * elem, spans[i].count * elem);
  }

 private:
  template <typename T>
  void findNonFinite() {
    for (std::size_t i = 0; i < slots_.size(); i++) {
      const T* p = static_cast<const T*>(buckets_[slots_[i].bucket].data_ptr()) + slots_[i].offset;
      const std::size_t n = direct_ ? spans_[0].count : counts_[i];
      for (std::size_t j = 0; j < n; j++) {
        if (std::isfinite(p[j])) continue;
        const std::string value = std::isnan(p[j]) ? "NaN" : p[j] > 0 ? "Infinity" : "-Infinity";
        throw NotFinite("Expected finite values after " + name_ + " but received " + value + " at index " + std::to_string(j) +
                        (slots_.size() > 1 ? " of array " + std::to_string(i) : "") +
                        " (a rank contributed a non-finite value, or the reduction overflowed the dtype)");
      }
    }
  }
  void checkFinite() {
    if (dtype_ == Dtype::Float32) findNonFinite<float>();
    if (dtype_ == Dtype::Float64) findNonFinite<double>();
  }

  std::shared_ptr<GroupImpl> group_;
  std::string name_;
  Dtype dtype_;
  bool inPlace_ = false;
  bool direct_ = false;
  std::vector<at::Tensor> buckets_;
  std::vector<Slot> slots_;
  std::vector<std::size_t> counts_;
  std::vector<Span> spans_;
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  bool deferred_ = false;
  bool waited_ = false;
  uint64_t ticket_ = 0;
  int64_t signature_ = 0;
  int64_t total_ = 0;
  std::string described_;
  std::function<void()> enqueue_;
};

class BarrierPending final : public Pending {
 public:
  BarrierPending(std::shared_ptr<GroupImpl> group, std::function<c10::intrusive_ptr<c10d::Work>()> enqueue, bool deferred, uint64_t ticket)
      : group_(std::move(group)), enqueue_(std::move(enqueue)), deferred_(deferred), ticket_(ticket) {
    if (!deferred_) work_ = enqueue_();
  }
  ~BarrierPending() override {
    if (deferred_ && !waited_) GroupImpl::Turn turn(*group_, ticket_);
  }
  void wait() override {
    waited_ = true;
    if (deferred_) {
      GroupImpl::Turn turn(*group_, ticket_);
      group_->throwIfFailed();
      work_ = enqueue_();
    }
    waitWork(*group_, *work_, "barrier", "barrier");
  }
  void copyOut(const std::vector<Span>&) override {}

 private:
  std::shared_ptr<GroupImpl> group_;
  std::function<c10::intrusive_ptr<c10d::Work>()> enqueue_;
  bool deferred_;
  bool waited_ = false;
  uint64_t ticket_;
  c10::intrusive_ptr<c10d::Work> work_;
};

// allGather: one input, worldSize outputs (views into the caller's output in place, else owned).
class AllGatherPending final : public Pending {
 public:
  AllGatherPending(std::shared_ptr<GroupImpl> group, const Span& input, const Span& output, Dtype dtype, bool inPlace)
      : group_(std::move(group)), dtype_(dtype), inPlace_(inPlace) {
    const auto options = at::TensorOptions().dtype(scalarType(dtype));
    const auto n = static_cast<int64_t>(input.count);
    input_ = at::empty({n}, options);
    std::memcpy(input_.data_ptr(), input.data, input.count * bytesOf(dtype));
    for (int r = 0; r < group_->options.worldSize; r++)
      outputs_.push_back(inPlace ? at::from_blob(static_cast<char*>(output.data) + r * input.count * bytesOf(dtype), {n}, options) : at::empty({n}, options));
  }
  ~AllGatherPending() override {
    if (deferred_ && !waited_) GroupImpl::Turn turn(*group_, ticket_);
  }
  void defer(uint64_t ticket, int64_t signature, int64_t total, std::string described) {
    deferred_ = true, ticket_ = ticket, signature_ = signature, total_ = total, described_ = std::move(described);
  }
  void enqueueNow() {
    std::vector<std::vector<at::Tensor>> out{outputs_};
    std::vector<at::Tensor> in{input_};
    work_ = enqueue("allGather", [&] { return group_->pg->allgather(out, in); });
  }
  void wait() override {
    waited_ = true;
    if (deferred_) {
      GroupImpl::Turn turn(*group_, ticket_);
      group_->throwIfFailed();
      verifyCall(*group_, "allGather", signature_, total_, described_);
      enqueueNow();
    }
    waitWork(*group_, *work_, "allGather", "call");
  }
  void copyOut(const std::vector<Span>& spans) override {
    if (inPlace_ || spans.empty()) return;
    const std::size_t bytes = static_cast<std::size_t>(input_.numel()) * bytesOf(dtype_);
    for (std::size_t r = 0; r < outputs_.size(); r++) std::memcpy(static_cast<char*>(spans[0].data) + r * bytes, outputs_[r].data_ptr(), bytes);
  }

 private:
  template <typename Fn>
  static c10::intrusive_ptr<c10d::Work> enqueue(const std::string& name, Fn fn);
  std::shared_ptr<GroupImpl> group_;
  Dtype dtype_;
  bool inPlace_;
  at::Tensor input_;
  std::vector<at::Tensor> outputs_;
  c10::intrusive_ptr<c10d::Work> work_;
  bool deferred_ = false;
  bool waited_ = false;
  uint64_t ticket_ = 0;
  int64_t signature_ = 0;
  int64_t total_ = 0;
  std::string described_;
};

// Enqueueing itself can throw (ProcessGroupGloo checks its arguments): a failure of the call, not of the group.
template <typename Fn>
c10::intrusive_ptr<c10d::Work> enqueue(const std::string& name, Fn fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    throw GroupError(name + " could not start: " + messageOf(e));
  }
}
template <typename Fn>
c10::intrusive_ptr<c10d::Work> AllGatherPending::enqueue(const std::string& name, Fn fn) {
  return ::hg::dist::enqueue(name, fn);
}


}  // namespace

namespace {

const char* dtypeName(Dtype d) {
  return d == Dtype::Float32 ? "float32" : d == Dtype::Float64 ? "float64" : d == Dtype::Int32 ? "int32" : "int64";
}

// Enqueues fn(bucket) for every bucket now, or, in a verified group, at wait() after the check.
template <typename Fn>
std::shared_ptr<Pending> run(const std::shared_ptr<GroupImpl>& g, std::shared_ptr<CollectivePending> p, const std::vector<Span>& spans, Dtype dtype,
                             uint64_t opOrRoot, std::size_t bucketBytes, const std::string& name, Fn fn) {
  // A raw pointer: the lambda lives inside *p (a shared_ptr would be a cycle).
  CollectivePending* raw = p.get();
  auto enqueueAll = [raw, fn, name] {
    for (auto& bucket : raw->buckets()) {
      std::vector<at::Tensor> one{bucket};
      raw->add(enqueue(name, [&] { return fn(one); }));
    }
  };
  if (!g->verify) {
    enqueueAll();
    return p;
  }
  Signature sig;
  sig.add(name == "allReduce" ? 1 : 2);
  sig.add(static_cast<uint64_t>(dtype));
  sig.add(opOrRoot);
  sig.add(bucketBytes);
  sig.add(spans.size());
  int64_t total = 0;
  for (const Span& s : spans) {
    sig.add(s.count);
    total += static_cast<int64_t>(s.count);
  }
  const std::string mine = std::to_string(total) + " " + dtypeName(dtype) + " elements in " + std::to_string(spans.size()) + " array" + (spans.size() > 1 ? "s" : "");
  p->defer(g->takeTicket(), sig.value(), total, mine, enqueueAll);
  return p;
}

}  // namespace

std::shared_ptr<Pending> Group::allReduce(const std::vector<Span>& spans, Dtype dtype, ReduceOp op, std::size_t bucketBytes, bool inPlace) {
  impl_->throwIfFailed();
  if (op == ReduceOp::Avg && (dtype == Dtype::Int32 || dtype == Dtype::Int64)) throw std::invalid_argument("avg needs a float dtype");
  auto p = std::make_shared<CollectivePending>(impl_, "allReduce", dtype);
  p->pack(spans, bucketBytes, inPlace);
  c10d::AllreduceOptions o;
  o.reduceOp = op == ReduceOp::Max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  o.timeout = impl_->options.timeout;
  // Gloo has no AVG. DDP's rule instead: each rank scales its values by 1/worldSize, then they are
  // summed (exact for a power-of-two world size; for others it is DDP's rounding, bit for bit).
  if (op == ReduceOp::Avg)
    for (auto& bucket : p->buckets()) bucket.mul_(1.0 / impl_->options.worldSize);
  auto pg = impl_->pg;
  return run(impl_, p, spans, dtype, static_cast<uint64_t>(op), bucketBytes, "allReduce", [pg, o](std::vector<at::Tensor>& t) { return pg->allreduce(t, o); });
}

std::shared_ptr<Pending> Group::broadcast(const std::vector<Span>& spans, Dtype dtype, int root, std::size_t bucketBytes, bool inPlace) {
  impl_->throwIfFailed();
  auto p = std::make_shared<CollectivePending>(impl_, "broadcast", dtype);
  p->pack(spans, bucketBytes, inPlace);
  c10d::BroadcastOptions o;
  o.rootRank = root;
  o.rootTensor = 0;
  o.timeout = impl_->options.timeout;
  auto pg = impl_->pg;
  return run(impl_, p, spans, dtype, static_cast<uint64_t>(root), bucketBytes, "broadcast", [pg, o](std::vector<at::Tensor>& t) { return pg->broadcast(t, o); });
}

std::shared_ptr<Pending> Group::allGather(const Span& input, const Span& output, Dtype dtype, bool inPlace) {
  impl_->throwIfFailed();
  if (output.count != input.count * static_cast<std::size_t>(impl_->options.worldSize))
    throw std::out_of_range("allGather's output must hold worldSize × the input's length");
  auto p = std::make_shared<AllGatherPending>(impl_, input, output, dtype, inPlace);
  if (!impl_->verify) {
    p->enqueueNow();
    return p;
  }
  Signature sig;
  sig.add(3);
  sig.add(static_cast<uint64_t>(dtype));
  sig.add(input.count);
  const std::string mine = std::to_string(input.count) + " " + dtypeName(dtype) + " elements";
  p->defer(impl_->takeTicket(), sig.value(), static_cast<int64_t>(input.count), mine);
  return p;
}

std::shared_ptr<Pending> Group::barrier() {
  impl_->throwIfFailed();
  c10d::BarrierOptions o;
  o.timeout = impl_->options.timeout;
  auto pg = impl_->pg;
  auto fn = [pg, o]() mutable { return enqueue("barrier", [&] { return pg->barrier(o); }); };
  const bool deferred = impl_->verify;
  return std::make_shared<BarrierPending>(impl_, fn, deferred, deferred ? impl_->takeTicket() : 0);
}

}  // namespace hg::dist
