//! What a stage costs in memory: the process's peak resident set, measured per stage.
//!
//! Linux keeps one high-water mark per process (`VmHWM`); writing `5` to `/proc/self/clear_refs`
//! resets it to the current resident set, so resetting before a stage and reading after it gives
//! that stage's peak. Elsewhere both calls do nothing and peaks read 0 ("not measured").

/// Starts a new peak-memory measurement.
pub fn reset_peak_rss() {
    // Failure (not Linux, an old kernel, a locked-down /proc) only leaves the previous mark in
    // place, so the peak read later is an over-estimate, never wrong by omission.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size in MiB since the last [`reset_peak_rss`] (or process start); 0 where
/// unavailable.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_forgets_an_earlier_peak() {
        if peak_rss_mb() == 0.0 {
            eprintln!("skipping: no /proc/self/status VmHWM on this system");
            return;
        }
        // Touch 256 MiB, free it, reset: the new peak is far below the old one.
        let big = vec![1u8; 256 << 20];
        let touched: u64 = big.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(touched > 0);
        let before = peak_rss_mb();
        drop(big);
        reset_peak_rss();
        let after = peak_rss_mb();
        assert!(
            before - after > 200.0,
            "peak {before} MiB, after reset {after} MiB"
        );
    }
}
