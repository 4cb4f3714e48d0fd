#!/bin/sh
# The exact mode's probe (dev tool): PyTorch's numbers from test/exact/cases.py against
# hg::exactForwardBackward, entry by entry. Needs /usr/bin/python3 with torch, OpenBLAS and Sleef.
#   test/exact/probe.sh [-v]          every case; prints only the differing ones unless -v
# HG_EXACT_FUSION=<0|1><0|1> tries the other FMA choices (exact_kernels.h Fusion);
# ATEN_CPU_CAPABILITY=default|avx2|avx512 runs both sides on that kernel set.
set -e
cd "$(dirname "$0")"
out=${TMPDIR:-/tmp}/handgrad-exact-probe
mkdir -p "$out"
g++ -std=c++17 -O2 -Wall -Wno-psabi -ffp-contract=off -DHG_EXACT_PROBE -o "$out/probe" probe.cc -lopenblas -lsleef
/usr/bin/python3 cases.py probe "$out/cases.bin" >/dev/null
"$out/probe" "$out/cases.bin" "$@"
