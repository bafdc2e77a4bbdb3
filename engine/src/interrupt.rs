//! Ctrl-C (SIGINT) and SIGTERM: the first asks long work to stop at its next checkpoint — after
//! the chunk it is encoding or captioning is stored, or before the next run — so nothing
//! finished is lost and the same command resumes; a second one ends the process at once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::Error;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Exit status after an interruption: 128 + SIGINT, as shells report it.
pub const EXIT_STATUS: u8 = 130;

/// Installs the handlers (once per process; later calls do nothing): a thread that takes the
/// signals, says what will happen, and on the second one exits.
pub fn install() -> std::io::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    INSTALLED.get_or_init(|| ());
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                std::process::exit(EXIT_STATUS.into());
            }
            eprintln!(
                "\nstopping at the next checkpoint (the chunk being computed is stored first); press Ctrl-C again to quit at once"
            );
        }
    });
    Ok(())
}

/// Whether an interruption was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` naming `at` when an interruption was asked for.
pub fn check(at: impl FnOnce() -> String) -> Result<(), Error> {
    match requested() {
        true => Err(Error::Interrupted { at: at() }),
        false => Ok(()),
    }
}
