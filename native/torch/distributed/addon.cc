// Node-API glue of handgrad_distributed.node (lib/distributed/binding.ts is its typed surface):
// one process group per process, as torch.distributed's default group, so a group joined on the
// main thread serves a training worker_thread too. Every collective has two forms: a Promise (the
// contents copied in now and written back when it resolves; the wait runs on the libuv pool, off
// the event loop) and a blocking *Sync form for the thread that trains (the arrays reduced in
// place, untouched by anyone else meanwhile). Both enqueue on the calling thread, so calls are
// matched across ranks in the order they were made.
#include <napi.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "group.h"

namespace hg::dist {
namespace {

// The process's group. Deliberately never destroyed at exit (only by destroy()): tearing down a
// ProcessGroupGloo joins its threads, which must not stall a process that is exiting after a peer died.
std::mutex gMutex;
std::shared_ptr<Group>* gGroup = new std::shared_ptr<Group>();
GroupOptions* gOptions = new GroupOptions();  // what the group was joined with, for info()
bool gJoining = false;

Napi::Error distributedError(Napi::Env env, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, "ERR_DISTRIBUTED"));
  return e;
}

// What went wrong, kept as plain data so a worker thread can record it and the JS thread build it.
struct Failure {
  enum Kind { None, Type, Range, Distributed, Other } kind = None;
  std::string message;

  Napi::Error toJs(Napi::Env env) const {
    switch (kind) {
      case Type: return Napi::TypeError::New(env, message);
      case Range: return Napi::RangeError::New(env, message);
      case Distributed: return distributedError(env, message);
      default: return Napi::Error::New(env, message);
    }
  }
};

template <typename Fn>
Failure capture(Fn fn) {
  try {
    fn();
    return {};
  } catch (const GroupError& e) {
    return {Failure::Distributed, e.what()};
  } catch (const NotFinite& e) {
    return {Failure::Range, e.what()};
  } catch (const std::invalid_argument& e) {
    return {Failure::Type, e.what()};
  } catch (const std::out_of_range& e) {
    return {Failure::Range, e.what()};
  } catch (const std::exception& e) {
    return {Failure::Other, e.what()};
  }
}

void rethrow(Napi::Env env, const Failure& f) {
  if (f.kind != Failure::None) throw f.toJs(env);
}

std::shared_ptr<Group> current(Napi::Env env) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (!*gGroup) throw distributedError(env, "The process group is not initialised: call distributed.init() first");
  return *gGroup;
}

int intArg(const Napi::CallbackInfo& info, std::size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("Expected a number for ") + name);
  return info[i].As<Napi::Number>().Int32Value();
}

GroupOptions groupOptions(const Napi::CallbackInfo& info) {
  if (info.Length() < 7 || !info[2].IsString() || !info[5].IsString() || !info[6].IsBoolean())
    throw Napi::TypeError::New(info.Env(), "Expected (rank, worldSize, masterAddr, masterPort, timeoutMs, check, verifyCalls)");
  GroupOptions o;
  o.rank = intArg(info, 0, "rank");
  o.worldSize = intArg(info, 1, "worldSize");
  o.masterAddr = info[2].As<Napi::String>().Utf8Value();
  o.masterPort = intArg(info, 3, "masterPort");
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue()));
  o.check = info[5].As<Napi::String>().Utf8Value();
  o.verifyCalls = info[6].As<Napi::Boolean>().Value();
  // Defence in depth: lib/distributed checks all of this first, in the package's words.
  if (o.worldSize < 1 || o.rank < 0 || o.rank >= o.worldSize || o.masterPort < 1 || o.masterPort > 65535 || o.timeout.count() < 1)
    throw Napi::RangeError::New(info.Env(), "Expected 0 ≤ rank < worldSize, a port in [1, 65535] and a positive timeout");
  return o;
}

// Claims the right to join (one group per process, one init at a time).
void claimJoin(Napi::Env env) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (*gGroup) throw distributedError(env, "The process group is already initialised: call distributed.destroy() before init() again");
  if (gJoining) throw distributedError(env, "distributed.init() is already running in this process");
  gJoining = true;
}

