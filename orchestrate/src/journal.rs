//! The durable study journal: one SQLite file in the study directory (WAL mode). Every
//! state change of a run is committed before it is acted on, so `tessera study resume`
//! after a crash (even `kill -9`) knows exactly which runs finished, which were in
//! flight (and with which process or job), and which never started.
//!
//! How hard a commit is pushed to the disk depends on what it guards
//! ([`Journal::sync_to_disk`]). A committed WAL transaction survives the death of the
//! orchestrator's process at any instant whether or not it was fsynced: only power loss
//! or a kernel crash can take back the last commits. With the local executor the runs
//! die in that same power loss, so losing their last transitions loses nothing (they are
//! requeued on resume), and `synchronous = NORMAL` spares an fsync per transition (about
//! 4 ms here, three per run). Slurm jobs outlive the orchestrator's machine, so with the
//! slurm executor every commit is fsynced (`synchronous = FULL`): a job is never
//! submitted without a durable record of it.
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// A run's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for a slot.
    Queued,
    /// Launched (or about to be): `pid` says which process once started.
    Running,
    /// Completed; quantities recorded.
    Done,
    /// Failed for good (after its retries, or not retryable).
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "done" => State::Done,
            "failed" => State::Failed,
            _ => State::Queued,
        }
    }
}

/// One run as the journal knows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    /// Run number (0-based).
    pub id: i64,
    /// Parameter name and value (TOML text) pairs.
    pub params: Vec<(String, String)>,
    /// State.
    pub state: State,
    /// Attempts started.
    pub attempts: i64,
    /// Process id and its start time (jiffies since boot) while running.
    pub pid: Option<(i64, i64)>,
    /// Failure class of the last attempt, if it failed.
    pub class: Option<String>,
    /// What happened, in words.
    pub message: String,
    /// Quantities of interest of a completed run.
    pub quantities: BTreeMap<String, f64>,
    /// Wall seconds of the last attempt.
    pub seconds: f64,
    /// The Slurm job of a running attempt (slurm executor).
    pub job: Option<String>,
}

/// One entry of [`Journal::generator_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A batch of runs added together (their ids, in order).
    Added(Vec<i64>),
    /// A run completed.
    Done(i64),
    /// A run failed for good.
    Failed(i64),
}

/// The journal.
pub struct Journal {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> String {
    format!("study journal: {e}")
}

impl Journal {
    fn configure(conn: Connection) -> Result<Journal, String> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        Ok(Journal { conn })
    }

