//! Ctrl-C (SIGINT) and SIGTERM during `meshsim run`. The signal only sets a flag; the
//! run's progress callback turns it into an error between two events, so the run
//! unwinds like any failed run: the streamed time series' temporary and the folders
//! the run created are removed, and nothing is written. A second signal, while the
//! first is being honoured, ends the process at once.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of an interrupted run (128 + SIGINT's number, as shells report it).
pub const EXIT_CODE: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process). If it cannot be installed, the signals
/// keep their default action, as before.
pub fn watch() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                std::process::exit(EXIT_CODE.into());
            }
        });
    });
}

/// The run is to stop: `Err` once a signal arrived.
pub fn check(p: crate::model::Progress) -> Result<(), crate::engine::RunError> {
    if REQUESTED.load(Ordering::SeqCst) {
        return Err(crate::engine::RunError::Interrupted {
            at: p.now,
            events: p.events,
        });
    }
    Ok(())
}