void finishJoin(std::shared_ptr<Group> group, const GroupOptions& options) {
  std::lock_guard<std::mutex> lock(gMutex);
  gJoining = false;
  if (group) {
    *gGroup = std::move(group);
    *gOptions = options;
  }
}

class JoinWorker final : public Napi::AsyncWorker {
 public:
  JoinWorker(Napi::Env env, GroupOptions options) : Napi::AsyncWorker(env), options_(std::move(options)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::shared_ptr<Group> group;
    failure_ = capture([&] { group = Group::join(options_); });
    finishJoin(std::move(group), options_);
  }
  void OnOK() override {
    if (failure_.kind != Failure::None) deferred_.Reject(failure_.toJs(Env()).Value());
    else deferred_.Resolve(Env().Undefined());
  }

 private:
  GroupOptions options_;
  Failure failure_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value Join(const Napi::CallbackInfo& info) {
  GroupOptions o = groupOptions(info);
  claimJoin(info.Env());
  auto* worker = new JoinWorker(info.Env(), std::move(o));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value JoinSync(const Napi::CallbackInfo& info) {
  GroupOptions o = groupOptions(info);
  claimJoin(info.Env());
  std::shared_ptr<Group> group;
  Failure f = capture([&] { group = Group::join(o); });
  finishJoin(std::move(group), o);
  rethrow(info.Env(), f);
  return info.Env().Undefined();
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  std::shared_ptr<Group> group;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    group = std::move(*gGroup);
    gGroup->reset();
  }
  // The last reference (unless a collective is still in flight) tears ProcessGroupGloo down here.
  group.reset();
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (!*gGroup) return info.Env().Null();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("rank", (*gGroup)->rank());
  o.Set("worldSize", (*gGroup)->worldSize());
  o.Set("failure", (*gGroup)->failure());
  o.Set("allHandgrad", (*gGroup)->allHandgrad());
  o.Set("verifiesCalls", (*gGroup)->verifiesCalls());
  o.Set("masterAddr", gOptions->masterAddr);
  o.Set("masterPort", gOptions->masterPort);
  o.Set("timeoutMs", static_cast<double>(gOptions->timeout.count()));
  return o;
}

// The arrays of one call: all of one dtype (Float32Array, Float64Array, Int32Array or BigInt64Array), none empty.
struct Arrays {
  Dtype dtype = Dtype::Float32;
  std::vector<Span> spans;
};

Arrays arraysArg(Napi::Env env, Napi::Value value) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, "Expected an array of typed arrays");
  Napi::Array list = value.As<Napi::Array>();
  Arrays out;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsTypedArray()) throw Napi::TypeError::New(env, "Expected a typed array at index " + std::to_string(i));
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) throw Napi::Error::New(env, "napi_get_typedarray_info failed");
    Dtype d;
    if (type == napi_float32_array) d = Dtype::Float32;
    else if (type == napi_float64_array) d = Dtype::Float64;
    else if (type == napi_int32_array) d = Dtype::Int32;
    else if (type == napi_bigint64_array) d = Dtype::Int64;
    else throw Napi::TypeError::New(env, "Expected a Float32Array, Float64Array, Int32Array or BigInt64Array at index " + std::to_string(i));
    if (i > 0 && d != out.dtype) throw Napi::TypeError::New(env, "Expected arrays of one dtype but index " + std::to_string(i) + " differs");
    if (length == 0 || data == nullptr) throw Napi::RangeError::New(env, "Expected a non-empty array at index " + std::to_string(i));
    out.dtype = d;
    out.spans.push_back({data, length});
  }
  if (out.spans.empty()) throw Napi::RangeError::New(env, "Expected at least one typed array");
  return out;
}

std::size_t bucketArg(const Napi::CallbackInfo& info, std::size_t i) {
  const double b = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : 0;
  // Past 2^53 the double is no longer an integer count (and past SIZE_MAX the cast is undefined).
  if (!(b >= 1 && b <= 9007199254740991.0)) throw Napi::RangeError::New(info.Env(), "Expected a positive bucketBytes of at most 2^53 - 1");
  return static_cast<std::size_t>(b);
}