    /// Creates the journal of a new study with its runs, all queued, in one transaction.
    /// The file is built under a temporary name and renamed into place once complete,
    /// so a journal with its final name always holds the whole study.
    pub fn create(path: &Path, meta: &[(&str, String)], runs: &[Vec<(String, String)>]) -> Result<Journal, String> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut conn = Connection::open(&tmp).map_err(err)?;
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE runs (id INTEGER PRIMARY KEY, params TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                                pid INTEGER, pid_start INTEGER, class TEXT, message TEXT NOT NULL DEFAULT '', quantities TEXT NOT NULL DEFAULT '{}',
                                seconds REAL NOT NULL DEFAULT 0, batch INTEGER, job TEXT);
             CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER, at REAL NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL);",
        )
        .map_err(err)?;
        for (k, v) in meta {
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![k, v]).map_err(err)?;
        }
        for (i, p) in runs.iter().enumerate() {
            let js = serde_json::to_string(p).map_err(|e| e.to_string())?;
            tx.execute("INSERT INTO runs (id, params, state) VALUES (?1, ?2, 'queued')", params![i as i64, js]).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        conn.close().map_err(|(_, e)| err(e))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::open(path)
    }

    /// Opens an existing journal.
    pub fn open(path: &Path) -> Result<Journal, String> {
        if !path.exists() {
            return Err(format!("{}: no study journal here", path.display()));
        }
        Self::configure(Connection::open(path).map_err(err)?)
    }

    /// Chooses whether every commit is fsynced before it returns (`synchronous = FULL`,
    /// the default) or only written to the WAL, which survives the process being killed
    /// but not power loss (`NORMAL`). See the module documentation for when each is used.
    pub fn sync_to_disk(&self, every_commit: bool) -> Result<(), String> {
        self.conn.pragma_update(None, "synchronous", if every_commit { "FULL" } else { "NORMAL" }).map_err(err)
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional().ok().flatten()
    }

    /// Every run, by id.
    pub fn runs(&self) -> Result<Vec<RunRow>, String> {
        let mut st = self
            .conn
            .prepare("SELECT id, params, state, attempts, pid, pid_start, class, message, quantities, seconds, job FROM runs ORDER BY id")
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                let params: String = r.get(1)?;
                let state: String = r.get(2)?;
                let pid: Option<i64> = r.get(4)?;
                let start: Option<i64> = r.get(5)?;
                let q: String = r.get(8)?;
                Ok(RunRow {
                    id: r.get(0)?,
                    params: serde_json::from_str(&params).unwrap_or_default(),
                    state: State::parse(&state),
                    attempts: r.get(3)?,
                    pid: pid.zip(start),
                    class: r.get(6)?,
                    message: r.get(7)?,
                    quantities: serde_json::from_str::<BTreeMap<String, Json>>(&q)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.as_f64().unwrap_or(f64::NAN)))
                        .collect(),
                    seconds: r.get(9)?,
                    job: r.get(10)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn event(tx: &rusqlite::Transaction, run: i64, event: &str, detail: &str) -> Result<(), String> {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        tx.execute("INSERT INTO events (run, at, event, detail) VALUES (?1, ?2, ?3, ?4)", params![run, at, event, detail]).map_err(err)?;
        Ok(())
    }

    /// Records that attempt `attempts + 1` of each of these queued runs is about to
    /// start, in one transaction committed before anything is launched (a job array
    /// submits many runs at once). Returns each run's attempt number.
    pub fn launching(&mut self, ids: &[i64]) -> Result<Vec<i64>, String> {
        let tx = self.conn.transaction().map_err(err)?;
        let mut attempts = Vec::with_capacity(ids.len());
        for &id in ids {
            let n = tx
                .execute(
                    "UPDATE runs SET state = 'running', attempts = attempts + 1, pid = NULL, pid_start = NULL, job = NULL WHERE id = ?1 AND state = 'queued'",
                    params![id],
                )
                .map_err(err)?;
            if n != 1 {
                return Err(format!("study journal: run {id} is not queued"));
            }
            let a: i64 = tx.query_row("SELECT attempts FROM runs WHERE id = ?1", params![id], |r| r.get(0)).map_err(err)?;
            Self::event(&tx, id, "launching", &format!("attempt {a}"))?;
            attempts.push(a);
        }
        tx.commit().map_err(err)?;
        Ok(attempts)
    }

    /// Records the process of a running attempt.
    pub fn started(&mut self, id: i64, pid: i64, start: i64) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("UPDATE runs SET pid = ?2, pid_start = ?3 WHERE id = ?1 AND state = 'running'", params![id, pid, start]).map_err(err)?;
        Self::event(&tx, id, "started", &format!("pid {pid}"))?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Records the Slurm jobs of running attempts (slurm executor), as soon as sbatch
    /// has given their ids: `(run, job)` pairs, one transaction.
    pub fn submitted(&mut self, jobs: &[(i64, String)]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        for (id, job) in jobs {
            tx.execute("UPDATE runs SET job = ?2 WHERE id = ?1 AND state = 'running'", params![id, job]).map_err(err)?;
            Self::event(&tx, *id, "started", &format!("job {job}"))?;
        }
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Ends a running attempt: `Done` with quantities, `Failed`, or `Queued` for a
    /// retry. Only a running run can end, so no run finishes twice.
    pub fn finish(
        &mut self,
        id: i64,
        state: State,
        class: Option<&str>,
        message: &str,
        quantities: &BTreeMap<String, f64>,
        seconds: f64,
    ) -> Result<bool, String> {
        let tx = self.conn.transaction().map_err(err)?;
        let q = serde_json::to_string(
            &quantities
                .iter()
                .map(|(k, v)| (k.clone(), if v.is_finite() { Json::from(*v) } else { Json::Null }))
                .collect::<BTreeMap<_, _>>(),
        )
        .map_err(|e| e.to_string())?;
        let n = tx
            .execute(
                "UPDATE runs SET state = ?2, class = ?3, message = ?4, quantities = ?5, seconds = ?6, pid = NULL, pid_start = NULL, job = NULL WHERE id = ?1 AND state = 'running'",
                params![id, state.as_str(), class, message, q, seconds],
            )
            .map_err(err)?;
        if n == 1 {
            Self::event(&tx, id, state.as_str(), message)?;
        }
        tx.commit().map_err(err)?;
        Ok(n == 1)
    }

    /// Puts an interrupted attempt back in the queue (its process or job is gone, or
    /// never started) without counting it against the retries; `why` goes in the event.
    pub fn requeue_interrupted(&mut self, id: i64, why: &str) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("UPDATE runs SET state = 'queued', attempts = MAX(attempts - 1, 0), pid = NULL, pid_start = NULL, job = NULL WHERE id = ?1 AND state = 'running'", params![id])
            .map_err(err)?;
        Self::event(&tx, id, "requeued", why)?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Adds runs a study's generator chose, as one batch, queued: committed (runs and
    /// their `added` events) before any of them is launched. Returns their ids.
    pub fn add_runs(&mut self, runs: &[Vec<(String, String)>]) -> Result<Vec<i64>, String> {
        let tx = self.conn.transaction().map_err(err)?;
        let (next, batch): (i64, i64) = tx
            .query_row("SELECT COALESCE(MAX(id) + 1, 0), COALESCE(MAX(batch) + 1, 0) FROM runs", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        let mut ids = Vec::with_capacity(runs.len());
        for (k, p) in runs.iter().enumerate() {
            let id = next + k as i64;
            let js = serde_json::to_string(p).map_err(|e| e.to_string())?;
            tx.execute("INSERT INTO runs (id, params, state, batch) VALUES (?1, ?2, 'queued', ?3)", params![id, js, batch]).map_err(err)?;
            Self::event(&tx, id, "added", &format!("batch {batch}"))?;
            ids.push(id);
        }
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    /// What a study's generator was asked and told, in order: each batch of added runs,
    /// and each run's final result (done or failed; retries are not results).
    pub fn generator_log(&self) -> Result<Vec<LogEntry>, String> {
        let mut st = self
            .conn
            .prepare(
                "SELECT e.run, e.event, r.batch FROM events e JOIN runs r ON r.id = e.run
                 WHERE e.event IN ('added', 'done', 'failed') ORDER BY e.seq",
            )
            .map_err(err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?)))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut log: Vec<LogEntry> = Vec::new();
        let mut last_batch = None;
        for (run, event, batch) in rows {
            match event.as_str() {
                "added" => match log.last_mut() {
                    Some(LogEntry::Added(ids)) if last_batch == batch => ids.push(run),
                    _ => {
                        log.push(LogEntry::Added(vec![run]));
                        last_batch = batch;
                    }
                },
                "done" => log.push(LogEntry::Done(run)),
                _ => log.push(LogEntry::Failed(run)),
            }
        }
        Ok(log)
    }

    /// When the study's first event was recorded (its first launch), if any.
    pub fn first_event(&self) -> Option<std::time::SystemTime> {
        let at: Option<f64> = self.conn.query_row("SELECT MIN(at) FROM events", [], |r| r.get(0)).ok().flatten();
        at.filter(|a| a.is_finite() && *a >= 0.0).map(|a| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(a))
    }

    /// How many times each run logged `event` ("launching", "started", "done",
    /// "failed", "queued", "requeued"): a check that every run ran and finished once.
    pub fn event_counts(&self, event: &str) -> Result<BTreeMap<i64, i64>, String> {
        let mut st = self.conn.prepare("SELECT run, COUNT(*) FROM events WHERE event = ?1 GROUP BY run").map_err(err)?;
        let rows = st.query_map(params![event], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
        rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_guarded() {
        let d = std::env::temp_dir().join(format!("orch-journal-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("j.sqlite");
        let _ = std::fs::remove_file(&p);
        let mut j =
            Journal::create(&p, &[("name", "s".into())], &[vec![("a".into(), "1".into())], vec![("a".into(), "2".into())]]).unwrap();
        assert_eq!(j.launching(&[0]).unwrap(), vec![1]);
        assert!(j.launching(&[0]).is_err(), "a running run cannot launch again");
        assert!(j.launching(&[1, 0]).is_err(), "nor as part of a batch");
        assert_eq!(j.runs().unwrap()[1].state, State::Queued, "and a refused batch changes nothing");
        j.started(0, 1234, 99).unwrap();
        let q: BTreeMap<String, f64> = [("err".to_string(), 0.5)].into_iter().collect();
        assert!(j.finish(0, State::Done, None, "ok", &q, 1.5).unwrap());
        assert!(!j.finish(0, State::Done, None, "again", &q, 1.5).unwrap(), "no second finish");
        drop(j);
        let j = Journal::open(&p).unwrap();
        let runs = j.runs().unwrap();
        assert_eq!(runs[0].state, State::Done);
        assert_eq!(runs[0].quantities["err"], 0.5);
        assert_eq!(runs[1].state, State::Queued);
        assert_eq!(j.meta("name").as_deref(), Some("s"));
        assert_eq!(j.event_counts("done").unwrap()[&0], 1);
    }

    #[test]
    fn added_batches_and_results_replay_in_order() {
        let d = std::env::temp_dir().join(format!("orch-journal-gen-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("j.sqlite");
        let _ = std::fs::remove_file(&p);
        let mut j = Journal::create(&p, &[], &[]).unwrap();
        let pt = |v: &str| vec![("x".to_string(), v.to_string())];
        assert_eq!(j.add_runs(&[pt("0"), pt("1")]).unwrap(), vec![0, 1]);
        j.launching(&[1]).unwrap();
        j.finish(1, State::Queued, Some("system"), "retry", &BTreeMap::new(), 0.1).unwrap();
        j.launching(&[1]).unwrap();
        j.finish(1, State::Done, None, "ok", &BTreeMap::new(), 0.1).unwrap();
        assert_eq!(j.add_runs(&[pt("0.5")]).unwrap(), vec![2]);
        j.launching(&[0]).unwrap();
        j.finish(0, State::Failed, Some("diverged"), "no", &BTreeMap::new(), 0.1).unwrap();
        let log = j.generator_log().unwrap();
        assert_eq!(log, vec![LogEntry::Added(vec![0, 1]), LogEntry::Done(1), LogEntry::Added(vec![2]), LogEntry::Failed(0)]);
        assert_eq!(j.runs().unwrap()[2].params, pt("0.5"));
    }
}
