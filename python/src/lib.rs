//! `emsim._emsim`: the Python bindings of the emsim library, a thin layer with numpy arrays in and
//! out. The Python package `emsim` (python/emsim/__init__.py) re-exports it with its docs.
//! Every call that works (generates, counts, matches, infers) releases the GIL.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use emsim::count::{CountConfig, Counter, Finder, HostAdu, Method};
use emsim::frames::{ElectronCount, FramesConfig, Truth};
use emsim::gpu::Device;
use emsim::io::library::EventLibrary;

/// emsim's errors as Python exceptions with the same one-line message: a bad value is a
/// ValueError, a file that cannot be read an OSError, anything else a RuntimeError.
fn py_err(e: emsim::Error) -> PyErr {
    match &e {
        emsim::Error::Invalid { .. } => PyValueError::new_err(e.to_string()),
        emsim::Error::File { .. } => PyOSError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn invalid(what: &str, message: impl Into<String>) -> PyErr {
    py_err(emsim::Error::invalid(what, message))
}

/// The device named by a `device=` argument, with the command's error when the name is unknown.
fn open_device(device: &str) -> emsim::Result<Device> {
    if !Device::NAMES.contains(&device) {
        return Err(emsim::Error::invalid(
            "device",
            format!("{device:?}: expected one of {}", Device::NAMES.join(", ")),
        ));
    }
    Device::open(device, "auto")
}

/// A library of single-electron events (`emsim events`, or the shipped default).
#[pyclass(module = "emsim", frozen)]
struct Library {
    inner: Arc<EventLibrary>,
    path: String,
}

#[pymethods]
impl Library {
    /// Loads an event library file; without a path, the shipped default (300 keV, 5 um pixels).
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn load(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let p = path.unwrap_or_else(emsim::default_library_path);
        let lib = py.detach(|| EventLibrary::read_h5(&p)).map_err(py_err)?;
        Ok(Self { inner: Arc::new(lib), path: p.display().to_string() })
    }

    /// Writes the library to an HDF5 file (the layout `emsim events` writes).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| -> emsim::Result<()> {
            let out = emsim::io::atomic::Output::new(&path, true, "path")?;
            self.inner.write_h5(out.tmp())?;
            out.commit()?;
            Ok(())
        })
        .map_err(py_err)
    }

    /// Events in the library.
    #[getter]
    fn n_events(&self) -> usize {
        self.inner.deposit_kev.len()
    }

    /// Pixel pitch of the library's sensor, micrometres.
    #[getter]
    fn pitch_um(&self) -> f64 {
        self.inner.meta.pitch_um
    }

    /// The file the library was loaded from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    fn __repr__(&self) -> String {
        format!("emsim.Library({:?}: {} events, {} um pixels)", self.path, self.n_events(), self.pitch_um())
    }
}

/// Simulates a library of single electrons (the Monte Carlo of `emsim events`): `preset` names
/// the sensor and beam (`seed`, `4dcamera`, ...); the other arguments replace its values. The same
/// seed gives the same events as the command.
#[pyfunction]
#[pyo3(signature = (*, preset="seed", count=10000, seed=0, energy_kev=None, tilt_deg=None, pitch_um=None,
    stack=None, depletion_um=None, device="cpu"))]
#[allow(clippy::too_many_arguments)]
fn events(
    py: Python<'_>,
    preset: &str,
    count: i64,
    seed: u64,
    energy_kev: Option<f64>,
    tilt_deg: Option<f64>,
    pitch_um: Option<f64>,
    stack: Option<String>,
    depletion_um: Option<f64>,
    device: &str,
) -> PyResult<Library> {
    if count < 1 {
        return Err(invalid("count", format!("{count}: expected at least 1 event")));
    }
    let req = emsim::events::build::SimulateRequest {
        preset: preset.to_string(),
        stack,
        energy_kev,
        tilt_deg,
        pitch_um,
        depletion_um,
        count: count as usize,
        seed,
        tracks: false,
    };
    let lib = py
        .detach(|| -> emsim::Result<_> {
            let device = open_device(device)?;
            emsim::events::build::simulate_library_on(&req, &device, false)
        })
        .map_err(py_err)?;
    Ok(Library { inner: Arc::new(lib), path: String::new() })
}

