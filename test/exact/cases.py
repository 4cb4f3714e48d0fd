#!/usr/bin/python3
"""PyTorch 1.13's numbers for the exact mode: nn.Sequential(nn.Linear, act, ...) + F.cross_entropy +
backward(), one intra-op thread, on this machine's LibTorch/OpenBLAS.

  /usr/bin/python3 test/exact/cases.py probe FILE      every probe case, binary, for test/exact/probe
  /usr/bin/python3 test/exact/cases.py fixtures DIR    the goldens test/39 reads (JSON)

Run with /usr/bin/python3 (Debian's python3-torch); ATEN_CPU_CAPABILITY is honoured as in LibTorch.
Weights are given in nn.Linear's layout [out, in]; every case is seeded by its own description, so
a rerun writes the same numbers.
"""
import ctypes
import json
import struct
import sys
import zlib

import torch

torch.set_num_threads(1)
KINDS = {'linear': 0, 'relu': 1, 'sigmoid': 2, 'tanh': 3}


def run(dtype, kinds, widths, B, reduction, ignore_index=-100, scale=1.0, seed_extra=''):
    name = f"{dtype}-{'.'.join(kinds)}-{'x'.join(map(str, widths))}-B{B}-{reduction}{seed_extra}"
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    dt = torch.float32 if dtype == 'float32' else torch.float64
    mods = []
    for i, k in enumerate(kinds):
        if k == 'linear':
            lin = torch.nn.Linear(widths[i], widths[i + 1]).to(dt)
            with torch.no_grad():
                bound = 1.0 / widths[i] ** 0.5
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            mods.append(lin)
        else:
            mods.append({'relu': torch.nn.ReLU, 'sigmoid': torch.nn.Sigmoid, 'tanh': torch.nn.Tanh}[k]())
    net = torch.nn.Sequential(*mods)
    C = widths[-1]
    X = (torch.randn(B, widths[0], generator=g, dtype=torch.float64) * scale).to(dt).requires_grad_(True)
    y = torch.randint(0, C, (B,), generator=g)
    loss = torch.nn.functional.cross_entropy(net(X), y, reduction=reduction, ignore_index=ignore_index)
    loss.backward()
    linears = [m for m in mods if isinstance(m, torch.nn.Linear)]
    return {
        'name': name, 'dtype': dtype, 'kinds': kinds, 'widths': widths, 'B': B, 'reduction': reduction,
        'ignoreIndex': ignore_index, 'X': X.detach(), 'y': y.to(torch.int32),
        'params': [t.detach() for m in linears for t in (m.weight, m.bias)],
        'loss': loss.detach(), 'dX': X.grad, 'grads': [t.grad for m in linears for t in (m.weight, m.bias)],
    }


def stack(depth, act, first_act=False):
    """depth Linear layers with act between them (and before the first when first_act)."""
    kinds = [act] if first_act else []
    for d in range(depth):
        kinds.append('linear')
        if d + 1 < depth:
            kinds.append(act)
    return kinds


def widths_for(kinds, sizes):
    """sizes: the Linear widths in, h1, ..., C; activations keep their width."""
    w, it = [sizes[0]], iter(sizes[1:])
    for k in kinds:
        w.append(next(it) if k == 'linear' else w[-1])
    return w


def probe_cases():
    for dtype in ('float32', 'float64'):
        for act in ('relu', 'sigmoid', 'tanh'):
            for depth in (1, 2, 3, 4):
                for B in (1, 3, 7, 8, 16, 17, 64, 129):
                    for C in (1, 2, 3, 10, 17):
                        for reduction in ('mean', 'sum'):
                            hidden = [5, 33, 9][: depth - 1]
                            kinds = stack(depth, act, first_act=(depth == 2 and B == 7))
                            yield run(dtype, kinds, widths_for(kinds, [6] + hidden + [C]), B, reduction)
        for B, I, H, C in ((4, 5, 10, 3), (64, 128, 256, 10), (256, 784, 1024, 10), (33, 1, 1, 1), (1, 1, 40, 2)):
            for act in ('relu', 'sigmoid', 'tanh'):
                kinds = stack(2, act)
                yield run(dtype, kinds, widths_for(kinds, [I, H, C]), B, 'mean')
        kinds = stack(2, 'tanh')
        yield run(dtype, kinds, widths_for(kinds, [5, 10, 4]), 9, 'mean', ignore_index=1)
        yield run(dtype, kinds, widths_for(kinds, [5, 10, 4]), 9, 'sum', ignore_index=2)
        # Deeper cascades (SumKernel's 4 levels of 16 rows, nll_loss's 8), wide logits, large offsets.
        for B, I, H, C, scale in ((4113, 3, 40, 5, 1.0), (300, 7, 70, 40, 1.0), (70000, 2, 3, 2, 1.0), (1100000, 2, 4, 2, 1.0),
                                  (12, 6, 8, 5, 1e3)):
            kinds = stack(2, 'sigmoid')
            yield run(dtype, kinds, widths_for(kinds, [I, H, C]), B, 'mean', scale=scale, seed_extra=f'-s{scale:g}')


