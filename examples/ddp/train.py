# One PyTorch rank of a data-parallel job that Node ranks (train.js) may join: plain
# DistributedDataParallel on the gloo backend, joined the standard way (env://: RANK, WORLD_SIZE,
# MASTER_ADDR, MASTER_PORT), with DistributedSampler's shards. Nothing here knows about Node.
#
#   RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python3 train.py --data data.json
#
# data.json: {"X": [[…D numbers…], …], "y": [class, …]}. With --out, each rank writes its final
# state_dict as JSON ("{rank}" in the path is replaced by the rank); --init starts from one.
import argparse
import json
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

p = argparse.ArgumentParser()
p.add_argument('--data', required=True)
p.add_argument('--out')
p.add_argument('--init', help='a state_dict JSON to start from (on rank 0 it is every rank\'s start)')
p.add_argument('--hidden', type=int, default=16)
p.add_argument('--dtype', choices=['float32', 'float64'], default='float32')
p.add_argument('--optimizer', choices=['sgd', 'adam'], default='sgd')
p.add_argument('--lr', type=float, default=0.1)
p.add_argument('--momentum', type=float, default=0.0)
p.add_argument('--epochs', type=int, default=3)
p.add_argument('--batch-size', type=int, default=8)
p.add_argument('--seed', type=int, default=0)
p.add_argument('--shuffle', type=int, default=1)
p.add_argument('--timeout-ms', type=int, default=60000)
a = p.parse_args()

dist.init_process_group('gloo', init_method='env://', timeout=timedelta(milliseconds=a.timeout_ms))
rank = dist.get_rank()
dtype = torch.float64 if a.dtype == 'float64' else torch.float32

data = json.load(open(a.data))
X = torch.tensor(data['X'], dtype=dtype)
y = torch.tensor(data['y'], dtype=torch.long)
D, C = X.shape[1], int(y.max()) + 1

torch.manual_seed(100 + rank)  # any weights: DDP starts every rank from rank 0's
model = torch.nn.Sequential(torch.nn.Linear(D, a.hidden), torch.nn.Tanh(), torch.nn.Linear(a.hidden, C)).to(dtype)
if a.init:
    model.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in json.load(open(a.init)).items()})
ddp = DistributedDataParallel(model)
if a.optimizer == 'adam':
    opt = torch.optim.Adam(ddp.parameters(), lr=a.lr)
else:
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=a.momentum)

sampler = DistributedSampler(TensorDataset(X, y), shuffle=bool(a.shuffle), seed=a.seed)
loader = DataLoader(TensorDataset(X, y), batch_size=a.batch_size, sampler=sampler)
for epoch in range(a.epochs):
    sampler.set_epoch(epoch)  # the Node ranks' epoch epoch + 1
    total, rows = 0.0, 0
    for xb, yb in loader:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(yb)
        rows += len(yb)
    print(json.dumps({'rank': rank, 'epoch': epoch + 1, 'loss': total / rows}), flush=True)

if a.out:
    state = {k: v.tolist() for k, v in model.state_dict().items()}
    json.dump(state, open(a.out.replace('{rank}', str(rank)), 'w'))
dist.destroy_process_group()