/// A trained network (`emsim train`; the shipped models are in assets/models/).
#[pyclass(module = "emsim", frozen)]
struct Model {
    inner: Arc<emsim::net::model::Model>,
    path: String,
}

#[pymethods]
impl Model {
    /// Loads a model file (safetensors from `emsim train`); without a path, the default network
    /// of counting (`tiny`).
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn load(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let p = path.unwrap_or_else(emsim::default_model_path);
        let m = py.detach(|| emsim::io::model_file::load(&p, None)).map_err(py_err)?.model;
        Ok(Self { inner: Arc::new(m), path: p.display().to_string() })
    }

    /// The model's preset name.
    #[getter]
    fn name(&self) -> String {
        self.inner.cfg.name.clone()
    }

    /// The side of the square crops it takes, pixels.
    #[getter]
    fn input_px(&self) -> usize {
        self.inner.cfg.input_px
    }

    /// Runs the network on crops (an (N, S, S) float32 array of electrons, S = input_px) as
    /// `emsim infer` does: an (N, 4) array (x_px, y_px, sigma_px, p_max) in crop pixels for a
    /// localizer, (N, classes) probabilities for a classifier, (N, 4) (x1, y1, x2, y2) for a pair
    /// localizer.
    fn infer<'py>(&self, py: Python<'py>, crops: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.cfg.input_px;
        let a = crops
            .extract::<PyReadonlyArray3<'py, f32>>()
            .map_err(|_| invalid("crops", format!("expected a 3-D float32 array (N, {s}, {s}) of electrons")))?;
        let shape = a.shape().to_vec();
        if shape[1] != s || shape[2] != s {
            return Err(invalid(
                "crops",
                format!("crops are {}x{}, the model '{}' takes {s}x{s}", shape[1], shape[2], self.inner.cfg.name),
            ));
        }
        let x = a.as_slice().map_err(|_| invalid("crops", "not C-contiguous (use np.ascontiguousarray)"))?;
        let n = shape[0];
        let (values, k, _) = py.detach(|| emsim::net::infer::crop_estimates(&self.inner, x, n)).map_err(py_err)?;
        Ok(PyArray1::from_vec(py, values).reshape([n, k])?.into_any())
    }

    fn __repr__(&self) -> String {
        format!("emsim.Model({:?}: {}, {}x{} crops)", self.path, self.inner.cfg.name, self.input_px(), self.input_px())
    }
}

/// Makes detector frames with their ground truth, as `emsim frames` does: the same seed gives the
/// same frames and truth, whatever the device or batch.
#[pyclass(module = "emsim", frozen)]
struct Generator {
    /// Borrows `lib` and `device`, which this struct owns (declared first, so dropped first):
    /// kept between calls so that the packed library and the per-thread buffers are made once.
    inner: emsim::frames::Generator<'static>,
    lib: Arc<EventLibrary>,
    cfg: FramesConfig,
    device: Arc<Device>,
}

/// `value` with the lifetime of the struct that holds its `Arc` (see [`Generator::inner`]).
///
/// # Safety
/// The reference must not outlive `arc`'s last clone held by the same struct, which drops the
/// borrower first.
unsafe fn extend<T>(arc: &Arc<T>) -> &'static T {
    // SAFETY: an Arc's value never moves while a clone lives; the caller keeps one alive longer.
    unsafe { &*Arc::as_ptr(arc) }
}

