//! Event-by-event electron transport: every elastic and inelastic collision is sampled
//! individually ("detailed" simulation) from the cross sections of [`super::material`](mod@super::material), with
//! Moller delta rays above the cut transported as new particles.
//!
//! Because the total cross section only changes at a collision (energy only changes there), the
//! free flights are exact exponentials; no step-size artefacts, no boundary-crossing algorithm.

use super::material::{ME_KEV, Material, kinematics};
use crate::rng::Stream;
use std::sync::{Arc, Mutex};

/// Tables are built once per (material, cut) and shared (building one takes about a millisecond).
static TABLE_CACHE: Mutex<Vec<(Material, u64, Arc<MaterialTable>)>> = Mutex::new(Vec::new());

/// The shared cross-section table of `material` with Moller cut `cut_kev`.
pub fn table_for(material: &Material, cut_kev: f64) -> Arc<MaterialTable> {
    let mut cache = TABLE_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, t)) = cache.iter().find(|(m, c, _)| m == material && *c == cut_kev.to_bits()) {
        return t.clone();
    }
    let t = Arc::new(MaterialTable::new(material, cut_kev));
    cache.push((material.clone(), cut_kev.to_bits(), t.clone()));
    t
}

/// Channels of one material's interaction table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Channel {
    Elastic(usize),
    Moller,
    Distant(usize),
    Close(usize),
}

/// Cross-section tables of one material on a log-energy grid.
#[derive(Clone, Debug)]
pub struct MaterialTable {
    pub material: Material,
    channels: Vec<Channel>,
    /// `rates[i * nch + c]`: macroscopic cross section of channel c at grid point i, 1/um.
    rates: Vec<f64>,
    /// `total[i]`: sum over channels, 1/um.
    total: Vec<f64>,
    /// Screening parameter per element at each grid point.
    screening: Vec<f64>,
    ln_e0: f64,
    inv_dln: f64,
    n: usize,
    pub cut_kev: f64,
}

const GRID_EMIN: f64 = 0.25;
const GRID_EMAX: f64 = 2000.0;
const GRID_N: usize = 700;

impl MaterialTable {
    pub fn new(material: &Material, cut_kev: f64) -> Self {
        let mut channels = Vec::new();
        for j in 0..material.elements.len() {
            channels.push(Channel::Elastic(j));
        }
        channels.push(Channel::Moller);
        for i in 0..material.oscillators.len() {
            channels.push(Channel::Distant(i));
            channels.push(Channel::Close(i));
        }
        let nch = channels.len();
        let ln_e0 = GRID_EMIN.ln();
        let dln = (GRID_EMAX.ln() - ln_e0) / (GRID_N - 1) as f64;
        let mut rates = vec![0.0; GRID_N * nch];
        let mut total = vec![0.0; GRID_N];
        let mut screening = vec![0.0; GRID_N * material.elements.len()];
        let nf = material.formula_density();
        for i in 0..GRID_N {
            let e = (ln_e0 + i as f64 * dln).exp();
            let tc = cut_kev.min(0.5 * e);
            let soft = material.soft_rates_cm(e, tc);
            for (c, ch) in channels.iter().enumerate() {
                let r_cm = match *ch {
                    Channel::Elastic(j) => {
                        let el = &material.elements[j];
                        screening[i * material.elements.len() + j] = Material::screening(el.z, e);
                        nf * el.count * Material::elastic_sampling_xs(el.z, e)
                    }
                    Channel::Moller => material.moller_macro_cm(e, cut_kev),
                    Channel::Distant(k) => soft[k].0,
                    Channel::Close(k) => soft[k].1,
                };
                let r = r_cm * 1e-4; // 1/cm -> 1/um
                rates[i * nch + c] = r;
                total[i] += r;
            }
        }
        Self {
            material: material.clone(),
            channels,
            rates,
            total,
            screening,
            ln_e0,
            inv_dln: 1.0 / dln,
            n: GRID_N,
            cut_kev,
        }
    }

    #[inline]
    fn locate(&self, e: f64) -> (usize, f64) {
        let x = ((e.ln() - self.ln_e0) * self.inv_dln).clamp(0.0, (self.n - 1) as f64 - 1e-9);
        let i = x as usize;
        (i, x - i as f64)
    }

