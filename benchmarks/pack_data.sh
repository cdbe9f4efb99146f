#!/usr/bin/env bash
# Pack MNIST and CIFAR-10 from $CNNEXP_DATA (default ../shared/data) into .gpu-pack/, which git
# ignores: two xz-compressed tar archives, about 28 MB together, so that they travel with the
# working tree to a lent GPU machine (64 MiB at most). benchmarks/gpu_device.sh unpacks them there.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${CNNEXP_DATA:-../shared/data}"
mkdir -p .gpu-pack
for name in MNIST cifar10-jpeg; do
  if [ ! -d "$src/$name" ]; then
    echo "pack_data.sh: no $src/$name; set CNNEXP_DATA to the folder that holds MNIST/ and cifar10-jpeg/" >&2
    exit 2
  fi
  if [ -f "$src/gpu-pack/$name.tar.xz" ]; then  # already packed beside the data: the same bytes
    cp "$src/gpu-pack/$name.tar.xz" .gpu-pack/
  else
    tar -C "$src" -cJf ".gpu-pack/$name.tar.xz" "$name"
  fi
done
du -sh .gpu-pack/*
