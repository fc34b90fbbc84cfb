#!/usr/bin/env bash
# Reports where the CUDA toolkit's NVRTC and the driver library are, if anywhere. aidomm loads
# them with dlopen at run time, so nothing here is needed to build or to run CPU plans.
for d in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-*; do
  [ -n "$d" ] || continue
  lib=$(ls "$d"/lib64/libnvrtc.so* "$d"/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null | head -1)
  if [ -n "$lib" ]; then
    ver=$("$d/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    echo "NVRTC: found $lib (CUDA ${ver:-unknown})"
    break
  fi
done
[ -n "${lib:-}" ] || echo "NVRTC: not found (CUDA plans unavailable; CPU works)"
if ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1'; then
  echo "CUDA driver: libcuda.so.1 present"
else
  echo "CUDA driver: not present (no GPU on this machine)"
fi
