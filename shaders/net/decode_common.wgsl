// The grid decoding shared by net/decode_grid and net/mlp_count (twin: net::decode::GridDecoder):
// from the g*g logits that `logit(j)` gives (each including shader defines it, with `params` holding
// g, radius, origin and cell, and `out`), the arg-max cell's centre, the probability-weighted mean
// over the cells within `radius` cells of the peak, the spread sigma = sqrt(var_x + var_y) of the
// whole softmax distribution, and the arg-max cell's probability, into out[o .. o + 6].

fn centre(i: u32) -> f32 {
    return params.origin + (f32(i) + 0.5) * params.cell;
}

fn decode_logits(o: u32) {
    let g = params.g;
    let k = g * g;
    // the first maximum (the arg-max of the probabilities too: exp is monotonic)
    var m = logit(0u);
    var arg = 0u;
    for (var j = 1u; j < k; j++) {
        let v = logit(j);
        if (v > m) {
            m = v;
            arg = j;
        }
    }
    var s = 0.0;
    for (var j = 0u; j < k; j++) {
        s += exp(logit(j) - m);
    }
    let inv = 1.0 / s;
    // mean, then the variance about it (two passes: no cancellation in f32)
    var mx = 0.0;
    var my = 0.0;
    for (var j = 0u; j < k; j++) {
        let p = exp(logit(j) - m) * inv;
        mx += p * centre(j % g);
        my += p * centre(j / g);
    }
    var vx = 0.0;
    var vy = 0.0;
    for (var j = 0u; j < k; j++) {
        let p = exp(logit(j) - m) * inv;
        let dx = centre(j % g) - mx;
        let dy = centre(j / g) - my;
        vx += p * dx * dx;
        vy += p * dy * dy;
    }
    // the local mean around the peak
    let ax = i32(arg % g);
    let ay = i32(arg / g);
    let r = i32(params.radius);
    let last = i32(g) - 1;
    var w = 0.0;
    var wx = 0.0;
    var wy = 0.0;
    for (var cy = max(ay - r, 0); cy <= min(ay + r, last); cy++) {
        for (var cx = max(ax - r, 0); cx <= min(ax + r, last); cx++) {
            let p = exp(logit(u32(cy) * g + u32(cx)) - m) * inv;
            w += p;
            wx += p * centre(u32(cx));
            wy += p * centre(u32(cy));
        }
    }
    out[o] = centre(u32(ax));
    out[o + 1u] = centre(u32(ay));
    if (w > 0.0) {
        out[o + 2u] = wx / w;
        out[o + 3u] = wy / w;
    } else {
        out[o + 2u] = centre(u32(ax));
        out[o + 3u] = centre(u32(ay));
    }
    out[o + 4u] = sqrt(max(vx, 0.0) + max(vy, 0.0));
    out[o + 5u] = inv;   // exp(0) / s: the arg-max cell's probability
}
