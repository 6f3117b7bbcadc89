//! Progress on stderr: a bar redrawn in place on a terminal, a line every 10 % (at
//! most every few seconds) otherwise, so logs of batch jobs stay short.
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A progress reporter over a known number of snapshot visits.
pub struct Progress {
    on: bool,
    tty: bool,
    total: usize,
    done: usize,
    start: Instant,
    last: Instant,
    last_decile: usize,
}

impl Progress {
    /// A reporter for `total` visits; silent when `on` is false.
    pub fn new(on: bool, total: usize) -> Self {
        let now = Instant::now();
        Progress { on: on && total > 0, tty: std::io::stderr().is_terminal(), total, done: 0, start: now, last: now, last_decile: 0 }
    }

    /// One snapshot of pass `pass` done.
    pub fn tick(&mut self, pass: usize, step: u64, time: f64) {
        self.done += 1;
        if !self.on {
            return;
        }
        let now = Instant::now();
        let el = now.duration_since(self.start).as_secs_f64();
        let frac = self.done as f64 / self.total as f64;
        let eta = if self.done > 0 { el / frac - el } else { 0.0 };
        let line = format!(
            "post: pass {} snapshot {}/{} (step {step}, t = {time:.6e})  {:.1} s elapsed, ETA {:.1} s",
            pass + 1,
            self.done,
            self.total,
            el,
            eta.max(0.0)
        );
        if self.tty {
            if now.duration_since(self.last).as_millis() >= 100 || self.done == self.total {
                let width = 24;
                let filled = (frac * width as f64).round() as usize;
                eprint!("\r[{}{}] {line}\x1b[K", "#".repeat(filled), " ".repeat(width - filled.min(width)));
                let _ = std::io::stderr().flush();
                self.last = now;
            }
        } else {
            let decile = (frac * 10.0).floor() as usize;
            if decile > self.last_decile || self.done == self.total {
                eprintln!("{line}");
                self.last_decile = decile;
            }
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.on && self.tty {
            eprintln!();
        }
    }
}
