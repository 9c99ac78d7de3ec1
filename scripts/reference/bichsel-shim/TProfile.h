#pragma once
// Stand-ins for ROOT histograms: DepositionBichsel fills them for its own plots; we do not need them.
struct TProfile { TProfile(const char*, const char*, int, double, double) {} void Fill(double, double) {} };
