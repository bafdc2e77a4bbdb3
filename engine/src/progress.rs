//! What the user sees while work runs: progress bars and one-line messages on stderr.
//!
//! Bars draw only on a terminal; messages always print (above the bars when there are any), so a
//! log captured by CI reads the same as a terminal session without the bars.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Progress {
    multi: MultiProgress,
    verbosity: Verbosity,
}

impl Progress {
    pub fn new(verbosity: Verbosity) -> Progress {
        let target = if verbosity == Verbosity::Quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            verbosity,
        }
    }

    /// A bar of `len` steps; finish it with `finish_and_clear`.
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        self.multi.add(
            ProgressBar::new(len)
                .with_style(style)
                .with_message(message.to_string()),
        )
    }

    /// A bar of `len` bytes; finish it with `finish_and_clear`.
    pub fn bytes(&self, len: u64, message: &str) -> ProgressBar {
        self.styled(
            ProgressBar::new(len),
            "{msg:>12} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            message,
        )
    }

    /// A count without a known end (rows of a file read in batches); finish it with
    /// `finish_and_clear`.
    pub fn counter(&self, message: &str) -> ProgressBar {
        self.styled(
            ProgressBar::no_length(),
            "{msg:>12} {human_pos} {per_sec} {elapsed}",
            message,
        )
    }

    fn styled(&self, bar: ProgressBar, template: &str, message: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ");
        self.multi
            .add(bar.with_style(style).with_message(message.to_string()))
    }

    /// A normal message (hidden by `-q`).
    pub fn info(&self, message: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.print(message);
        }
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, message: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.print(message);
        }
    }

    /// A warning, shown even with `-q`.
    pub fn warn(&self, message: &str) {
        self.print(&format!("warning: {message}"));
    }

    fn print(&self, message: &str) {
        if self.multi.is_hidden() {
            eprintln!("{message}");
        } else {
            let _ = self.multi.println(message);
        }
    }
}