#[pymethods]
impl Generator {
    #[new]
    #[pyo3(signature = (library=None, *, size=(576, 576), electrons=emsim::frames::SEED_MEAN_ELECTRONS,
        electrons_sd=emsim::frames::SEED_SD_ELECTRONS, dose=None, noise_sigma_e=20.0, gain_adu_per_e=1.0,
        offset_adu=None, dtype="u16", seed=0, device="cpu"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        library: Option<&Library>,
        size: (i64, i64),
        electrons: f64,
        electrons_sd: f64,
        dose: Option<f64>,
        noise_sigma_e: f32,
        gain_adu_per_e: f32,
        offset_adu: Option<f32>,
        dtype: &str,
        seed: u64,
        device: &str,
    ) -> PyResult<Self> {
        let (h, w) = size;
        if h <= 0 || w <= 0 || h > u32::MAX as i64 || w > u32::MAX as i64 {
            return Err(invalid("size", format!("({h}, {w}): expected two positive integers (height, width)")));
        }
        let quantize_u16 = match dtype {
            "u16" | "uint16" => true,
            "f32" | "float32" => false,
            other => return Err(invalid("dtype", format!("{other:?}: expected \"u16\" or \"f32\""))),
        };
        let d = FramesConfig::default();
        let electrons = match dose {
            Some(d) => ElectronCount::Dose { electrons_per_pixel: d },
            None => ElectronCount::Normal { mean: electrons, sd: electrons_sd },
        };
        let offset_adu = offset_adu.unwrap_or(if quantize_u16 {
            emsim::frames::auto_offset_adu(noise_sigma_e, gain_adu_per_e)
        } else {
            0.0
        });
        let cfg = FramesConfig {
            frames: u32::MAX as u64,
            height: h as u32,
            width: w as u32,
            electrons,
            noise_sigma_e,
            gain_adu_per_e,
            offset_adu,
            quantize_u16,
            seed,
            ..d
        };
        cfg.validate().map_err(py_err)?;
        cfg.check_offset_keeps_noise().map_err(py_err)?;
        let lib = match library {
            Some(l) => l.inner.clone(),
            None => Library::load(py, None)?.inner,
        };
        let device = Arc::new(py.detach(|| open_device(device)).map_err(py_err)?);
        // SAFETY: `lib` and `device` are stored in the same struct as `inner`, which drops first.
        let inner = emsim::frames::Generator::new(cfg.clone(), unsafe { extend(&lib) }, unsafe { extend(&device) })
            .map_err(py_err)?;
        Ok(Self { inner, lib, cfg, device })
    }

    /// Frames `start .. start + n` of the dataset: `(frames, truth)`, frames an (n, H, W) array
    /// (uint16 ADU by default, float32 with `dtype="f32"`), truth a dict of 1-D arrays `frame`
    /// (counted from `start`), `x_px`, `y_px` (incidence point: x = column, pixel (r, c) spans
    /// [c, c+1) x [r, r+1)), `event` and `deposit_kev`, and `offsets` (electrons of frame k are
    /// rows offsets[k]:offsets[k+1]). With `out` (a C-contiguous (n, H, W) array of the frames'
    /// dtype), the frames are written there and `out` is returned: reusing one array saves
    /// allocating and faulting in a fresh one on every call. With `truth=False` the truth is not
    /// made and `None` comes back in its place.
    #[pyo3(signature = (n, start=0, out=None, truth=true))]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        n: i64,
        start: i64,
        out: Option<Bound<'py, PyAny>>,
        truth: bool,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyDict>>)> {
        if n <= 0 || start < 0 {
            return Err(invalid("n", format!("n = {n}, start = {start}: expected n >= 1 and start >= 0")));
        }
        let (n, start) = (n as u64, start as u64);
        let (h, w) = (self.cfg.height as usize, self.cfg.width as usize);
        let shape = [n as usize, h, w];
        let u16 = self.cfg.quantize_u16;
        let frames: Bound<'py, PyAny> = match out {
            Some(o) => o,
            None if u16 => numpy::PyArray3::<u16>::zeros(py, shape, false).into_any(),
            None => numpy::PyArray3::<f32>::zeros(py, shape, false).into_any(),
        };
        let bad = || {
            invalid(
                "out",
                format!(
                    "expected a writeable C-contiguous {} array of shape {shape:?}",
                    if u16 { "uint16" } else { "float32" }
                ),
            )
        };
        let (mut a16, mut a32);
        let slice = if u16 {
            a16 = frames.extract::<numpy::PyReadwriteArray3<'py, u16>>().map_err(|_| bad())?;
            if a16.shape() != shape {
                return Err(bad());
            }
            Slice::U16(a16.as_slice_mut().map_err(|_| bad())?)
        } else {
            a32 = frames.extract::<numpy::PyReadwriteArray3<'py, f32>>().map_err(|_| bad())?;
            if a32.shape() != shape {
                return Err(bad());
            }
            Slice::F32(a32.as_slice_mut().map_err(|_| bad())?)
        };
        let want_truth = truth;
        let (truth, offsets) = py.detach(|| self.fill(start, n, slice, want_truth)).map_err(py_err)?;
        if !want_truth {
            return Ok((frames, None));
        }
        let t = PyDict::new(py);
        t.set_item("frame", PyArray1::from_vec(py, truth.frame))?;
        t.set_item("x_px", PyArray1::from_vec(py, truth.x_px))?;
        t.set_item("y_px", PyArray1::from_vec(py, truth.y_px))?;
        t.set_item("event", PyArray1::from_vec(py, truth.event))?;
        t.set_item("deposit_kev", PyArray1::from_vec(py, truth.deposit_kev))?;
        t.set_item("offsets", PyArray1::from_vec(py, offsets))?;
        Ok((frames, Some(t)))
    }

    /// Electrons frame `k` gets (the dataset's draw for that frame).
    fn electron_count(&self, k: u64) -> u32 {
        self.cfg.electron_count(k)
    }

    /// `(height, width)` of the frames.
    #[getter]
    fn size(&self) -> (u32, u32) {
        (self.cfg.height, self.cfg.width)
    }

    /// The dark offset of the frames, ADU.
    #[getter]
    fn offset_adu(&self) -> f32 {
        self.cfg.offset_adu
    }

    /// The path the generator runs on: "gpu" or "cpu".
    #[getter]
    fn device(&self) -> &'static str {
        self.device.path_name()
    }
}

