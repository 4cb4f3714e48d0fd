// torch.utils.data.DistributedSampler's shuffled order, bit for bit, so that Node ranks take the
// very rows PyTorch ranks of the same job would: each epoch the sampler seeds a torch.Generator
// with seed + epoch and draws torch.randperm(n, generator=g). That generator is a 32-bit mt19937
// seeded with the seed's low 32 bits (at::mt19937, ATen/core/MT19937RNGEngine.h), and PyTorch 1.13's
// randperm_cpu (ATen/native/TensorFactories.cpp) is a forward Fisher–Yates swap of i with
// i + random() % (n − i), for i = 0 … n−2, on the identity — for n < 2^32/20 (larger n take another
// branch, random64(), which is refused here rather than guessed).

const N = 624;
const M = 397;

/** std::mt19937 (the 32-bit Mersenne Twister), as at::mt19937 seeds and tempers it. */
export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    const s = this.state;
    s[0] = seed >>> 0;
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1] ^ (s[j - 1] >>> 30);
      // 1812433253 · prev + j, mod 2^32 (Math.imul keeps the low 32 bits).
      s[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
  }

  /** The next 32-bit output, in [0, 2^32). */
  next(): number {
    const s = this.state;
    if (this.index >= N) {
      for (let k = 0; k < N; k++) {
        const y = (s[k] & 0x80000000) | (s[(k + 1) % N] & 0x7fffffff);
        s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = s[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** The largest n randperm_cpu shuffles with 32-bit draws (uint32 max / 20). */
export const TORCH_RANDPERM_MAX = Math.floor(0xffffffff / 20);

/**
 * torch.randperm(n, generator=torch.Generator().manual_seed(seed)) into order[0, n), for an
 * mt19937 `seed` already reduced to 32 bits. @throws {RangeError} for n ≥ TORCH_RANDPERM_MAX
 */
export function torchRandperm(order: Int32Array, n: number, seed: number): Int32Array {
  if (n >= TORCH_RANDPERM_MAX) {
    throw new RangeError(`Expected at most ${TORCH_RANDPERM_MAX - 1} rows for the torch sampler (torch.randperm draws 64-bit numbers past that) but received ${n}`);
  }
  for (let i = 0; i < n; i++) order[i] = i;
  const g = new Mt19937(seed);
  for (let i = 0; i < n - 1; i++) {
    const z = i + (g.next() % (n - i));
    const t = order[i];
    order[i] = order[z];
    order[z] = t;
  }
  return order;
}

/**
 * The generator seed DistributedSampler uses in epoch `epoch` (0-based, as sampler.set_epoch
 * takes it) for a sampler seed `seed`: seed + epoch as the uint64 torch.Generator.manual_seed
 * takes, of which mt19937 keeps the low 32 bits. Exact for any safe-integer seed (a negative one
 * wraps as two's complement, as PyTorch reads it).
 */
export function torchSamplerSeed(seed: number, epoch: number): number {
  return Number(BigInt.asUintN(32, BigInt(seed) + BigInt(epoch)));
}
