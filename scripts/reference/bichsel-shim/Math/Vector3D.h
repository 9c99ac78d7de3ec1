#pragma once
// Minimal stand-in for ROOT's Math/Vector3D.h, enough to build simonspa/ionizer's DepositionBichsel without ROOT
// (scripts/reference/bichsel_straggling.sh).
#include <cmath>
#include <array>
#include <iostream>
#include <vector>
#include <string>
#include <cstring>
namespace ROOT { namespace Math {
struct XYZVector {
    double x = 0, y = 0, z = 0;
    XYZVector() = default;
    XYZVector(double a, double b, double c) : x(a), y(b), z(c) {}
    double X() const { return x; }
    double Y() const { return y; }
    double Z() const { return z; }
    XYZVector operator+(const XYZVector& o) const { return {x + o.x, y + o.y, z + o.z}; }
    XYZVector operator-(const XYZVector& o) const { return {x - o.x, y - o.y, z - o.z}; }
    XYZVector operator*(double s) const { return {x * s, y * s, z * s}; }
};
inline XYZVector operator*(double s, const XYZVector& v) { return v * s; }
}}