/// Frames as the file stores them, to be written.
enum Slice<'a> {
    U16(&'a mut [u16]),
    F32(&'a mut [f32]),
}

impl Generator {
    /// Writes frames `start .. start + n` into `frames` (n whole frames); returns their truth
    /// (empty unless `with_truth`) and offsets.
    fn fill(&self, start: u64, n: u64, mut frames: Slice<'_>, with_truth: bool) -> emsim::Result<(Truth, Vec<u64>)> {
        let g = &self.inner;
        let px = (self.cfg.height * self.cfg.width) as usize;
        let counts: Vec<u32> = (start..start + n).map(|k| self.cfg.electron_count(k)).collect();
        let mut truth = Truth::default();
        for r in g.plan(&counts) {
            let first = start + r.start as u64;
            let at = r.start * px;
            let mut b = match (&mut frames, self.device.as_ref()) {
                // the CPU path hands each frame over as it is made, in the stored type
                (Slice::U16(v), Device::Cpu) => place_each::<u16>(g, first, &counts[r], &mut v[at..]),
                (Slice::F32(v), Device::Cpu) => place_each::<f32>(g, first, &counts[r], &mut v[at..]),
                (v, _) => {
                    let b = g.generate(first, &counts[r])?;
                    match v {
                        Slice::U16(v) => {
                            v[at..at + b.frames.len()].iter_mut().zip(&b.frames).for_each(|(o, &x)| *o = x as u16)
                        }
                        Slice::F32(v) => v[at..at + b.frames.len()].copy_from_slice(&b.frames),
                    }
                    b
                }
            };
            g.recycle(std::mem::take(&mut b.frames));
            if !with_truth {
                continue;
            }
            let t = Truth::of(&b, &self.lib, start);
            truth.frame.extend(t.frame);
            truth.x_px.extend(t.x_px);
            truth.y_px.extend(t.y_px);
            truth.event.extend(t.event);
            truth.deposit_kev.extend(t.deposit_kev);
        }
        let mut offsets = vec![0u64];
        for c in &counts {
            offsets.push(offsets.last().unwrap() + *c as u64);
        }
        Ok((truth, offsets))
    }
}

/// A pointer the frame callbacks of one batch write through, each to its own frame.
struct FramesOut<V>(*mut V);
// SAFETY: every callback writes a distinct frame of the buffer, which outlives the batch.
unsafe impl<V> Sync for FramesOut<V> {}
unsafe impl<V> Send for FramesOut<V> {}

/// The CPU path's batch `counts` from frame `first`, each frame copied into `out` (frame f at
/// `f * H * W`) on the thread that made it, while it is in cache.
fn place_each<V: emsim::frames::FrameValue + Copy>(
    g: &emsim::frames::Generator<'_>,
    first: u64,
    counts: &[u32],
    out: &mut [V],
) -> emsim::frames::Batch {
    let px = (g.cfg.height * g.cfg.width) as usize;
    assert!(out.len() >= counts.len() * px);
    let dst = FramesOut(out.as_mut_ptr());
    let (batch, _) = g.generate_cpu_each::<V, ()>(first, counts, |f, frame| {
        let dst = &dst;
        // SAFETY: frame f of `out` (checked above), written by this callback only.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), dst.0.add(f * px), px) }
    });
    batch
}

/// The frames as emsim counts them: f32 or u16, C-contiguous, 3-D.
enum Frames<'py> {
    F32(PyReadonlyArray3<'py, f32>),
    U16(PyReadonlyArray3<'py, u16>),
}

impl<'py> Frames<'py> {
    fn extract(frames: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = frames.extract::<PyReadonlyArray3<'py, f32>>() {
            return Ok(Frames::F32(a));
        }
        if let Ok(a) = frames.extract::<PyReadonlyArray3<'py, u16>>() {
            return Ok(Frames::U16(a));
        }
        let what = match frames.getattr("shape").and_then(|s| s.extract::<Vec<usize>>()) {
            Ok(s) if s.len() != 3 => format!("an array of shape {s:?}; expected 3-D (frames, height, width)"),
            Ok(_) => format!(
                "an array of dtype {}; expected float32 or uint16",
                frames.getattr("dtype").map(|d| d.to_string()).unwrap_or_default()
            ),
            Err(_) => "not a numpy array; expected a 3-D float32 or uint16 array (frames, height, width)".into(),
        };
        Err(invalid("frames", what))
    }

    fn shape(&self) -> [usize; 3] {
        let s = match self {
            Frames::F32(a) => a.shape(),
            Frames::U16(a) => a.shape(),
        };
        [s[0], s[1], s[2]]
    }
}

