#!/usr/bin/env python3
"""MPV and FWHM of a list of deposits (keV, one per line), as the test `thin_layer_straggling`
(src/events/physics/validation.rs::mpv_fwhm) measures them: 20 eV bins, each bin averaged with
the 8 on either side, the MPV from a parabola through the top three, the FWHM by linear
interpolation at half the peak. Usage: bichsel_straggling.py deposits.txt"""
import sys

def mpv_fwhm(hist, h, smooth):
    n = len(hist)
    s = []
    for i in range(n):
        lo, hi = max(0, i - smooth), min(n - 1, i + smooth)
        s.append(sum(hist[lo:hi + 1]) / (hi - lo + 1))
    ip = max(range(n), key=lambda i: s[i])
    a, b, c = s[ip - 1], s[ip], s[ip + 1]
    d = a - 2 * b + c
    mpv = (ip + 0.5 + (0.5 * (a - c) / d if d != 0 else 0.0)) * h
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
