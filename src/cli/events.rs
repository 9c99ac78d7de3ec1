//! `emsim events`: simulate, import or inspect single-electron event libraries.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use emsim::events::physics::KNOWN_PRESETS;
use emsim::gpu::{BackendChoice, Device};
use emsim::io::library::EventLibrary;
use emsim::{Error, Result};

use super::one_of;

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(subcommand)]
    sub: Option<EventsCmd>,
    #[command(flatten)]
    sim: SimulateArgs,
}

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// Sensor and beam preset (see docs/physics.md).
    #[arg(long, default_value = "seed", value_parser = one_of(KNOWN_PRESETS, &[]))]
    preset: String,
    /// Layers, beam side first, thickness in um, `*` = sensitive: e.g. "SiO2:1,Si:8*,Si:300".
    #[arg(long)]
    stack: Option<String>,
    #[arg(long)]
    energy_kev: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    tilt_deg: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pitch_um: Option<f64>,
    /// Depleted (drift) thickness at the collection plane, um; the rest of the sensitive layer is
    /// field free (docs/physics.md).
    #[arg(long, allow_negative_numbers = true)]
    depletion_um: Option<f64>,
    #[arg(long, default_value_t = 10000)]
    count: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Also store every transport step of the primary electron.
    #[arg(long)]
    tracks: bool,
    /// Where the charge collection runs: cpu (the default: libraries identical bit for bit
    /// whatever the machine), gpu (any wgpu adapter; the same charges within f32 rounding) or
    /// auto (a hardware GPU if there is one). The transport runs on the CPU.
    #[arg(long, default_value = "cpu", value_parser = one_of(&Device::NAMES, &[]))]
    device: String,
    /// wgpu backend (`gles` and `opengl` also name gl).
    #[arg(long, default_value = "auto", value_parser = one_of(&BackendChoice::NAMES, &["gles", "opengl"]))]
    backend: String,
    #[arg(long, short, required = true)]
    out: Option<PathBuf>,
    #[arg(long)]
    force: bool,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