/// Finds and localizes the electrons in `frames` (as `emsim count`; docs/counting.md).
#[pyfunction]
#[pyo3(signature = (frames, *, method="c3x3t", finder="pixel", sigma_e=None, gain_adu_per_e=1.0, offset_adu=0.0,
    background_threshold_n_sigma=4.0, centroid_threshold_e=40.0, model=None, device="cpu"))]
#[allow(clippy::too_many_arguments)]
fn count<'py>(
    py: Python<'py>,
    frames: &Bound<'py, PyAny>,
    method: &str,
    finder: &str,
    sigma_e: Option<f32>,
    gain_adu_per_e: f32,
    offset_adu: f32,
    background_threshold_n_sigma: f32,
    centroid_threshold_e: f32,
    model: Option<&Model>,
    device: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let m = Method::parse(method).map_err(py_err)?;
    let net = match (m, model) {
        (Method::Net, Some(model)) => Some((*model.inner).clone()),
        (Method::Net, None) => Some(Model::load(py, None)?.inner.as_ref().clone()),
        (_, Some(_)) => return Err(invalid("model", "only used with method=\"net\"")),
        _ => None,
    };
    if let Some(n) = &net {
        n.cfg.expect_role(std::path::Path::new("model"), "model", &emsim::net::model::Head::Xy).map_err(py_err)?;
    }
    let frames = Frames::extract(frames)?;
    let [n, h, w] = frames.shape();
    if n == 0 || h == 0 || w == 0 {
        return Err(invalid("frames", format!("shape ({n}, {h}, {w}): expected at least one frame of at least 1x1")));
    }
    let cfg = CountConfig {
        noise_sigma_e: sigma_e,
        finder: Finder::parse(finder).map_err(py_err)?,
        background_threshold_n_sigma,
        centroid_threshold_e,
        gain_adu_per_e,
        offset_adu,
        net,
        ..Default::default()
    };
    cfg.validate(h as u32, w as u32).map_err(py_err)?;
    let (f32s, u16s);
    let host = match &frames {
        Frames::F32(a) => {
            f32s = a.as_slice().map_err(|_| invalid("frames", "not C-contiguous (use np.ascontiguousarray)"))?;
            HostAdu::F32(f32s)
        }
        Frames::U16(a) => {
            u16s = a.as_slice().map_err(|_| invalid("frames", "not C-contiguous (use np.ascontiguousarray)"))?;
            HostAdu::U16(u16s)
        }
    };
    let cols = py
        .detach(|| -> emsim::Result<_> {
            let sigma = match cfg.noise_sigma_e {
                Some(s) => s,
                // as emsim count does
                None => cfg.estimate_sigma_from_adu(host, h * w).ok_or_else(|| {
                    emsim::Error::invalid("sigma_e", "cannot estimate the read noise (no pixel below the dark level)")
                })?,
            };
            if m == Method::Stempy {
                let st = emsim::count::stempy::StempyCount::new(&cfg, sigma, h, w);
                return Ok(st.count_batch(host, 0).0);
            }
            let device = open_device(device)?;
            let counter = Counter::new(cfg.clone(), h as u32, w as u32, sigma, &device)?;
            let found = match host {
                HostAdu::F32(a) => counter.count(a)?,
                HostAdu::U16(a) => counter.count_u16(a)?,
            };
            Ok(emsim::count::run::columns(&found, m, 0, w as u32))
        })
        .map_err(py_err)?;
    let mut offsets = vec![0u64; n + 1];
    for &f in &cols.frame {
        offsets[f as usize + 1] += 1;
    }
    for k in 0..n {
        offsets[k + 1] += offsets[k];
    }
    let d = PyDict::new(py);
    d.set_item("frame", PyArray1::from_vec(py, cols.frame))?;
    d.set_item("x_px", PyArray1::from_vec(py, cols.x_px))?;
    d.set_item("y_px", PyArray1::from_vec(py, cols.y_px))?;
    d.set_item("row", PyArray1::from_vec(py, cols.row))?;
    d.set_item("col", PyArray1::from_vec(py, cols.col))?;
    d.set_item("charge_e", PyArray1::from_vec(py, cols.charge_e))?;
    if let Some(s) = cols.sigma_px {
        d.set_item("sigma_px", PyArray1::from_vec(py, s))?;
    }
    d.set_item("offsets", PyArray1::from_vec(py, offsets))?;
    Ok(d)
}

