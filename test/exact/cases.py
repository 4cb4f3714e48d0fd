#!/usr/bin/python3
"""PyTorch 1.13's numbers for the exact mode: nn.Sequential(nn.Linear, act, ...) + F.cross_entropy +
backward(), one intra-op thread, on this machine's LibTorch/OpenBLAS.

  /usr/bin/python3 test/exact/cases.py probe FILE      every probe case, binary, for test/exact/probe
  /usr/bin/python3 test/exact/cases.py fixtures DIR    the goldens test/39 reads (JSON), and 200-step
                                                      torch.optim trajectories (trajectories.json)

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


def run(dtype, kinds, widths, B, reduction, ignore_index=-100, scale=1.0, seed_extra='', weight=False,
        smoothing=0.0, targets=False, accumulate=False):
    """One step; with accumulate, a second backward on the same X with other labels adds into every .grad."""
    opts = ('-w' if weight else '') + (f'-ls{smoothing:g}' if smoothing else '') + ('-prob' if targets else '') + (
        f'-ig{ignore_index}' if ignore_index != -100 else '') + ('-acc' if accumulate else '')
    name = f"{dtype}-{'.'.join(kinds)}-{'x'.join(map(str, widths))}-B{B}-{reduction}{opts}{seed_extra}"
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
    if ignore_index != -100:
        y[torch.rand(B, generator=g) < 0.3] = ignore_index
        y[0] = 0  # at least one row counts
    w = (torch.rand(C, generator=g, dtype=torch.float64) * 2 + 0.1).to(dt) if weight else None
    q = torch.softmax(torch.randn(B, C, generator=g, dtype=torch.float64) * 2, 1).to(dt) if targets else None
    grad_output = torch.randn(B, generator=g, dtype=torch.float64).to(dt) if reduction == 'none' else None
    logits = net(X)
    loss = torch.nn.functional.cross_entropy(logits, q if targets else y, weight=w, reduction=reduction,
                                             ignore_index=ignore_index, label_smoothing=smoothing)
    if reduction == 'none':
        loss.backward(grad_output)
    else:
        loss.backward()
    y2 = None
    if accumulate:
        y2 = torch.randint(0, C, (B,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(X), y2, weight=w, reduction=reduction, label_smoothing=smoothing)
        if reduction == 'none':
            loss.backward(grad_output)
        else:
            loss.backward()
    linears = [m for m in mods if isinstance(m, torch.nn.Linear)]
    return {
        'name': name, 'dtype': dtype, 'kinds': kinds, 'widths': widths, 'B': B, 'reduction': reduction,
        'ignoreIndex': ignore_index, 'labelSmoothing': smoothing, 'X': X.detach(), 'y': y.to(torch.int32),
        'weight': w, 'targets': q, 'gradOutput': grad_output, 'y2': None if y2 is None else y2.to(torch.int32),
        'logits': logits.detach(),
        'params': [t.detach() for m in linears for t in (m.weight, m.bias)],
        # 'none': the rows' losses, and their at::sum as the scalar (as the LibTorch reference returns it)
        'losses': loss.detach() if reduction == 'none' else None,
        'loss': loss.detach().sum() if reduction == 'none' else loss.detach(),
        'dX': X.grad, 'grads': [t.grad for m in linears for t in (m.weight, m.bias)],
    }


def option_cases(dtype):
    """F.cross_entropy's options over a few shapes (C = 1, 2, 3, 10, 17 and B = 1 … 129)."""
    for B, C in ((1, 3), (7, 1), (9, 2), (16, 10), (17, 17), (129, 10)):
        kinds = stack(2, 'tanh')
        w = widths_for(kinds, [5, 11, C])
        for reduction in ('mean', 'sum', 'none'):
            yield run(dtype, kinds, w, B, reduction, weight=True)
            yield run(dtype, kinds, w, B, reduction, smoothing=0.1)
            yield run(dtype, kinds, w, B, reduction, smoothing=0.25, weight=True)
            yield run(dtype, kinds, w, B, reduction, targets=True)
            yield run(dtype, kinds, w, B, reduction, targets=True, weight=True, smoothing=0.2)
            if B > 1 and C > 1:  # with C = 1 every row would be ignored ('mean': PyTorch's NaN, refused)
                yield run(dtype, kinds, w, B, reduction, ignore_index=C - 1)
                # 'mean' divides the smoothing term by the counted rows, not B (no weight: their number)
                yield run(dtype, kinds, w, B, reduction, ignore_index=C - 1, smoothing=0.1)
                yield run(dtype, kinds, w, B, reduction, ignore_index=1 % C, weight=True, smoothing=0.15)


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
        yield from option_cases(dtype)
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
        # F.cross_entropy's options (test/39 names them in the case)
        kinds = stack(2, 'tanh')
        w = widths_for(kinds, [5, 11, 10])
        for reduction in ('mean', 'sum', 'none'):
            yield run(dtype, kinds, w, 17, reduction, weight=True)
            yield run(dtype, kinds, w, 17, reduction, smoothing=0.1)
            yield run(dtype, kinds, w, 17, reduction, targets=True, weight=True, smoothing=0.2)
            yield run(dtype, kinds, w, 17, reduction, ignore_index=3, smoothing=0.1)
            yield run(dtype, kinds, w, 17, reduction, ignore_index=3, weight=True, smoothing=0.15)
        yield run(dtype, kinds, widths_for(kinds, [5, 11, 1]), 4, 'mean', targets=True)
        yield run(dtype, kinds, widths_for(kinds, [5, 11, 2]), 1, 'none', weight=True, smoothing=0.3)
        # Two backward passes into the same .grad (and X.grad): the package's accumulate.
        for reduction in ('mean', 'none'):
            yield run(dtype, stack(3, 'relu'), widths_for(stack(3, 'relu'), [6, 9, 7, 4]), 11, reduction, accumulate=True)


