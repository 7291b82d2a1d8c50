//! Progress and timings on stderr.
//!
//! A spinner naming the current phase is shown only when stderr is a terminal
//! and the `CI` environment variable is unset; CI logs and pipes stay quiet.
//! `--timings` prints how long each phase took, and how much of the policy
//! phase was spent inside Cedar's authorizer, and the peak resident
//! memory at the end of each phase (on Linux).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Phase reporting for one command run.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    timings: bool,
    started: Instant,
    phase: Option<(String, Instant)>,
    done: Vec<(String, Duration, Option<u64>)>,
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The process's peak resident set size so far, in bytes (Linux only: read
/// from `/proc/self/status`; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(String::new, |b| {
        format!("  peak RSS {:>6} MiB", b / (1024 * 1024))
    })
}

impl Progress {
    /// Starts reporting; `timings` asks for the per-phase table at the end.
    pub(crate) fn new(timings: bool) -> Self {
        let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(spinner_style());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            timings,
            started: Instant::now(),
            phase: None,
            done: Vec::new(),
        }
    }

    /// Ends the current phase (if any) and starts `name`.
    pub(crate) fn phase(&mut self, name: &str) {
        self.end_phase();
        if let Some(bar) = &self.bar {
            bar.set_style(spinner_style());
            bar.set_message(name.to_owned());
        }
        self.phase = Some((name.to_owned(), Instant::now()));
    }

    /// Like [`Progress::phase`], for a phase that counts its steps: returns
    /// the bar to advance (set its length first), or `None` when quiet.
    pub(crate) fn counted_phase(&mut self, name: &str) -> Option<ProgressBar> {
        self.phase(name);
        let bar = self.bar.as_ref()?;
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_position(0);
        bar.set_length(0);
        Some(bar.clone())
    }

    fn end_phase(&mut self) {
        if let Some((name, t)) = self.phase.take() {
            let peak = if self.timings { peak_rss() } else { None };
            self.done.push((name, t.elapsed(), peak));
        }
    }

    /// Clears the spinner and, with `--timings`, prints the phases.
    pub(crate) fn finish(mut self, cpu: Option<(Duration, Duration)>) {
        self.end_phase();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.timings {
            return;
        }
        let total = self.started.elapsed();
        let mut lines = vec!["timings (wall clock, this machine):".to_owned()];
        for (name, d, peak) in &self.done {
            lines.push(format!(
                "  {name:<40} {:>10.3} s{}",
                d.as_secs_f64(),
                mib(*peak)
            ));
        }
        if let Some((evaluating, cedar)) = cpu {
            for (label, d) in [
                ("  evaluating policies", evaluating),
                ("    of which inside Cedar's authorizer", cedar),
            ] {
                lines.push(format!(
                    "  {label:<40} {:>10.3} s (summed over threads)",
                    d.as_secs_f64()
                ));
            }
        }
        lines.push(format!("  {:<40} {:>10.3} s", "total", total.as_secs_f64()));
        super::note(&lines.join("\n"));
    }
}