/// A 1-D column of a dict, as a Vec.
fn column<'py, T: numpy::Element + Copy>(d: &Bound<'py, PyDict>, name: &str, what: &str) -> PyResult<Vec<T>> {
    let v = d.get_item(name)?.ok_or_else(|| invalid(what, format!("no {name:?} array")))?;
    let a = v
        .extract::<numpy::PyReadonlyArray1<'py, T>>()
        .map_err(|_| invalid(what, format!("{name:?} must be a 1-D array of {}", std::any::type_name::<T>())))?;
    Ok(a.as_array().to_vec())
}

/// Scores found electrons against the truth, as `emsim eval` (optimal one-to-one matching within
/// `radius_px`, frame by frame): a dict of metrics (recall, precision, mean_error_px, ..., and
/// `crowding`: recall and mean error by the distance to the nearest other true electron).
#[pyfunction]
#[pyo3(signature = (found, truth, *, radius_px=1.5, pixel_size_um=5.0))]
fn evaluate<'py>(
    py: Python<'py>,
    found: &Bound<'py, PyDict>,
    truth: &Bound<'py, PyDict>,
    radius_px: f32,
    pixel_size_um: f64,
) -> PyResult<Bound<'py, PyAny>> {
    if !(radius_px > 0.0 && radius_px.is_finite()) {
        return Err(invalid("radius_px", format!("{radius_px}: must be > 0")));
    }
    let t_off = column::<u64>(truth, "offsets", "truth")?;
    let f_off = column::<u64>(found, "offsets", "found")?;
    if t_off.len() != f_off.len() || t_off.is_empty() {
        return Err(invalid(
            "found",
            format!("{} frames, but the truth has {}", f_off.len().saturating_sub(1), t_off.len().saturating_sub(1)),
        ));
    }
    let ts = emsim::eval::TruthSet {
        path: PathBuf::from("<truth>"),
        seed: 0,
        config_json: String::new(),
        first_frame: 0,
        pixel_size_um,
        frame: column::<u32>(truth, "frame", "truth")?,
        x_px: column::<f32>(truth, "x_px", "truth")?,
        y_px: column::<f32>(truth, "y_px", "truth")?,
        offsets: t_off,
    };
    let cs = emsim::eval::CountsSet {
        path: PathBuf::from("<found>"),
        method: "found".into(),
        frames_seed: 0,
        frames_config_json: String::new(),
        first_frame: 0,
        n_frames: (f_off.len() - 1) as u64,
        pixel_size_um,
        frame: column::<u32>(found, "frame", "found")?,
        x_px: column::<f32>(found, "x_px", "found")?,
        y_px: column::<f32>(found, "y_px", "found")?,
        offsets: f_off,
        sigma_px: None,
    };
    for (what, n, o) in [("truth", ts.x_px.len(), &ts.offsets), ("found", cs.x_px.len(), &cs.offsets)] {
        if *o.last().unwrap() as usize != n || o.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid(what, format!("offsets do not describe the {n} rows")));
        }
    }
    let metrics = py.detach(|| {
        let m = emsim::eval::metrics::match_sets(&ts, &cs, radius_px, emsim::eval::MAX_EXACT_COMPONENT);
        let mut metrics = emsim::eval::MethodMetrics::compute(
            "found",
            "",
            ts.x_px.len() as u64,
            cs.x_px.len() as u64,
            &m.pairs,
            pixel_size_um,
            radius_px as f64,
        );
        metrics.crowding = emsim::eval::crowding::crowding_of(&ts, &m.pairs);
        metrics
    });
    let json = serde_json::to_string(&metrics).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (json,))
}

/// The default event library file shipped with emsim.
#[pyfunction]
fn default_library_path() -> String {
    emsim::default_library_path().display().to_string()
}

/// The default network of counting (`tiny`) shipped with emsim.
#[pyfunction]
fn default_model_path() -> String {
    emsim::default_model_path().display().to_string()
}

#[pymodule]
fn _emsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Library>()?;
    m.add_class::<Generator>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(events, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(default_library_path, m)?)?;
    m.add_function(wrap_pyfunction!(default_model_path, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