// A Promise collective: the JS arrays are pinned by reference and written back in OnOK, after a
// check that each still holds the elements it held (a buffer detached or shrunk meanwhile is a
// RangeError, never a write into freed memory).
class CollectiveWorker final : public Napi::AsyncWorker {
 public:
  CollectiveWorker(Napi::Env env, std::shared_ptr<Pending> pending, Napi::Value arrays, std::vector<Span> spans)
      : Napi::AsyncWorker(env), pending_(std::move(pending)), deferred_(Napi::Promise::Deferred::New(env)), spans_(std::move(spans)) {
    if (arrays.IsArray()) arrays_ = Napi::Persistent(arrays.As<Napi::Object>());
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    failure_ = capture([&] { pending_->wait(); });
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (failure_.kind == Failure::None && !arrays_.IsEmpty()) {
      Napi::Array list = arrays_.Value().As<Napi::Array>();
      std::vector<Span> now;
      for (std::size_t i = 0; i < spans_.size(); i++) {
        napi_typedarray_type type;
        size_t length = 0;
        void* data = nullptr;
        Napi::Value v = list.Get(static_cast<uint32_t>(i));
        if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || length != spans_[i].count ||
            data == nullptr) {
          failure_ = {Failure::Range, "Expected array " + std::to_string(i) + " to keep its " + std::to_string(spans_[i].count) +
                                          " elements until the collective resolved, but its buffer was detached or resized"};
          break;
        }
        now.push_back({data, length});
      }
      if (failure_.kind == Failure::None) pending_->copyOut(now);
    }
    if (failure_.kind != Failure::None) deferred_.Reject(failure_.toJs(env).Value());
    else deferred_.Resolve(env.Undefined());
  }

 private:
  std::shared_ptr<Pending> pending_;
  Napi::Promise::Deferred deferred_;
  std::vector<Span> spans_;
  Napi::ObjectReference arrays_;
  Failure failure_;
};

// The arrays list is copied into a fresh JS array so that later pushes to the caller's list do
// not change what is written back.
Napi::Value queue(const Napi::CallbackInfo& info, std::shared_ptr<Pending> pending, const std::vector<Span>& spans) {
  Napi::Array list = info[0].As<Napi::Array>();
  Napi::Array copy = Napi::Array::New(info.Env(), list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) copy.Set(i, list.Get(i));
  auto* worker = new CollectiveWorker(info.Env(), std::move(pending), copy, spans);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

ReduceOp opArg(const Napi::CallbackInfo& info, std::size_t i) {
  const int op = intArg(info, i, "op");
  if (op < 0 || op > 2) throw Napi::RangeError::New(info.Env(), "Expected op 0 (sum), 1 (avg) or 2 (max)");
  return static_cast<ReduceOp>(op);
}

template <typename Fn>
std::shared_ptr<Pending> start(Napi::Env env, Fn fn) {
  std::shared_ptr<Pending> pending;
  rethrow(env, capture([&] { pending = fn(); }));
  return pending;
}

// allReduce(arrays, op, bucketBytes) → Promise; allReduceSync(...) → undefined
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Arrays a = arraysArg(info.Env(), info[0]);
  const ReduceOp op = opArg(info, 1);
  const std::size_t bucket = bucketArg(info, 2);
  auto group = current(info.Env());
  auto pending = start(info.Env(), [&] { return group->allReduce(a.spans, a.dtype, op, bucket, false); });
  return queue(info, std::move(pending), a.spans);
}

Napi::Value AllReduceSync(const Napi::CallbackInfo& info) {
  Arrays a = arraysArg(info.Env(), info[0]);
  const ReduceOp op = opArg(info, 1);
  const std::size_t bucket = bucketArg(info, 2);
  auto group = current(info.Env());
  auto pending = start(info.Env(), [&] { return group->allReduce(a.spans, a.dtype, op, bucket, true); });
  rethrow(info.Env(), capture([&] { pending->wait(); }));
  return info.Env().Undefined();
}