def write_probe(path):
    with open(path, 'wb') as f:
        n = 0
        for c in probe_cases():
            fmt = 'f' if c['dtype'] == 'float32' else 'd'
            red = {'mean': 0, 'sum': 1, 'none': 2}[c['reduction']]
            head = [4 if fmt == 'f' else 8, len(c['kinds'])] + [KINDS[k] for k in c['kinds']] + list(c['widths']) + [
                c['B'], red, c['ignoreIndex'], c['weight'] is not None, c['targets'] is not None]
            f.write(struct.pack(f'<{len(head)}i', *head) + struct.pack('<d', c['labelSmoothing']))
            name = c['name'].encode()
            f.write(struct.pack('<i', len(name)) + name)
            for t in (c['X'], c['y'], c['weight'], c['targets'], c['gradOutput'], *c['params']):
                if t is not None:
                    f.write(t.contiguous().numpy().tobytes())
            f.write(struct.pack(f'<{fmt}', c['loss'].item()))
            for t in (c['losses'], c['dX'], *c['grads']):
                if t is not None:
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
            'reduction': c['reduction'], 'ignoreIndex': c['ignoreIndex'], 'labelSmoothing': c['labelSmoothing'],
            'X': bits(c['X']), 'y': c['y'].tolist(), 'y2': None if c['y2'] is None else c['y2'].tolist(),
            'weight': None if c['weight'] is None else bits(c['weight']),
            'targets': None if c['targets'] is None else bits(c['targets']),
            'gradOutput': None if c['gradOutput'] is None else bits(c['gradOutput']),
            'losses': None if c['losses'] is None else bits(c['losses']),
            'logits': bits(c['logits']),
            'params': [bits(t) for t in c['params']],  # nn.Linear's layout: weight [out, in], bias [out]
            'loss': bits(c['loss'].reshape(1))[0], 'dX': bits(c['dX']), 'grads': [bits(t) for t in c['grads']],
        })
    capability = torch.__config__.show().split('CPU capability usage: ')[1].split('\n')[0]
    capability = {'NO AVX': 'DEFAULT'}.get(capability, capability)  # ATen's name for the DEFAULT kernels
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


def trajectory(dtype, opt, steps=200):
    """nn.Sequential(Linear, Tanh, Linear, ReLU, Linear) trained `steps` steps by torch.optim on 4
    batches of 16 rows in turn (F.cross_entropy, mean): the start and the end, to the bit."""
    name = f'{dtype}-{opt}'
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    dt = torch.float32 if dtype == 'float32' else torch.float64
    kinds, widths = ['linear', 'tanh', 'linear', 'relu', 'linear'], [6, 12, 12, 9, 9, 4]
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 9), torch.nn.ReLU(),
                              torch.nn.Linear(9, 4)).to(dt)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * 0.5)
    X = torch.randn(64, 6, generator=g, dtype=torch.float64).to(dt)
    y = torch.randint(0, 4, (64,), generator=g)
    settings = {
        'sgd': dict(lr=0.1), 'momentum': dict(lr=0.05, momentum=0.9), 'adam': dict(lr=0.01),
        'adamw': dict(lr=0.01, weight_decay=0.01),
    }[opt]
    optim = (torch.optim.SGD if opt in ('sgd', 'momentum') else torch.optim.Adam if opt == 'adam' else torch.optim.AdamW)(
        net.parameters(), **settings)
    params0 = [bits(p.detach()) for p in net.parameters()]
    for t in range(steps):
        rows = slice(16 * (t % 4), 16 * (t % 4) + 16)
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(X[rows]), y[rows])
        loss.backward()
        optim.step()
    return {
        'name': name, 'dtype': dtype, 'optimizer': opt, 'settings': settings, 'steps': steps, 'batch': 16,
        'kinds': kinds, 'widths': widths, 'X': bits(X), 'y': y.tolist(), 'params': params0,
        'lastLoss': bits(loss.detach().reshape(1))[0], 'final': [bits(p.detach()) for p in net.parameters()],
    }


def write_trajectories(path):
    runs = [trajectory(d, o) for d in ('float32', 'float64') for o in ('sgd', 'momentum', 'adam', 'adamw')]
    with open(path + '/trajectories.json', 'w') as f:
        json.dump({'about': 'torch.optim trajectories of nn.Sequential + F.cross_entropy, PyTorch ' + torch.__version__ +
                   ', one intra-op thread; params in nn.Linear\'s layout, as hex bits', 'runs': runs}, f,
                  separators=(',', ':'))
    print(f'{len(runs)} trajectories -> {path}/trajectories.json')


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('probe', 'fixtures'):
        sys.exit(__doc__)
    if sys.argv[1] == 'probe':
        write_probe(sys.argv[2])
    else:
        write_fixtures(sys.argv[2])
        write_trajectories(sys.argv[2])