    /// Total macroscopic cross section at `e`, 1/um.
    #[inline]
    pub fn total(&self, e: f64) -> f64 {
        let (i, f) = self.locate(e);
        self.total[i] * (1.0 - f) + self.total[i + 1] * f
    }

    #[inline]
    fn pick(&self, e: f64, u: f64) -> Channel {
        let (i, f) = self.locate(e);
        let nch = self.channels.len();
        let tot = self.total[i] * (1.0 - f) + self.total[i + 1] * f;
        let mut target = u * tot;
        for c in 0..nch {
            let r = self.rates[i * nch + c] * (1.0 - f) + self.rates[(i + 1) * nch + c] * f;
            if target < r {
                return self.channels[c];
            }
            target -= r;
        }
        self.channels[nch - 1]
    }

    #[inline]
    fn screening_at(&self, e: f64, j: usize) -> f64 {
        let (i, f) = self.locate(e);
        let ne = self.material.elements.len();
        self.screening[i * ne + j] * (1.0 - f) + self.screening[(i + 1) * ne + j] * f
    }
}

/// Transport geometry: slabs along z (beam side at z = 0, increasing downstream).
#[derive(Clone, Debug)]
pub struct Geometry {
    pub tables: Vec<Arc<MaterialTable>>,
    /// z of layer boundaries, um: layer i spans `[z[i], z[i+1]]`.
    pub z: Vec<f64>,
    /// Index of the sensitive layer (deposits are recorded only there), if any.
    pub sensitive: Option<usize>,
}

impl Geometry {
    pub fn new(layers: &[super::Layer], cut_kev: f64) -> Self {
        let mut z = vec![0.0];
        let mut tables = Vec::new();
        let mut sensitive = None;
        for (i, l) in layers.iter().enumerate() {
            z.push(z[i] + l.thickness_um);
            tables.push(table_for(&l.material, cut_kev));
            if l.sensitive {
                sensitive = Some(i);
            }
        }
        Self { tables, z, sensitive }
    }
}

/// Transport options.
#[derive(Clone, Copy, Debug)]
pub struct TransportParams {
    /// Particles below this kinetic energy deposit it locally, keV.
    pub energy_cutoff_kev: f64,
    /// Sub-deposit length: consecutive losses of a particle along this much path are merged, um.
    pub subdeposit_um: f64,
    /// Transport Moller delta rays (otherwise their energy is deposited at the collision point).
    pub track_secondaries: bool,
    /// Record the primary's track.
    pub keep_steps: bool,
    /// Elastic scattering (on in every simulation). Off, particles fly straight between their
    /// Moller collisions: the energy-loss straggling of a fixed path length, which is what
    /// Bichsel's straggling functions describe (validation test 4).
    pub elastic: bool,
}

/// One energy deposit (merged over at most `subdeposit_um` of path), in um and keV.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawDeposit {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub e: f64,
}

/// A point on the primary's track.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackPoint {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub energy_kev: f64,
    pub deposit_kev: f64,
}

/// Result of transporting one primary and its secondaries.
#[derive(Clone, Debug, Default)]
pub struct TransportResult {
    pub deposits: Vec<RawDeposit>,
    pub deposit_kev: f64,
    pub backscattered: bool,
    pub transmitted: bool,
    pub track_length_um: f64,
    /// Kinetic energy of the primary when it left the stack (0 if absorbed).
    pub exit_energy_kev: f64,
    /// Total energy carried out of the stack by all particles.
    pub escaped_kev: f64,
    pub steps: Vec<TrackPoint>,
}

#[derive(Clone, Copy, Debug)]
struct Particle {
    pos: [f64; 3],
    dir: [f64; 3],
    e: f64,
    layer: usize,
    primary: bool,
}

/// Rotate `dir` by polar angle (cos_t) and azimuth phi.
#[inline]
pub fn rotate(dir: [f64; 3], cos_t: f64, phi: f64) -> [f64; 3] {
    let sin_t = (1.0 - cos_t * cos_t).max(0.0).sqrt();
    let (sp, cp) = phi.sin_cos();
    let [u, v, w] = dir;
    let out = if w.abs() > 0.999_999_99 {
        let sgn = w.signum();
        [sin_t * cp, sin_t * sp, sgn * cos_t]
    } else {
        let s = (1.0 - w * w).sqrt();
        [
            u * cos_t + sin_t * (u * w * cp - v * sp) / s,
            v * cos_t + sin_t * (v * w * cp + u * sp) / s,
            w * cos_t - s * sin_t * cp,
        ]
    };
    let n = (out[0] * out[0] + out[1] * out[1] + out[2] * out[2]).sqrt();
    [out[0] / n, out[1] / n, out[2] / n]
}