// broadcast(arrays, root, bucketBytes) → Promise; broadcastSync(...) → undefined
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Arrays a = arraysArg(info.Env(), info[0]);
  const int root = intArg(info, 1, "root");
  const std::size_t bucket = bucketArg(info, 2);
  auto group = current(info.Env());
  if (root < 0 || root >= group->worldSize()) throw Napi::RangeError::New(info.Env(), "Expected root in [0, worldSize)");
  auto pending = start(info.Env(), [&] { return group->broadcast(a.spans, a.dtype, root, bucket, false); });
  return queue(info, std::move(pending), a.spans);
}

Napi::Value BroadcastSync(const Napi::CallbackInfo& info) {
  Arrays a = arraysArg(info.Env(), info[0]);
  const int root = intArg(info, 1, "root");
  const std::size_t bucket = bucketArg(info, 2);
  auto group = current(info.Env());
  if (root < 0 || root >= group->worldSize()) throw Napi::RangeError::New(info.Env(), "Expected root in [0, worldSize)");
  auto pending = start(info.Env(), [&] { return group->broadcast(a.spans, a.dtype, root, bucket, true); });
  rethrow(info.Env(), capture([&] { pending->wait(); }));
  return info.Env().Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  auto group = current(info.Env());
  auto pending = start(info.Env(), [&] { return group->barrier(); });
  auto* worker = new CollectiveWorker(info.Env(), std::move(pending), info.Env().Undefined(), {});
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value BarrierSync(const Napi::CallbackInfo& info) {
  auto group = current(info.Env());
  auto pending = start(info.Env(), [&] { return group->barrier(); });
  rethrow(info.Env(), capture([&] { pending->wait(); }));
  return info.Env().Undefined();
}

// allGather(input, output) → Promise; allGatherSync(input, output) → undefined. Both arrays are
// passed as a two-element list so that arraysArg checks them alike (one dtype, non-empty); the
// Promise form writes output (index 1) back.
std::pair<Arrays, std::shared_ptr<Group>> gatherArgs(const Napi::CallbackInfo& info) {
  Arrays a = arraysArg(info.Env(), info[0]);
  if (a.spans.size() != 2) throw Napi::TypeError::New(info.Env(), "Expected [input, output]");
  auto group = current(info.Env());
  if (a.spans[1].count != a.spans[0].count * static_cast<std::size_t>(group->worldSize()))
    throw Napi::RangeError::New(info.Env(), "Expected an output of worldSize × the input's length");
  return {a, group};
}

Napi::Value AllGather(const Napi::CallbackInfo& info) {
  auto [a, group] = gatherArgs(info);
  auto pending = start(info.Env(), [&] { return group->allGather(a.spans[0], a.spans[1], a.dtype, false); });
  // Only the output is written back: the worker's list is [output].
  Napi::Array list = Napi::Array::New(info.Env(), 1);
  list.Set(0u, info[0].As<Napi::Array>().Get(1u));
  auto* worker = new CollectiveWorker(info.Env(), std::move(pending), list, {a.spans[1]});
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value AllGatherSync(const Napi::CallbackInfo& info) {
  auto [a, group] = gatherArgs(info);
  auto pending = start(info.Env(), [&] { return group->allGather(a.spans[0], a.spans[1], a.dtype, true); });
  rethrow(info.Env(), capture([&] { pending->wait(); }));
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("allGather", Napi::Function::New(env, AllGather));
  exports.Set("allGatherSync", Napi::Function::New(env, AllGatherSync));
  exports.Set("join", Napi::Function::New(env, Join));
  exports.Set("joinSync", Napi::Function::New(env, JoinSync));
  exports.Set("destroy", Napi::Function::New(env, Destroy));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("allReduce", Napi::Function::New(env, AllReduce));
  exports.Set("allReduceSync", Napi::Function::New(env, AllReduceSync));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast));
  exports.Set("broadcastSync", Napi::Function::New(env, BroadcastSync));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  exports.Set("barrierSync", Napi::Function::New(env, BarrierSync));
  return exports;
}

}  // namespace
}  // namespace hg::dist

// NODE_API_MODULE pastes the function's name into an identifier: it must be unqualified.
static Napi::Object InitDistributed(Napi::Env env, Napi::Object exports) {
  return hg::dist::Init(env, exports);
}

NODE_API_MODULE(handgrad_distributed, InitDistributed)
