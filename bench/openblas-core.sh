#!/usr/bin/env bash
# Prints the OPENBLAS_CORETYPE that matches this CPU's vector units, or nothing.
# OpenBLAS picks its kernels by CPU model; a model newer than the OpenBLAS build
# (Debian 12's 0.3.21 does not know every recent Xeon) falls back to generic
# SSE3 kernels ("Prescott") that run about 6x slower, which would make PyTorch a
# straw man beside mixprec. Naming the core by the vector units it has avoids that.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
case " $flags " in
  *" avx512f "*) echo SkylakeX ;;
  *" avx2 "*) echo Haswell ;;
esac
