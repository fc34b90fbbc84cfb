#!/bin/sh
# Peak RSS of `aidomm-rt run --job predict` (indexing + 8 predict batches) on a 0.2 GB and a
# 2 GB generated test split (tests/test_rss.c at the acceptance sizes). Needs ~2.5 GB of disk
# in $TMPDIR and a release build (make build).
set -eu
cd "$(dirname "$0")/../.."
AIDOMM_SOURCE_DIR="$PWD" AIDOMM_BIN_DIR="$PWD/build/bin" AIDOMM_RSS_FULL=1 \
  CK_DEFAULT_TIMEOUT=1200 build/test_rss | grep -E "peak RSS|Checks"
