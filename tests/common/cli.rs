//! Running the `emsim` binary from tests: its output, its one error line, what it left behind.

use std::path::Path;
use std::process::Command;

/// Runs `emsim ARGS` in `dir` to completion.
pub fn emsim(args: &[&str], dir: &Path) -> std::process::Output {
    output(Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).current_dir(dir))
}

/// Held while a test has an HDF5 file open for writing, and while a child process is spawned.
/// HDF5 opens files without close-on-exec and locks them with flock(), so a child spawned by
/// another test thread while a file is open inherits the descriptor and its lock, and an emsim
/// run on that file then fails with "unable to lock file, errno = 11" (seen on a 16-core GPU
/// machine).
pub static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Spawns `cmd` under [`SPAWN`], with stdout and stderr captured.
pub fn spawn(cmd: &mut Command) -> std::process::Child {
    let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("run emsim")
}

/// Runs `cmd` to completion, spawning it under [`SPAWN`].
pub fn output(cmd: &mut Command) -> std::process::Output {
    spawn(cmd).wait_with_output().expect("run emsim")
}

/// The `emsim: error` lines of a run's stderr.
pub fn stderr_line(out: &std::process::Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    s.lines().filter(|l| l.starts_with("emsim: error")).collect::<Vec<_>>().join("\n")
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Nothing but `keep` in `dir` (no output, no temporary left behind).
pub fn only(dir: &Path, keep: &[&str]) {
    let names = names(dir);
    for n in &names {
        assert!(keep.contains(&n.as_str()), "unexpected file left behind: {n} (all: {names:?})");
    }
}
