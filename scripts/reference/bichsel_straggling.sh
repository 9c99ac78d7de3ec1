#!/bin/bash
# Regenerates assets/reference/straggling_si_bichsel.csv: Bichsel's straggling of electrons in thin
# silicon, from simonspa/ionizer's DepositionBichsel (no ROOT needed: bichsel-shim/ stands in for
# the few ROOT types it uses). Needs git, g++, awk and python3; clones github.com/simonspa/ionizer
# (or IONIZER_REPO, a local copy).
# Usage: bash scripts/reference/bichsel_straggling.sh [events]   (default 100000; ~2 min per row)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-100000}
work=$(mktemp -d)
git clone -q "${IONIZER_REPO:-https://github.com/simonspa/ionizer}" "$work/ionizer"
cd "$work/ionizer" && git checkout -q ffabb1f
g++ -O2 -std=c++17 -I"$here/bichsel-shim" -I. -o bichsel "$here/bichsel_straggling.cpp" DepositionBichsel.cpp MazziottaIonizer.cpp
echo "energy_kev,thickness_um,events,mpv_kev,fwhm_kev,mean_kev"
for cfg in "300 5" "300 10" "300 20" "200 5" "100 5"; do
    set -- $cfg
    # (it reads HEPS.TAB, MACOM.TAB and EMERC.TAB from the current folder)
    ./bichsel "$(awk "BEGIN { print $1 / 1000 }")" "$2" "$n" 2026 dep.txt >/dev/null
    echo "$1,$2,$(python3 "$here/bichsel_straggling.py" dep.txt)"
done
