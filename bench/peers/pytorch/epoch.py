#!/usr/bin/python3
# The PyTorch peer of `npm run bench:train`: one MNIST-size epoch of the same training setting as
# the Trainer's (nn.Sequential(Linear(D,H), ReLU, Linear(H,C)), F.cross_entropy mean, torch.optim.SGD,
# a fresh random permutation per epoch, batch B), on the very X and y the bench trains on (raw
# little-endian files it writes), so both sides do the same arithmetic on the same data.
#
# A long-lived process, so the bench can alternate with its own epochs: it answers each line
# "epoch" on stdin with the seconds of one epoch (perf_counter around the loop only) on stdout,
# and exits on EOF. Run with Debian's /usr/bin/python3 (python3-torch); arguments:
#   epoch.py DTYPE X_PATH Y_PATH N D H C BATCH LR THREADS
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

dtype_name, x_path, y_path = sys.argv[1:4]
N, D, H, C, B = (int(a) for a in sys.argv[4:9])
lr = float(sys.argv[9])
torch.set_num_threads(int(sys.argv[10]))
dtype = torch.float32 if dtype_name == 'float32' else torch.float64

X = torch.from_numpy(np.fromfile(x_path, dtype=np.float32 if dtype == torch.float32 else np.float64).reshape(N, D))
y = torch.from_numpy(np.fromfile(y_path, dtype=np.int32).astype(np.int64))
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, C)).to(dtype)
opt = torch.optim.SGD(model.parameters(), lr=lr)


def epoch():
    order = torch.randperm(N)
    for start in range(0, N, B):
        idx = order[start:start + B]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()


order0 = torch.arange(min(N, 20 * B))
for start in range(0, len(order0), B):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(X[start:start + B]), y[start:start + B]).backward()
    opt.step()
print(f'ready torch {torch.__version__} threads {torch.get_num_threads()}', flush=True)
for line in sys.stdin:
    if line.strip() != 'epoch':
        continue
    t0 = time.perf_counter()
    epoch()
    print(f'{time.perf_counter() - t0:.6f}', flush=True)
