// Dev tool: the exact mode against PyTorch, entry by entry. Reads the cases test/exact/cases.py wrote
// (inputs, parameters and PyTorch's loss and gradients) and runs each through hg::exactForwardBackward,
// printing how many entries of each tensor differ in any bit. Build and run: test/exact/probe.sh.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../native/core/exact.h"

namespace {

FILE* in;
template <typename V>
void readInto(V* p, size_t n) {
  if (n && fread(p, sizeof(V), n, in) != n) { fprintf(stderr, "truncated\n"); exit(2); }
}
int readInt() { int v; readInto(&v, 1); return v; }

template <typename V, typename U>
size_t differing(const V* a, const V* b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; ++i) {
    U x, y;
    memcpy(&x, a + i, sizeof x);
    memcpy(&y, b + i, sizeof y);
    d += x != y;
  }
  return d;
}

template <typename T, typename U>
bool runCase(const std::vector<int>& kindsI, const std::vector<int>& widths, int B, int red, int ignore,
             bool hasWeight, bool hasTargets, double smoothing, const std::string& name, bool verbose) {
  const int L = int(kindsI.size());
  std::vector<hg::LayerKind> kinds;
  for (int k : kindsI) kinds.push_back(static_cast<hg::LayerKind>(k));
  const hg::Net net{kinds.data(), widths.data(), L};
  std::vector<T> X(size_t(B) * widths[0]);
  std::vector<int32_t> y(B);
  const size_t C = size_t(widths.back());
  std::vector<T> weight(hasWeight ? C : 0), targets(hasTargets ? size_t(B) * C : 0), gradOutput(red == 2 ? B : 0);
  readInto(X.data(), X.size());
  readInto(y.data(), y.size());
  readInto(weight.data(), weight.size());
  readInto(targets.data(), targets.size());
  readInto(gradOutput.data(), gradOutput.size());
  std::vector<std::vector<T>> params, torchGrads, grads;
  std::vector<std::pair<int, int>> shapes;  // (in, out) per Linear
  for (int i = 0; i < L; ++i) {
    if (kinds[i] != hg::LayerKind::Linear) continue;
    const int inW = widths[i], outW = widths[i + 1];
    shapes.push_back({inW, outW});
    std::vector<T> Wt(size_t(inW) * outW), W(Wt.size()), b(outW);
    readInto(Wt.data(), Wt.size());
    readInto(b.data(), b.size());
    hg::exact::transpose(Wt.data(), size_t(outW), size_t(inW), W.data());
    params.push_back(W);
    params.push_back(b);
  }
  T torchLoss;
  readInto(&torchLoss, 1);
  std::vector<T> torchLosses(red == 2 ? B : 0);
  readInto(torchLosses.data(), torchLosses.size());
  std::vector<T> torchDX(X.size());
  readInto(torchDX.data(), torchDX.size());
  for (auto& s : shapes) {
    std::vector<T> dWt(size_t(s.first) * s.second), db(s.second);
    readInto(dWt.data(), dWt.size());
    readInto(db.data(), db.size());
    torchGrads.push_back(dWt);
    torchGrads.push_back(db);
  }
  for (auto& p : params) grads.push_back(std::vector<T>(p.size(), T(-7)));
  std::vector<const T*> pp;
  std::vector<T*> gp;
  for (auto& p : params) pp.push_back(p.data());
  for (auto& g : grads) gp.push_back(g.data());
  hg::Layout l;
  hg::stackLayout<T>(net, uint64_t(B), static_cast<uint64_t*>(nullptr), &l);
  std::vector<T> ws(l.total);
  std::vector<T> dX(X.size());
  hg::Step<T> a{B, X.data(), y.data(), pp.data(), gp.data(), dX.data(), {}, false, ws.data()};
  a.loss.reduction = red == 0 ? hg::Reduction::Mean : red == 1 ? hg::Reduction::Sum : hg::Reduction::None;
  a.loss.ignoreIndex = ignore;
  a.loss.weight = hasWeight ? weight.data() : nullptr;
  a.loss.targets = hasTargets ? targets.data() : nullptr;
  a.loss.gradOutput = red == 2 ? gradOutput.data() : nullptr;
  a.loss.labelSmoothing = smoothing;
  double loss = 0;
  const hg::StackStatus st = hg::exactForwardBackward(net, a, &loss);
  if (st.stage != hg::Stage::Ok) {
    printf("%s: status %d layer %d\n", name.c_str(), int(st.stage), st.layer);
    return false;
  }
  const T ourLoss = T(loss);
  std::string report;
  size_t total = differing<T, U>(&ourLoss, &torchLoss, 1);
  if (total) report += " loss";
  if (red == 2) {
    const size_t dl = differing<T, U>(ws.data() + l.losses, torchLosses.data(), size_t(B));
    if (dl) report += " losses:" + std::to_string(dl) + "/" + std::to_string(B);
    total += dl;
  }
  const size_t dx = differing<T, U>(dX.data(), torchDX.data(), dX.size());
  if (dx) report += " dX:" + std::to_string(dx) + "/" + std::to_string(dX.size());
  total += dx;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const int inW = shapes[k].first, outW = shapes[k].second;
    std::vector<T> ours(size_t(inW) * outW);
    hg::exact::transpose(grads[2 * k].data(), size_t(inW), size_t(outW), ours.data());
    const size_t dw = differing<T, U>(ours.data(), torchGrads[2 * k].data(), ours.size());
    const size_t db = differing<T, U>(grads[2 * k + 1].data(), torchGrads[2 * k + 1].data(), size_t(outW));
    if (dw) report += " dW" + std::to_string(k + 1) + ":" + std::to_string(dw) + "/" + std::to_string(ours.size());
    if (db) report += " db" + std::to_string(k + 1) + ":" + std::to_string(db) + "/" + std::to_string(outW);
    total += dw + db;
  }
  if (total || verbose) printf("%s:%s%s\n", name.c_str(), total ? "" : " identical", report.c_str());
  return total == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) { fprintf(stderr, "usage: probe CASES.bin [-v]\n"); return 2; }
  in = fopen(argv[1], "rb");
  if (!in) { perror(argv[1]); return 2; }
  const bool verbose = argc > 2;
  if (const char* why = hg::exact::exactUnsupported()) { printf("unsupported: %s\n", why); return 1; }
  printf("ATen capability %s\n", hg::exact::capabilityName(hg::exact::atenCapability()));
  int cases = 0, same = 0, dtype;
  while (fread(&dtype, sizeof dtype, 1, in) == 1) {
    const int L = readInt();
    std::vector<int> kinds(L), widths(L + 1);
    for (auto& k : kinds) k = readInt();
    for (auto& w : widths) w = readInt();
    const int B = readInt(), red = readInt(), ignore = readInt(), hasWeight = readInt(), hasTargets = readInt();
    double smoothing;
    readInto(&smoothing, 1);
    std::string name(size_t(readInt()), ' ');
    readInto(&name[0], name.size());
    const bool ok = dtype == 4 ? runCase<float, uint32_t>(kinds, widths, B, red, ignore, hasWeight, hasTargets, smoothing, name, verbose)
                               : runCase<double, uint64_t>(kinds, widths, B, red, ignore, hasWeight, hasTargets, smoothing, name, verbose);
    ++cases;
    same += ok;
  }
  printf("%d of %d cases bit-identical\n", same, cases);
  return same == cases ? 0 : 1;
}
