#!/usr/bin/env bash
# System packages fourd needs to build and test (Debian/Ubuntu): FFmpeg's libraries and clang for
# video decoding, the ffmpeg CLI (ffprobe in tests, benchmarks), fontconfig and a font for charts.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends pkg-config build-essential ca-certificates \
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libclang-dev clang ffmpeg \
  libfontconfig1-dev fonts-dejavu-core >/dev/null
echo "system packages ready"
