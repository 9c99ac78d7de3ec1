#pragma once
// Stand-ins for ROOT histograms: DepositionBichsel fills them for its own plots; we do not need them.
struct TH1I { TH1I(const char*, const char*, int, double, double) {} void Fill(double, double = 1) {} };
struct TH2I { TH2I(const char*, const char*, int, double, double, int, double, double) {} void Fill(double, double, double = 1) {} };
