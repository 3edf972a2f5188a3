//! Reports read `crate::metrics` (plus the run's identity) and render it: the
//! `report.json` contract, the terminal summary, the time-series CSV. Nothing here
//! looks at the engine or the model.

pub mod csv;
pub mod expect;
pub mod html;
pub mod json;
pub mod plots;
pub mod text;
pub mod views;

pub use json::{Report, SCHEMA};

use std::path::Path;

/// Who produced a report: what reproduces it.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub scenario: String,
    pub scenario_path: String,
    pub seed: u64,
    pub scenario_hash: u64,
    pub events: u64,
    pub requests_sent: u64,
    pub drained: bool,
    pub end_s: f64,
    pub warmup_s: f64,
}

impl RunInfo {
    /// For a report of an empty run: its shape, not its numbers.
    pub fn skeleton() -> RunInfo {
        RunInfo {
            scenario: String::new(),
            scenario_path: String::new(),
            seed: 0,
            scenario_hash: 0,
            events: 0,
            requests_sent: 0,
            drained: true,
            end_s: 0.0,
            warmup_s: 0.0,
        }
    }
}

/// Writes `files` (name, contents) into `dir` all or nothing: each goes to a hidden
/// temporary file first and is renamed into place once every one was written. A name
/// may have folders (`plots/timeseries.svg`): they are created.
pub fn write_all(dir: &Path, files: &[(&str, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut staged = Vec::new();
    for (name, bytes) in files {
        let dest = dir.join(name);
        let (parent, file) = match (dest.parent(), dest.file_name()) {
            (Some(p), Some(f)) => (p.to_path_buf(), f.to_string_lossy().into_owned()),
            _ => (dir.to_path_buf(), (*name).to_owned()),
        };
        std::fs::create_dir_all(&parent)?;
        let tmp = parent.join(format!(".{file}.tmp"));
        if let Err(e) = std::fs::write(&tmp, bytes) {
            for (t, _) in &staged {
                let _ = std::fs::remove_file(t);
            }
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        staged.push((tmp, dest));
    }
    for (tmp, dest) in staged {
        std::fs::rename(tmp, dest)?;
    }
    Ok(())
}
