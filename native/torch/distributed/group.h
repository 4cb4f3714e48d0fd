// A c10d process group (ProcessGroupGloo over a TCPStore), joined the way PyTorch Python's
// init_process_group('gloo', init_method='env://') joins one, so Node and Python ranks can share a
// job; and the collectives over plain memory (the caller's typed arrays). No Node-API here: the
// glue (addon.cc) unpacks arguments and decides which thread waits.
//
// Threading: a collective is *enqueued* on the calling thread (ProcessGroupGloo runs it on its own
// worker threads, matched across ranks by call order) and *waited for* wherever the caller likes:
// the libuv pool for a Promise, the calling thread for the blocking forms a training worker uses.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hg::dist {

enum class Dtype { Float32, Float64, Int32, Int64 };
enum class ReduceOp { Sum, Avg, Max };

std::size_t bytesOf(Dtype dtype);

struct GroupOptions {
  int rank = 0;
  int worldSize = 1;
  std::string masterAddr;
  int masterPort = 0;
  std::chrono::milliseconds timeout{0};
  // Compared across the handgrad ranks at init (a model-spec hash, say); "" compares nothing extra.
  std::string check;
  // Before each collective, compare its arrays' lengths, dtype and op across ranks with one small
  // all-reduce (Gloo aborts the whole process on a length mismatch). Only when every rank is a
  // handgrad rank: a PyTorch Python rank would not take part in the extra collective.
  bool verifyCalls = true;
};

// A failure of the group (a peer gone, a timeout, a mismatch between ranks): the glue turns it into
// HandgradError ERR_DISTRIBUTED. Argument errors stay std::invalid_argument / std::out_of_range.
struct GroupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A collective's result is not finite (NaN or ±Infinity contributed or produced by some rank):
// every rank sees the same values, so every rank throws this, in step.
struct NotFinite : std::range_error {
  using std::range_error::range_error;
};

// Caller memory: `count` elements of the collective's dtype at `data`.
struct Span {
  void* data;
  std::size_t count;
};

class Pending;
class GroupImpl;

class Group {
 public:
  // Blocks until every rank has joined (or throws GroupError within about options.timeout).
  static std::shared_ptr<Group> join(const GroupOptions& options);
  ~Group();

  int rank() const;
  int worldSize() const;
  std::chrono::milliseconds timeout() const;
  // Whether every rank joined as a handgrad rank (and so each call is verified, if asked).
  bool allHandgrad() const;
  bool verifiesCalls() const;

  // The collectives, enqueued now and finished by Pending::wait (on any thread). inPlace: the
  // spans stay valid and untouched until wait() returns (a single span is then reduced where it
  // lies); otherwise their contents are copied now and written back by Pending::copyOut.
  // allReduce packs consecutive spans into buckets of at most bucketBytes (one span larger than
  // that is a bucket of its own): one collective per bucket, as DDP's buckets.
  std::shared_ptr<Pending> allReduce(const std::vector<Span>& spans, Dtype dtype, ReduceOp op, std::size_t bucketBytes, bool inPlace);
  std::shared_ptr<Pending> broadcast(const std::vector<Span>& spans, Dtype dtype, int root, std::size_t bucketBytes, bool inPlace);
  std::shared_ptr<Pending> barrier();
  // Every rank's `input` into `output` (worldSize × input.count elements, rank r's at r × count);
  // DDP's start-up check of the parameter shapes is one, over int64.
  std::shared_ptr<Pending> allGather(const Span& input, const Span& output, Dtype dtype, bool inPlace);

  // Set after a collective failed: ProcessGroupGloo's pairs are then unusable, so every later call
  // fails at once with this reason instead of waiting for peers that will not answer.
  std::string failure() const;

 private:
  explicit Group(std::shared_ptr<GroupImpl> impl);
  // Shared with the Pending collectives: a group destroyed mid-collective lives until they finish.
  std::shared_ptr<GroupImpl> impl_;
};

class Pending {
 public:
  virtual ~Pending() = default;
  // Blocks until the collective finished; throws GroupError (a peer failed or the timeout passed)
  // or NotFinite. Call once.
  virtual void wait() = 0;
  // After wait(): writes the results into spans (the same shapes as the call's; allGather's is
  // {output}). No-op in place.
  virtual void copyOut(const std::vector<Span>& spans) = 0;
};

}  // namespace hg::dist
