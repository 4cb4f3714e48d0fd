// One Node rank of a data-parallel job that PyTorch DistributedDataParallel ranks (train.py) may
// join: the same nn.Sequential (Linear, Tanh, Linear), the same sampler, the same optimizer; the
// Trainer makes exactly DDP's collectives (distributed: { peers: 'ddp' }).
//
//   RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 node train.js --data data.json
//
// The options are train.py's; with --out, each rank writes its final weights as the matching
// state_dict in JSON ("{rank}" in the path is replaced by the rank); --init starts from one.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { parseArgs } = require('node:util');
const { distributed, Linear, Sequential, Tanh, Trainer } = require('handgrad');

const { values: a } = parseArgs({
  options: {
    data: { type: 'string' }, out: { type: 'string' }, init: { type: 'string' }, hidden: { type: 'string', default: '16' },
    dtype: { type: 'string', default: 'float32' }, optimizer: { type: 'string', default: 'sgd' },
    lr: { type: 'string', default: '0.1' }, momentum: { type: 'string', default: '0' },
    epochs: { type: 'string', default: '3' }, 'batch-size': { type: 'string', default: '8' },
    seed: { type: 'string', default: '0' }, shuffle: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});

async function main() {
  const { rank } = await distributed.init({ timeoutMs: Number(a['timeout-ms']) });
  const data = JSON.parse(readFileSync(a.data, 'utf8'));
  const D = data.X[0].length;
  const C = Math.max(...data.y) + 1;
  const X = (a.dtype === 'float64' ? Float64Array : Float32Array).from(data.X.flat());
  const y = Int32Array.from(data.y);
  const H = Number(a.hidden);
  const dtype = a.dtype;
  // Any weights: DDP starts every rank from rank 0's.
  const model = new Sequential([new Linear(D, H, { seed: 100 + rank, dtype }), new Tanh(), new Linear(H, C, { seed: 200 + rank, dtype })]);
  if (a.init) {
    // A state_dict in JSON: weights [out,in] into handgrad's [in,out].
    const s = JSON.parse(readFileSync(a.init, 'utf8'));
    const cols = (w) => w[0].map((_, i) => w.map((row) => row[i])).flat();
    const p = model.params;
    p.W1.set(cols(s['0.weight'])); p.b1.set(s['0.bias']); p.W2.set(cols(s['2.weight'])); p.b2.set(s['2.bias']);
  }
  const trainer = new Trainer(model, {
    optimizer: a.optimizer, lr: Number(a.lr), ...(a.optimizer === 'sgd' ? { momentum: Number(a.momentum) } : {}),
    batchSize: Number(a['batch-size']), seed: Number(a.seed),
    distributed: { peers: 'ddp' }, // DistributedSampler's shuffle (sampler 'torch') comes with it
  });
  await trainer.fit(X, y, {
    epochs: Number(a.epochs), shuffle: a.shuffle === '1',
    callbacks: { onEpochEnd: (r) => console.log(JSON.stringify({ rank, epoch: r.epoch, loss: r.loss })) },
  });
  if (a.out) {
    // The state_dict's names and layout: "0.weight" [out,in], "0.bias", "2.weight", "2.bias".
    const p = trainer.params;
    const rows = (w, inn, out) => Array.from({ length: out }, (_, o) => Array.from({ length: inn }, (_, i) => w[i * out + o]));
    const state = { '0.weight': rows(p.W1, D, H), '0.bias': Array.from(p.b1), '2.weight': rows(p.W2, H, C), '2.bias': Array.from(p.b2) };
    writeFileSync(a.out.replace('{rank}', String(rank)), JSON.stringify(state));
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
}).finally(() => distributed.destroy());