/// Accumulates a particle's losses into sub-deposits of bounded path length.
struct Accum {
    e: f64,
    x: f64,
    y: f64,
    z: f64,
    path: f64,
}

impl Accum {
    fn new() -> Self {
        Self { e: 0.0, x: 0.0, y: 0.0, z: 0.0, path: 0.0 }
    }
    fn add(&mut self, p: [f64; 3], e: f64) {
        self.e += e;
        self.x += e * p[0];
        self.y += e * p[1];
        self.z += e * p[2];
    }
    fn flush(&mut self, out: &mut Vec<RawDeposit>) {
        if self.e > 0.0 {
            out.push(RawDeposit { x: self.x / self.e, y: self.y / self.e, z: self.z / self.e, e: self.e });
        }
        *self = Self::new();
    }
}

/// Transport one electron of kinetic energy `e0` entering the stack at (x0, y0, 0) with direction
/// `dir` (`dir[2] > 0`), and all its secondaries.
pub fn transport(
    geo: &Geometry,
    params: &TransportParams,
    e0: f64,
    x0: f64,
    y0: f64,
    dir: [f64; 3],
    rng: &mut Stream,
) -> TransportResult {
    let mut res = TransportResult::default();
    let mut stack = vec![Particle { pos: [x0, y0, 0.0], dir, e: e0, layer: 0, primary: true }];
    let nlayers = geo.tables.len();
    let ecut = params.energy_cutoff_kev;
    while let Some(mut p) = stack.pop() {
        let mut acc = Accum::new();
        let mut step_acc = 0.0f64; // primary: deposit since last track point (all layers)
        let mut step_path = 0.0f64;
        if p.primary && params.keep_steps {
            res.steps.push(TrackPoint { x: p.pos[0], y: p.pos[1], z: p.pos[2], energy_kev: p.e, deposit_kev: 0.0 });
        }
        'flight: loop {
            let sensitive = geo.sensitive == Some(p.layer);
            if p.e < ecut {
                // Deposit the rest locally.
                if sensitive {
                    acc.add(p.pos, p.e);
                    res.deposit_kev += p.e;
                }
                step_acc += p.e;
                p.e = 0.0;
                break 'flight;
            }
            let table = &geo.tables[p.layer];
            let sig = table.total(p.e);
            let s = rng.exponential() / sig;
            let w = p.dir[2];
            let db = if w > 0.0 {
                (geo.z[p.layer + 1] - p.pos[2]) / w
            } else if w < 0.0 {
                (geo.z[p.layer] - p.pos[2]) / w
            } else {
                f64::INFINITY
            };
            if s >= db {
                // Cross the boundary.
                for k in 0..3 {
                    p.pos[k] += db * p.dir[k];
                }
                if p.primary {
                    res.track_length_um += db;
                    step_path += db;
                }
                acc.path += db;
                if sensitive {
                    acc.flush(&mut res.deposits);
                }
                if w > 0.0 {
                    p.pos[2] = geo.z[p.layer + 1];
                    if p.layer + 1 == nlayers {
                        if p.primary {
                            res.transmitted = true;
                            res.exit_energy_kev = p.e;
                        }
                        res.escaped_kev += p.e;
                        break 'flight;
                    }
                    p.layer += 1;
                } else {
                    p.pos[2] = geo.z[p.layer];
                    if p.layer == 0 {
                        if p.primary {
                            res.backscattered = true;
                            res.exit_energy_kev = p.e;
                        }
                        res.escaped_kev += p.e;
                        break 'flight;
                    }
                    p.layer -= 1;
                }
                continue 'flight;
            }
            for k in 0..3 {
                p.pos[k] += s * p.dir[k];
            }
            if p.primary {
                res.track_length_um += s;
                step_path += s;
            }
            acc.path += s;
            // Collision.
            let mut loss = 0.0;
            match table.pick(p.e, rng.uniform()) {
                Channel::Elastic(_) if !params.elastic => {}
                Channel::Elastic(j) => {
                    let z = table.material.elements[j].z;
                    let a = table.screening_at(p.e, j);
                    let (_, _, beta2, _) = kinematics(p.e);
                    let rmax = Material::mott_max(z, p.e);
                    let u = rng.uniform();
                    let mu = a * u / (1.0 + a - u);
                    let mu_e = Material::electronic_mu_max(p.e, table.cut_kev);
                    let keep = Material::mott_ratio(z, beta2, mu) * Material::electronic_weight(z, mu, mu_e);
                    if rng.uniform() * rmax < keep {
                        let cos_t = 1.0 - 2.0 * mu;
                        let phi = std::f64::consts::TAU * rng.uniform();
                        p.dir = rotate(p.dir, cos_t, phi);
                    }
                }
                Channel::Distant(i) => {
                    let w = table.material.oscillators[i].1;
                    let tc = table.cut_kev.min(0.5 * p.e);
                    loss = Material::distant_loss(i, w, tc, rng.uniform()).min(p.e);
                }
                Channel::Close(i) => {
                    let w = table.material.oscillators[i].1;
                    let tc = table.cut_kev.min(0.5 * p.e);
                    if tc > w {
                        let u = rng.uniform();
                        loss = 1.0 / (1.0 / w - u * (1.0 / w - 1.0 / tc));
                    }
                }
                Channel::Moller => {
                    if p.e > 2.0 * table.cut_kev {
                        let eps = sample_moller(p.e, table.cut_kev, rng);
                        let t = p.e;
                        let phi = std::f64::consts::TAU * rng.uniform();
                        let m2 = 2.0 * ME_KEV;
                        let cos_p = (((t - eps) * (t + m2)) / (t * (t - eps + m2))).sqrt().min(1.0);
                        let cos_d = ((eps * (t + m2)) / (t * (eps + m2))).sqrt().min(1.0);
                        let ddir = rotate(p.dir, cos_d, phi + std::f64::consts::PI);
                        p.dir = rotate(p.dir, cos_p, phi);
                        p.e = t - eps;
                        if params.track_secondaries {
                            stack.push(Particle { pos: p.pos, dir: ddir, e: eps, layer: p.layer, primary: false });
                        } else {
                            loss = eps;
                            p.e += eps; // subtracted below
                        }
                    }
                }
            }
            if loss > 0.0 {
                let l = loss.min(p.e);
                p.e -= l;
                if sensitive {
                    acc.add(p.pos, l);
                    res.deposit_kev += l;
                }
                step_acc += l;
            }
            if sensitive && acc.path >= params.subdeposit_um {
                acc.flush(&mut res.deposits);
            } else if !sensitive {
                acc.path = 0.0;
            }
            if p.primary && params.keep_steps && step_path >= params.subdeposit_um {
                res.steps.push(TrackPoint {
                    x: p.pos[0],
                    y: p.pos[1],
                    z: p.pos[2],
                    energy_kev: p.e,
                    deposit_kev: step_acc,
                });
                step_acc = 0.0;
                step_path = 0.0;
            }
        }
        acc.flush(&mut res.deposits);
        if p.primary && params.keep_steps {
            res.steps.push(TrackPoint {
                x: p.pos[0],
                y: p.pos[1],
                z: p.pos[2],
                energy_kev: p.e,
                deposit_kev: step_acc,
            });
        }
    }
    res
}

/// Sample the delta-ray energy of a Moller collision (energy transfer in [cut, T/2]),
/// Geant4 `G4MollerBhabhaModel::SampleSecondaries` algorithm.
pub fn sample_moller(t: f64, cut: f64, rng: &mut Stream) -> f64 {
    let xmin = cut / t;
    let xmax = 0.5;
    let gam = t / ME_KEV + 1.0;
    let gamma2 = gam * gam;
    let gg = (2.0 * gam - 1.0) / gamma2;
    let y = 1.0 - xmax;
    let grej = 1.0 - gg * xmax + xmax * xmax * (1.0 - gg + (1.0 - gg * y) / (y * y));
    loop {
        let q = rng.uniform();
        let x = xmin * xmax / (xmin * (1.0 - q) + xmax * q);
        let y = 1.0 - x;
        let z = 1.0 - gg * x + x * x * (1.0 - gg + (1.0 - gg * y) / (y * y));
        if grej * rng.uniform() <= z {
            return x * t;
        }
    }
}
