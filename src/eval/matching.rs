//! One-to-one matching of found electrons to true ones within a radius, per frame.
//!
//! A pair (true t, found f) is a candidate when `|f - t| <= radius`. Among all one-to-one
//! matchings made of candidate pairs, we take one with the **most pairs**, and among those one
//! with the **least total distance**. Steps:
//! 1. candidate pairs from a grid hash (cells of side `radius`: a pair lies in neighbouring cells);
//! 2. connected components of the candidate graph (union-find): matchings of different components
//!    are independent, and real frames split into many tiny components;
//! 3. per component, the Hungarian algorithm (shortest augmenting paths with potentials, O(n^2 m))
//!    on the rectangular matrix `cost = d - M` for a candidate pair and `0` otherwise, with
//!    `M = radius * (min(n, m) + 2)`: any matching with one pair more costs less than any with one
//!    pair fewer (`k` pairs cost between `-kM` and `-kM + k radius`), so the count comes first and
//!    the distance second. Rows assigned to a zero (non-candidate) column are unmatched.
//!
//! Components with more than `max_exact` points (true + found; default [`MAX_EXACT_COMPONENT`])
//! are matched greedily by increasing distance instead (ties by true, then found index); the
//! result counts them, so a report can say how often the matching was not provably optimal.

/// Default match radius, pixels.
pub const DEFAULT_RADIUS_PX: f32 = 1.5;

/// Components with more points than this are matched greedily.
pub const MAX_EXACT_COMPONENT: usize = 400;

/// Points as two columns (x = column, y = row, pixels).
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
}

impl<'a> Points<'a> {
    pub fn new(x: &'a [f32], y: &'a [f32]) -> Self {
        assert_eq!(x.len(), y.len(), "x and y columns differ in length");
        Self { x, y }
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// A matched pair: indices into the true and found points given to [`match_points`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub truth: u32,
    pub found: u32,
    /// Distance, pixels (computed in f64 from the f32 coordinates).
    pub dist_px: f64,
}

/// The matching of one frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameMatch {
    /// Sorted by true index.
    pub pairs: Vec<Pair>,
    /// Components matched greedily because they were larger than the limit.
    pub greedy_components: u64,
    /// Points (true + found) in those components.
    pub greedy_points: u64,
}

impl FrameMatch {
    pub fn total_distance(&self) -> f64 {
        self.pairs.iter().map(|p| p.dist_px).sum()
    }
}

/// Distance between true point `t` and found point `f`, pixels.
pub fn distance(truth: Points, t: usize, found: Points, f: usize) -> f64 {
    let dx = found.x[f] as f64 - truth.x[t] as f64;
    let dy = found.y[f] as f64 - truth.y[t] as f64;
    (dx * dx + dy * dy).sqrt()
}

/// Optimal matching (most pairs, then least total distance) within `radius_px`; components
/// larger than [`MAX_EXACT_COMPONENT`] points are matched greedily.
pub fn match_points(truth: Points, found: Points, radius_px: f32) -> FrameMatch {
    match_points_with_limit(truth, found, radius_px, MAX_EXACT_COMPONENT)
}