def fixture_cases():
    for dtype in ('float32', 'float64'):
        for act in ('relu', 'sigmoid', 'tanh'):
            for depth in (1, 2, 3, 4):
                for reduction in ('mean', 'sum'):
                    kinds = stack(depth, act)
                    sizes = [7] + [12, 9, 33][: depth - 1] + [5 if depth % 2 else 10]
                    B = (17, 8, 33, 3)[depth - 1]
                    yield run(dtype, kinds, widths_for(kinds, sizes), B, reduction)
        kinds = stack(2, 'relu', first_act=True)
        yield run(dtype, kinds, widths_for(kinds, [4, 9, 3]), 6, 'mean')
        kinds = stack(2, 'sigmoid')
        yield run(dtype, kinds, widths_for(kinds, [5, 10, 4]), 9, 'mean', ignore_index=1)


def write_probe(path):
    with open(path, 'wb') as f:
        n = 0
        for c in probe_cases():
            fmt = 'f' if c['dtype'] == 'float32' else 'd'
            head = [4 if fmt == 'f' else 8, len(c['kinds'])] + [KINDS[k] for k in c['kinds']] + list(c['widths']) + [
                c['B'], 0 if c['reduction'] == 'mean' else 1, c['ignoreIndex']]
            f.write(struct.pack(f'<{len(head)}i', *head))
            name = c['name'].encode()
            f.write(struct.pack('<i', len(name)) + name)
            f.write(c['X'].contiguous().numpy().tobytes())
            f.write(c['y'].numpy().tobytes())
            for t in c['params']:
                f.write(t.contiguous().numpy().tobytes())
            f.write(struct.pack(f'<{fmt}', c['loss'].item()))
            f.write(c['dX'].contiguous().numpy().tobytes())
            for t in c['grads']:
                f.write(t.contiguous().numpy().tobytes())
            n += 1
    print(f'{n} cases -> {path}')


def bits(t):
    """A tensor's values as hex strings of their bits: exact for -0, NaN payloads and f32."""
    a = t.contiguous().numpy().ravel()
    if a.dtype.itemsize == 4:
        return ['%08x' % v for v in a.view('<u4').tolist()]
    return ['%016x' % v for v in a.view('<u8').tolist()]


def write_fixtures(path):
    cases = []
    for c in fixture_cases():
        cases.append({
            'name': c['name'], 'dtype': c['dtype'], 'kinds': c['kinds'], 'widths': c['widths'], 'B': c['B'],
            'reduction': c['reduction'], 'ignoreIndex': c['ignoreIndex'],
            'X': bits(c['X']), 'y': c['y'].tolist(),
            'params': [bits(t) for t in c['params']],  # nn.Linear's layout: weight [out, in], bias [out]
            'loss': bits(c['loss'].reshape(1))[0], 'dX': bits(c['dX']), 'grads': [bits(t) for t in c['grads']],
        })
    capability = torch.__config__.show().split('CPU capability usage: ')[1].split('\n')[0]
    blas = ctypes.CDLL('libopenblas.so.0')
    blas.openblas_get_corename.restype = ctypes.c_char_p
    doc = {
        # The machine the bits hold for: LibTorch's CPU kernels and OpenBLAS's GEMM kernels by name.
        'capability': capability,
        'openblasCore': blas.openblas_get_corename().decode(),
        'about': 'PyTorch ' + torch.__version__ + ' nn.Sequential + F.cross_entropy + backward(), one intra-op thread, '
                 'CPU capability ' + capability + '; every tensor as the hex bits of its entries (8 digits for float32, 16 for float64); '
                 'regenerate with /usr/bin/python3 test/exact/cases.py fixtures test/fixtures/exact',
        'cases': cases,
    }
    with open(path + '/sequential.json', 'w') as f:
        json.dump(doc, f, separators=(',', ':'))
    print(f'{len(cases)} cases -> {path}/sequential.json')


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('probe', 'fixtures'):
        sys.exit(__doc__)
    (write_probe if sys.argv[1] == 'probe' else write_fixtures)(sys.argv[2])
