// Energy deposited by electrons of kinetic energy E (MeV) crossing `depth` um of silicon at normal
// incidence, with Bichsel's collision cross sections: the DepositionBichsel module of
// simonspa/ionizer (a C++ translation, by D. Pitzl and S. Spannagel, of H. Bichsel, Rev. Mod. Phys.
// 60 (1988) 663, with M. Brigida, M.N. Mazziotta et al., NIM A 533 (2004) 322 for the transport).
// Our driver only: one line per event, the summed energy of the e-h clusters, keV.
// Built and run by scripts/reference/bichsel_straggling.sh.
// usage: bichsel_straggling E_MeV depth_um events seed out.txt
#include "DepositionBichsel.hpp"
#include <cstdio>
#include <cstdlib>
using namespace allpix;
int main(int argc, char** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s E_MeV depth_um events seed out.txt\n", argv[0]);
        return 2;
    }
    double ekin = atof(argv[1]), depth = atof(argv[2]);
    unsigned nev = atoi(argv[3]);
    std::ranlux24 rgen;
    rgen.seed(atoi(argv[4]));
    DepositionBichsel module;
    module.setRandomEngine(&rgen);
    module.init();
    FILE* out = fopen(argv[5], "w");
    for (unsigned iev = 0; iev < nev; ++iev) {
        ROOT::Math::XYZVector pos(0, 0, 0), dir(0, 0, 1);
        Particle initial(ekin, pos, dir, ParticleType::ELECTRON);
        unsigned ndelta = 0;
        auto clusters = module.stepping(initial, iev, depth, ndelta);
        double e = 0;
        for (auto& c : clusters) e += c.E;
        fprintf(out, "%.3f\n", e * 1e-3);
    }
    fclose(out);
    return 0;
}
