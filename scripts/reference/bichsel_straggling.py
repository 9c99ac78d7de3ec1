#!/usr/bin/env python3
"""MPV and FWHM of a list of deposits (keV, one per line), as the test `thin_layer_straggling`
(src/events/physics/validation.rs::mpv_fwhm) measures them: 20 eV bins; each bin averaged with
the 8 on either side for the FWHM (linear interpolation at half the peak); the MPV is the vertex
of a least-squares parabola through the raw bins where the smoothed density is above 70 % of its
peak. Usage: bichsel_straggling.py deposits.txt"""
import sys

def parabola_vertex(y):
    m = len(y)
    mid = (m - 1) / 2
    if m < 3:
        return mid
    xs = [i - mid for i in range(m)]
    s2 = sum(x * x for x in xs)
    s4 = sum(x ** 4 for x in xs)
    sy = sum(y)
    sxy = sum(x * v for x, v in zip(xs, y))
    sx2y = sum(x * x * v for x, v in zip(xs, y))
    c1 = sxy / s2
    c2 = (m * sx2y - s2 * sy) / (m * s4 - s2 * s2)
    if c2 >= 0:
        return mid
    return min(max(mid - c1 / (2 * c2), 0), m - 1)

def mpv_fwhm(hist, h, smooth):
    n = len(hist)
    s = []
    for i in range(n):
        lo, hi = max(0, i - smooth), min(n - 1, i + smooth)
        s.append(sum(hist[lo:hi + 1]) / (hi - lo + 1))
    ip = max(range(n), key=lambda i: s[i])
    a = b = ip
    while a > 0 and s[a - 1] > 0.7 * s[ip]:
        a -= 1
    while b + 1 < n and s[b + 1] > 0.7 * s[ip]:
        b += 1
    mpv = (parabola_vertex(hist[a:b + 1]) + a + 0.5) * h
    half = 0.5 * s[ip]
    l = ip
    while l > 0 and s[l] > half:
        l -= 1
    xl = l + (half - s[l]) / (s[l + 1] - s[l])
    r = ip
    while r + 1 < n and s[r] > half:
        r += 1
    xr = (r - 1) + (s[r - 1] - half) / (s[r - 1] - s[r])
    return mpv, (xr - xl) * h

e = [float(x) for x in open(sys.argv[1]) if x.strip()]
h, nb = 0.02, 1000
hist = [0.0] * nb
for v in e:
    i = int(v / h)
    if i < nb:
        hist[i] += 1
mpv, fwhm = mpv_fwhm(hist, h, 8)
print(f"{len(e)},{mpv:.3f},{fwhm:.3f},{sum(e) / len(e):.3f}")
