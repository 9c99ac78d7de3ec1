#!/bin/bash
# Prepares a run of emsim on a bare GPU machine that has no Rust toolchain and no network (the
# lent H100/H200 machines): builds the release binary and the release test binaries here, and packs
# what the machine lacks into .dev/ (ignored by git):
#   .dev/lib.tar.xz    the shared libraries `ldd target/release/emsim` lists (libhdf5 and its deps)
#   .dev/tests.tar.xz  stripped release test binaries
#   .gl/*.deb          the Vulkan loader (and GL/EGL dispatch) packages, amd64
# Then run scripts/gpu-machine/run.sh there, carrying .gl, .dev and target/release/emsim.
# Usage: bash scripts/gpu-machine/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info .dev .gl
for p in /.dev/ /.gl/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >>.git/info/exclude; done
cargo build --release
if ! cargo test --release --no-run >/tmp/emsim-testbuild.log 2>&1; then
    tail -20 /tmp/emsim-testbuild.log
    exit 1
fi
# libraries
tmp=$(mktemp -d)
mkdir -p "$tmp/lib" "$tmp/tests"
ldd target/release/emsim | awk '/=>/{print $3}' | grep -v -E "libc\.so|libm\.so|libgcc_s|ld-linux|libresolv" |
    xargs -I{} cp -L {} "$tmp/lib/"
(cd "$tmp/lib" && tar cf - . | xz -6 -T0 >"$OLDPWD/.dev/lib.tar.xz")
# test binaries (named after their test file; the library's unit tests as unit_<hash>)
grep "Executable" /tmp/emsim-testbuild.log | sed 's/.*(\(.*\))/\1/' | while read -r f; do
    n=$(basename "$f" | sed 's/-[0-9a-f]*$//')
    [ "$n" = emsim ] && n=unit_$(echo "$f" | md5sum | cut -c1-4)
    cp "$f" "$tmp/tests/$n" && strip "$tmp/tests/$n"
done
(cd "$tmp/tests" && tar cf - . | xz -6 -T0 >"$OLDPWD/.dev/tests.tar.xz")
rm -rf "$tmp"
# the Vulkan loader, as the device README asks
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update >/dev/null
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
cp scripts/gpu-machine/run.sh .dev/
du -sh .dev .gl target/release/emsim
echo "carry: .gl .dev target/release/emsim; command: bash .dev/run.sh [tests|bench|all]"
