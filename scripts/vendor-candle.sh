#!/usr/bin/env bash
# Re-creates vendor/candle-core: candle-core from crates.io (checksum-checked) with
# vendor/candle-core-backprop.patch applied. Run from the repository root after changing
# VERSION/SHA256 to move to a new candle (then fix the patch if it no longer applies, and
# update candle-nn's version in Cargo.toml to match).
set -euo pipefail
VERSION=0.11.1
SHA256=d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325
URL="https://static.crates.io/crates/candle-core/candle-core-$VERSION.crate"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL "$URL" -o "$tmp/candle-core.crate"
echo "$SHA256  $tmp/candle-core.crate" | sha256sum -c --quiet
tar -xzf "$tmp/candle-core.crate" -C "$tmp"
src="$tmp/candle-core-$VERSION"

rm -rf vendor/candle-core
mkdir -p vendor/candle-core
cp -a "$src/src" "$src/LICENSE" "$src/README.md" vendor/candle-core/
# The manifest without the example/test/bench targets and dev-dependencies (not vendored).
python3 - "$src/Cargo.toml" vendor/candle-core/Cargo.toml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
parts = re.split(r'(?m)^(?=\[)', text)
keep = [p for p in parts if not re.match(r'\[\[(example|test|bench)\]\]|\[dev-dependencies', p)]
open(sys.argv[2], 'w').write(''.join(keep))
PY
patch -d vendor/candle-core -p1 < vendor/candle-core-backprop.patch
echo "vendor/candle-core: candle-core $VERSION + vendor/candle-core-backprop.patch"
