//! Per-phase performance log (the idea of PETSc's `-log_view`): wall time, calls,
//! messages, bytes and reductions of each named phase on this rank, reduced over
//! ranks for the end-of-run table and `summary.json`.
use decomp::{Comm, ReduceOp};
use serde::Serialize;
use std::time::Instant;

/// Totals of one phase.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct PhaseStat {
    /// Wall seconds (after [`PhaseLog::reduce`]: the maximum over ranks).
    pub seconds: f64,
    /// Times the phase ran.
    pub calls: u64,
    /// Point-to-point messages sent (after reduce: summed over ranks).
    pub messages: u64,
    /// Bytes sent point to point (after reduce: summed over ranks).
    pub bytes: u64,
    /// Collective reductions (after reduce: this rank's count, the same on every rank).
    pub reductions: u64,
}

/// A started measurement: the clock and the communication counters at the start.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    at: Instant,
    stats: decomp::comm::CommStats,
}

impl Mark {
    /// Starts measuring.
    #[inline]
    pub fn now(comm: &dyn Comm) -> Mark {
        Mark { at: Instant::now(), stats: comm.stats() }
    }
}

/// Named phases in first-use order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseLog {
    phases: Vec<(String, PhaseStat)>,
}

impl PhaseLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, name: &str) -> &mut PhaseStat {
        match self.phases.iter().position(|(n, _)| n == name) {
            Some(i) => &mut self.phases[i].1,
            None => {
                self.phases.push((name.to_string(), PhaseStat::default()));
                &mut self.phases.last_mut().expect("just pushed").1
            }
        }
    }

    /// Adds what happened since `mark` to phase `name`.
    #[inline]
    pub fn add(&mut self, name: &str, comm: &dyn Comm, mark: Mark) {
        let s = comm.stats();
        let dt = mark.at.elapsed().as_secs_f64();
        let p = self.slot(name);
        p.seconds += dt;
        p.calls += 1;
        p.messages += s.messages - mark.stats.messages;
        p.bytes += s.bytes - mark.stats.bytes;
        p.reductions += s.reductions - mark.stats.reductions;
    }

    /// Creates phase `name` (empty) so that it is listed in this position.
    pub fn declare(&mut self, name: &str) {
        self.slot(name);
    }

    /// Adds a measured duration with no communication.
    pub fn add_seconds(&mut self, name: &str, seconds: f64) {
        let p = self.slot(name);
        p.seconds += seconds;
        p.calls += 1;
    }

    /// Merges `other` with each phase name prefixed by `prefix`.
    pub fn merge_prefixed(&mut self, prefix: &str, other: &PhaseLog) {
        for (n, s) in &other.phases {
            let p = self.slot(&format!("{prefix}{n}"));
            p.seconds += s.seconds;
            p.calls += s.calls;
            p.messages += s.messages;
            p.bytes += s.bytes;
            p.reductions += s.reductions;
        }
    }

    /// The phases in first-use order.
    pub fn phases(&self) -> &[(String, PhaseStat)] {
        &self.phases
    }

    /// The log over all ranks: time is the maximum, messages and bytes the sum.
    /// Collective; every rank must hold the same phase names in the same order.
    pub fn reduce(&self, comm: &dyn Comm) -> PhaseLog {
        let mut secs: Vec<f64> = self.phases.iter().map(|(_, s)| s.seconds).collect();
        comm.allreduce_f64(&mut secs, ReduceOp::Max);
        let mut counts: Vec<u64> = self.phases.iter().flat_map(|(_, s)| [s.messages, s.bytes]).collect();
        comm.allreduce_u64(&mut counts, ReduceOp::Sum);
        let phases = self
            .phases
            .iter()
            .enumerate()
            .map(|(i, (n, s))| (n.clone(), PhaseStat { seconds: secs[i], messages: counts[2 * i], bytes: counts[2 * i + 1], ..*s }))
            .collect();
        PhaseLog { phases }
    }

    /// A `-log_view`-like table (after [`PhaseLog::reduce`]), `total` the run's wall time.
    pub fn table(&self, total: f64) -> String {
        let mut out = format!(
            "{:<38} {:>10} {:>6} {:>9} {:>11} {:>12} {:>10}\n",
            "phase (max over ranks)", "seconds", "%", "calls", "messages", "MiB sent", "reductions"
        );
        for (n, s) in &self.phases {
            out += &format!(
                "{:<38} {:>10.4} {:>6.1} {:>9} {:>11} {:>12.2} {:>10}\n",
                n,
                s.seconds,
                if total > 0.0 { 100.0 * s.seconds / total } else { 0.0 },
                s.calls,
                s.messages,
                s.bytes as f64 / 1048576.0,
                s.reductions
            );
        }
        out
    }

    /// As a JSON object keyed by phase name (insertion order kept by serde_json's map
    /// only with preserve_order; the list form keeps it regardless).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.phases
                .iter()
                .map(|(n, s)| {
                    serde_json::json!({ "phase": n, "seconds": s.seconds, "calls": s.calls, "messages": s.messages, "bytes": s.bytes, "reductions": s.reductions })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decomp::comm::ThreadComm;

    #[test]
    fn phases_count_calls_messages_and_reductions_and_reduce_over_ranks() {
        let logs = ThreadComm::run(3, |c| {
            let mut log = PhaseLog::new();
            for _ in 0..2 {
                let m = Mark::now(c);
                let _ = c.sum(1.0);
                log.add("reduce", c, m);
            }
            let m = Mark::now(c);
            log.add("idle", c, m);
            log.reduce(c)
        });
        for log in logs {
            let p = log.phases();
            assert_eq!(p.len(), 2);
            assert_eq!((p[0].0.as_str(), p[0].1.calls, p[0].1.reductions), ("reduce", 2, 2));
            assert_eq!((p[1].1.calls, p[1].1.reductions, p[1].1.messages), (1, 0, 0));
            assert!(log.table(1.0).contains("reduce"));
        }
    }
}