/// [`match_points`] with the size above which components are matched greedily.
pub fn match_points_with_limit(truth: Points, found: Points, radius_px: f32, max_exact: usize) -> FrameMatch {
    let r = radius_px as f64;
    assert!(r > 0.0 && r.is_finite(), "match radius must be > 0");
    let (nt, nf) = (truth.len(), found.len());
    let mut out = FrameMatch::default();
    let edges = candidate_pairs(truth, found, r);
    if edges.is_empty() {
        return out;
    }

    // Components: nodes 0..nt are true points, nt..nt+nf found points.
    let mut uf = UnionFind::new(nt + nf);
    for e in &edges {
        uf.union(e.truth as usize, nt + e.found as usize);
    }
    let mut comp_of_root = vec![u32::MAX; nt + nf];
    let mut n_comp = 0usize;
    let mut comp_of_edge = Vec::with_capacity(edges.len());
    for e in &edges {
        let root = uf.find(e.truth as usize);
        if comp_of_root[root] == u32::MAX {
            comp_of_root[root] = n_comp as u32;
            n_comp += 1;
        }
        comp_of_edge.push(comp_of_root[root] as usize);
    }
    // Edges grouped by component (counting sort keeps each component's edges in input order).
    let mut start = vec![0usize; n_comp + 1];
    for &c in &comp_of_edge {
        start[c + 1] += 1;
    }
    for c in 0..n_comp {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut grouped = vec![edges[0]; edges.len()];
    for (e, &c) in edges.iter().zip(&comp_of_edge) {
        grouped[fill[c]] = *e;
        fill[c] += 1;
    }

    // Local indices of a component's points (each point belongs to one component only).
    let mut local_t = vec![u32::MAX; nt];
    let mut local_f = vec![u32::MAX; nf];
    let mut rows: Vec<u32> = Vec::new();
    let mut cols: Vec<u32> = Vec::new();
    for c in 0..n_comp {
        let comp = &grouped[start[c]..start[c + 1]];
        rows.clear();
        cols.clear();
        for e in comp {
            if local_t[e.truth as usize] == u32::MAX {
                local_t[e.truth as usize] = rows.len() as u32;
                rows.push(e.truth);
            }
            if local_f[e.found as usize] == u32::MAX {
                local_f[e.found as usize] = cols.len() as u32;
                cols.push(e.found);
            }
        }
        let size = rows.len() + cols.len();
        if size > max_exact {
            out.greedy_components += 1;
            out.greedy_points += size as u64;
            greedy(comp, &mut out.pairs);
        } else {
            exact(comp, &rows, &cols, &local_t, &local_f, r, &mut out.pairs);
        }
    }
    out.pairs.sort_by_key(|p| p.truth);
    out
}

/// All pairs within `r`, from a grid of cells of side `r` (sorted cell keys, binary search).
fn candidate_pairs(truth: Points, found: Points, r: f64) -> Vec<Pair> {
    let cell = |x: f32, y: f32| ((x as f64 / r).floor() as i64, (y as f64 / r).floor() as i64);
    let mut keyed: Vec<((i64, i64), u32)> =
        (0..truth.len()).map(|t| (cell(truth.x[t], truth.y[t]), t as u32)).collect();
    keyed.sort_unstable();
    let mut edges = Vec::new();
    for f in 0..found.len() {
        let (cx, cy) = cell(found.x[f], found.y[f]);
        for dx in -1..=1 {
            for dy in -1..=1 {
                let key = (cx + dx, cy + dy);
                let lo = keyed.partition_point(|(k, _)| *k < key);
                for &(k, t) in &keyed[lo..] {
                    if k != key {
                        break;
                    }
                    let d = distance(truth, t as usize, found, f);
                    if d <= r {
                        edges.push(Pair { truth: t, found: f as u32, dist_px: d });
                    }
                }
            }
        }
    }
    edges
}

/// Greedy matching by increasing distance (ties: true index, then found index).
fn greedy(comp: &[Pair], out: &mut Vec<Pair>) {
    let mut sorted = comp.to_vec();
    sorted.sort_by(|a, b| a.dist_px.total_cmp(&b.dist_px).then(a.truth.cmp(&b.truth)).then(a.found.cmp(&b.found)));
    let mut used_t = std::collections::HashSet::new();
    let mut used_f = std::collections::HashSet::new();
    for p in sorted {
        if !used_t.contains(&p.truth) && !used_f.contains(&p.found) {
            used_t.insert(p.truth);
            used_f.insert(p.found);
            out.push(p);
        }
    }
}

/// Exact matching of one component with the Hungarian algorithm.
fn exact(comp: &[Pair], rows: &[u32], cols: &[u32], local_t: &[u32], local_f: &[u32], r: f64, out: &mut Vec<Pair>) {
    // The smaller side indexes the rows of the assignment problem.
    let transpose = rows.len() > cols.len();
    let (n, m) = if transpose { (cols.len(), rows.len()) } else { (rows.len(), cols.len()) };
    let big = r * (n as f64 + 2.0);
    let mut cost = vec![0.0f64; n * m];
    for e in comp {
        let (i, j) = (local_t[e.truth as usize] as usize, local_f[e.found as usize] as usize);
        let (i, j) = if transpose { (j, i) } else { (i, j) };
        cost[i * m + j] = e.dist_px - big;
    }
    let assign = hungarian(&cost, n, m);
    for (i, &j) in assign.iter().enumerate() {
        if cost[i * m + j] < 0.0 {
            let (ti, fj) = if transpose { (j, i) } else { (i, j) };
            let (t, f) = (rows[ti], cols[fj]);
            out.push(Pair { truth: t, found: f, dist_px: cost[i * m + j] + big });
        }
    }
}

/// Minimum-cost assignment of every row of the `n x m` matrix `cost` (row-major, `n <= m`) to a
/// distinct column: returns the column of each row. Shortest augmenting paths with potentials
/// (Kuhn-Munkres in the Jonker-Volgenant form), O(n^2 m).
pub fn hungarian(cost: &[f64], n: usize, m: usize) -> Vec<usize> {
    assert!(n <= m, "hungarian: {n} rows > {m} columns");
    assert_eq!(cost.len(), n * m);
    // 1-based: column 0 and row 0 are the virtual start of each augmenting path.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut minv = vec![0.0f64; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0usize;
        minv.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of = vec![usize::MAX; n];
    for j in 1..=m {
        if row_of[j] != 0 {
            col_of[row_of[j] - 1] = j - 1;
        }
    }
    col_of
}

struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n as u32).collect() }
    }

    fn find(&mut self, mut a: usize) -> usize {
        while self.parent[a] as usize != a {
            let up = self.parent[self.parent[a] as usize];
            self.parent[a] = up;
            a = up as usize;
        }
        a
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_small_square() {
        // Optimal: row 0 -> col 1 (1), row 1 -> col 0 (2), row 2 -> col 2 (2): total 5.
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = hungarian(&cost, 3, 3);
        let total: f64 = a.iter().enumerate().map(|(i, &j)| cost[i * 3 + j]).sum();
        assert_eq!(total, 5.0);
        assert_eq!(a, vec![1, 0, 2]);
    }

    #[test]
    fn hungarian_rectangular() {
        // 2 rows, 3 columns: row 0 -> col 2 (1), row 1 -> col 0 (1).
        let cost = [5.0, 9.0, 1.0, 1.0, 2.0, 1.5];
        assert_eq!(hungarian(&cost, 2, 3), vec![2, 0]);
    }

    #[test]
    fn cardinality_beats_distance() {
        // t0 is 0.1 from f0 and 1.4 from f1; t1 is 1.4 from f0 only. The closest pair (t0, f0)
        // would leave t1 alone: the optimum is t0-f1, t1-f0 (two pairs, 2.8 px).
        let tx = [0.0f32, 0.0];
        let ty = [0.0f32, 1.5];
        let fx = [0.0f32, 1.4];
        let fy = [0.1f32, 0.0];
        let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), 1.45);
        assert_eq!(m.pairs.len(), 2, "{m:?}");
        assert_eq!((m.pairs[0].truth, m.pairs[0].found), (0, 1));
        assert_eq!((m.pairs[1].truth, m.pairs[1].found), (1, 0));
        // Greedy (limit 0) takes the closest pair first and finds only one.
        let g = match_points_with_limit(Points::new(&tx, &ty), Points::new(&fx, &fy), 1.45, 0);
        assert_eq!(g.pairs.len(), 1);
        assert_eq!((g.greedy_components, g.greedy_points), (1, 4));
    }

    #[test]
    fn radius_is_inclusive_and_far_points_stay_unmatched() {
        let tx = [10.0f32, 50.0];
        let ty = [10.0f32, 50.0];
        let fx = [11.5f32, 50.0];
        let fy = [10.0f32, 51.6];
        let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), 1.5);
        assert_eq!(m.pairs, vec![Pair { truth: 0, found: 0, dist_px: 1.5 }]);
        let empty: [f32; 0] = [];
        assert!(match_points(Points::new(&empty, &empty), Points::new(&fx, &fy), 1.5).pairs.is_empty());
        assert!(match_points(Points::new(&tx, &ty), Points::new(&empty, &empty), 1.5).pairs.is_empty());
    }

    #[test]
    fn negative_coordinates_use_the_grid_correctly() {
        // Cells of negative coordinates must floor, not truncate towards zero.
        let tx = [-0.2f32];
        let ty = [-0.2f32];
        let fx = [0.9f32];
        let fy = [0.1f32];
        let m = match_points(Points::new(&tx, &ty), Points::new(&fx, &fy), 1.2);
        assert_eq!(m.pairs.len(), 1);
    }
}
