#!/bin/bash
# Regenerates assets/reference/straggling_si_bichsel.csv: Bichsel's straggling of electrons in thin
# silicon, from simonspa/ionizer's DepositionBichsel (no ROOT needed: bichsel-shim/ stands in for
# the few ROOT types it uses). Needs git, g++, awk and python3; clones github.com/simonspa/ionizer
# (or IONIZER_REPO, a local copy).
# Each row twice: with DepositionBichsel's elastic scattering (elastic=1) and without it (elastic=0:
# straight tracks, a fixed path length, the case Bichsel's straggling functions describe); the
# switch is our one-line patch (ELASTIC_SCALE multiplies its elastic cross section).
# Usage: bash scripts/reference/bichsel_straggling.sh [events]   (default 200000; ~4 min per row)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-200000}
work=$(mktemp -d)
git clone -q "${IONIZER_REPO:-https://github.com/simonspa/ionizer}" "$work/ionizer"
cd "$work/ionizer" && git checkout -q ffabb1f
sed -i -e '1i #include <cstdlib>' \
    -e 's|xlel = atnu \* S0EL;|xlel = atnu * S0EL * (getenv("ELASTIC_SCALE") ? atof(getenv("ELASTIC_SCALE")) : 1.0);|' \
    DepositionBichsel.cpp
test "$(grep -c ELASTIC_SCALE DepositionBichsel.cpp)" = 2
g++ -O2 -std=c++17 -I"$here/bichsel-shim" -I. -o bichsel "$here/bichsel_straggling.cpp" DepositionBichsel.cpp MazziottaIonizer.cpp
echo "energy_kev,thickness_um,elastic,events,mpv_kev,fwhm_kev,mean_kev"
for elastic in 1 0; do
    for cfg in "300 5" "300 10" "300 20" "200 5" "100 5"; do
        set -- $cfg
        # (it reads HEPS.TAB, MACOM.TAB and EMERC.TAB from the current folder)
        ELASTIC_SCALE=$elastic ./bichsel "$(awk "BEGIN { print $1 / 1000 }")" "$2" "$n" 2027 dep.txt >/dev/null
        echo "$1,$2,$elastic,$(python3 "$here/bichsel_straggling.py" dep.txt)"
    done
done