pub(crate) enum EventsCmd {
    /// Summary of a library: charge, deposits, backscatter, cluster sizes, parameters.
    Info {
        library: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The mean single-electron response (pattern, Gaussian sigma, peak and width of the 3x3
    /// charge, analog DQE(0), Swank factor) beside the 4D Camera's measured figures.
    #[command(after_help = "Example: emsim events response lib.h5 --gain-adu-per-e 0.07 --plot resp")]
    Response {
        library: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also give the charges in ADU at this gain.
        #[arg(long)]
        gain_adu_per_e: Option<f64>,
        /// Write PREFIX-spectrum.png (3x3 charge) and PREFIX-profile.png (mean pattern).
        #[arg(long, value_name = "PREFIX")]
        plot: Option<PathBuf>,
    },
    /// Draw one event's pixels with its incidence point.
    Show {
        library: PathBuf,
        #[arg(long)]
        event: usize,
        #[arg(long)]
        out: PathBuf,
        /// Screen pixels per detector pixel.
        #[arg(long, default_value_t = 16)]
        scale: u32,
    },
    /// Import a library: the EMSim notes' Geant4 pixel tables (event,row,col,counts,xinc,yinc) or a CSV
    /// of hits (event,x_um,y_um,z_um,edep_kev) that go through emsim's charge collection.
    Import {
        #[arg(long, conflicts_with = "hits", required_unless_present = "hits")]
        pixel_table: Option<PathBuf>,
        #[arg(long)]
        hits: Option<PathBuf>,
        /// Pixel pitch of a pixel table.
        #[arg(long, default_value_t = 5.0)]
        pitch_um: f64,
        /// Sensor for --hits.
        #[arg(long, default_value = "seed", value_parser = one_of(KNOWN_PRESETS, &[]))]
        preset: String,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// A parametric library (charge cloud + short track): for tests, NOT physics.
    #[command(after_help = "Example: emsim events parametric --count 2000 --seed 7 --out lib.h5")]
    Parametric {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 5.0)]
        pitch_um: f64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

/// Runs `emsim events ...`.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub(crate) fn run_events(a: EventsArgs) -> Result<()> {
    match a {
        EventsArgs { sub: None, sim } => {
            let out = sim.out.expect("clap requires --out");
            let output = emsim::io::atomic::Output::new(&out, sim.force, "--out")?;
            let req = emsim::events::build::SimulateRequest {
                preset: sim.preset,
                stack: sim.stack,
                energy_kev: sim.energy_kev,
                tilt_deg: sim.tilt_deg,
                pitch_um: sim.pitch_um,
                depletion_um: sim.depletion_um,
                count: sim.count,
                seed: sim.seed,
                tracks: sim.tracks,
            };
            let t = std::time::Instant::now();
            let device = Device::open(&sim.device, &sim.backend)?;
            let lib = emsim::events::build::simulate_library_on(&req, &device, !sim.quiet)?;
            lib.write_h5(output.tmp())?;
            output.commit()?;
            if !sim.quiet {
                let dt = t.elapsed().as_secs_f64();
                eprintln!(
                    "wrote {} events to {} in {dt:.1} s ({:.0} events/s)",
                    lib.len(),
                    out.display(),
                    lib.len() as f64 / dt
                );
            }
            Ok(())
        }
        EventsArgs { sub: Some(EventsCmd::Info { library, json }), .. } => {
            let info = emsim::events::info::library_info(&EventLibrary::read_h5(&library)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&info).unwrap());
            } else {
                print!("{}", info.text());
            }
            Ok(())
        }
        EventsArgs { sub: Some(EventsCmd::Response { library, json, gain_adu_per_e, plot }), .. } => {
            if let Some(g) = gain_adu_per_e
                && !(g > 0.0 && g.is_finite())
            {
                return Err(Error::invalid("--gain-adu-per-e", format!("expected a finite gain > 0 ADU/e-, got {g}")));
            }
            let r = emsim::events::response::response(&EventLibrary::read_h5(&library)?, gain_adu_per_e)
                .map_err(|e| Error::file(&library, e))?;
            if let Some(prefix) = &plot {
                r.plot(prefix)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap());
            } else {
                print!("{}", r.text());
            }
            Ok(())
        }
        EventsArgs { sub: Some(EventsCmd::Show { library, event, out, scale }), .. } => {
            emsim::events::show::show_event(&EventLibrary::read_h5(&library)?, event, &out, scale)
        }
        EventsArgs {
            sub: Some(EventsCmd::Import { pixel_table, hits, pitch_um, preset, seed, out, force }), ..
        } => {
            let output = emsim::io::atomic::Output::new(&out, force, "--out")?;
            let lib = match (pixel_table, hits) {
                (Some(p), _) => emsim::events::import::import_pixel_table(&p, pitch_um)?,
                (None, Some(h)) => {
                    let (sensor, _) =
                        emsim::events::physics::preset(&preset).map_err(|m| Error::invalid("--preset", m))?;
                    emsim::events::import::import_hits(&h, &sensor, seed)?
                }
                (None, None) => return Err(Error::invalid("--pixel-table/--hits", "give one input file")),
            };
            lib.write_h5(output.tmp())?;
            output.commit()?;
            eprintln!("imported {} events into {}", lib.len(), out.display());
            Ok(())
        }
        EventsArgs { sub: Some(EventsCmd::Parametric { count, seed, pitch_um, out, force }), .. } => {
            if count == 0 {
                return Err(Error::invalid("--count", "must be at least 1"));
            }
            if !(pitch_um > 0.0) {
                return Err(Error::invalid("--pitch-um", format!("{pitch_um} must be > 0")));
            }
            let output = emsim::io::atomic::Output::new(&out, force, "--out")?;
            let model = emsim::events::parametric::ParametricModel { pitch_um, ..Default::default() };
            let lib = emsim::events::parametric::parametric_library(&model, count, seed);
            lib.write_h5(output.tmp())?;
            output.commit()?;
            eprintln!("wrote {count} parametric events to {}", out.display());
            Ok(())
        }
    }
}
