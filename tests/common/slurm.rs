//! The one-node Slurm of a test binary: scripts/slurm_local.sh started in the binary's
//! own state dir and ports by the first test that holds it, and stopped (by pid) when
//! the last one lets go, pass or fail. Plus the client commands pointed at it.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A test binary's cluster.
pub struct LocalSlurm {
    /// slurmctld's port; slurmd takes the next one (slurmdbd +2, MariaDB +3 with
    /// accounting). Each test binary needs its own range.
    pub port: &'static str,
    /// Names the state dir (`target/tmp/slurm-tests-NAME`).
    pub name: &'static str,
    /// `start --accounting`: slurmdbd and a private MariaDB, so `sacct` works.
    pub accounting: bool,
}

/// Tests holding the cluster (one cluster per test binary).
static USERS: Mutex<usize> = Mutex::new(0);

/// Holds the local cluster for one test; dropping it (also when the test panics) stops
/// the cluster when no other test of this binary uses it.
pub struct Held(&'static LocalSlurm);

impl Drop for Held {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let o = self.0.control(&["stop"]);
            if !o.status.success() {
                eprintln!("slurm_local.sh stop: {}", text(&o));
            }
        }
    }
}

impl LocalSlurm {
    pub fn state_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("slurm-tests-{}", self.name))
    }

    pub fn conf(&self) -> PathBuf {
        self.state_dir().join("slurm.conf")
    }

    /// `scripts/slurm_local.sh ARGS STATE_DIR` on this cluster's ports.
    pub fn control(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("slurm_local.sh"))
            .args(args)
            .arg(self.state_dir())
            .env("TESSERA_SLURM_PORT", self.port)
            .output()
            .expect("run scripts/slurm_local.sh")
    }

    /// Holds the cluster, starting it if this is the first holder. Fails (with what to
    /// install) when Slurm is missing: these tests need a real one.
    pub fn hold(&'static self) -> Held {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 {
            let mut need = vec!["munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun"];
            if self.accounting {
                need.extend(["sacct", "sacctmgr", "slurmdbd", "mariadbd"]);
            }
            let missing: Vec<&str> = need.into_iter().filter(|p| !on_path(p)).collect();
            assert!(
                missing.is_empty(),
                "Slurm{} is not installed ({} not found): these tests need a real one; install it with \
                 scripts/setup.sh (Debian packages slurm-wlm munge libpmix-dev{})",
                if self.accounting { " with accounting" } else { "" },
                missing.join(", "),
                if self.accounting { " slurmdbd mariadb-server" } else { "" }
            );
            let start: &[&str] = if self.accounting { &["start", "--accounting"] } else { &["start"] };
            let o = self.control(start);
            assert!(o.status.success(), "scripts/slurm_local.sh {} {} failed:\n{}", start.join(" "), self.state_dir().display(), text(&o));
        }
        *users += 1;
        Held(self)
    }

    /// A Slurm client command talking to this cluster.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// `tessera ARGS` with this cluster's SLURM_CONF and the Open MPI settings (a job
    /// inherits both: sbatch exports the submitting environment).
    pub fn tessera_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(super::EXE);
        super::with_mpi_env(&mut c).env("SLURM_CONF", self.conf()).args(args);
        c
    }

    /// The job's state as squeue reports it ("" once Slurm forgot it).
    pub fn job_state(&self, id: &str) -> String {
        let o = self.cmd("squeue").args(["-h", "-t", "all", "-o", "%T", "-j", id]).output().expect("squeue");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The job id of run `id` of the study in `dir`, once the study has journaled it and
    /// Slurm runs it.
    pub fn wait_for_job(&self, dir: &Path, id: i64, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(j) = orchestrate::journal::Journal::open(&dir.join("journal.sqlite")) {
                if let Some(job) = j.runs().ok().and_then(|r| r.into_iter().find(|r| r.id == id)).and_then(|r| r.job) {
                    if self.job_state(&job) == "RUNNING" {
                        return job;
                    }
                }
            }
            assert!(t0.elapsed() < limit, "run {id} has no running job after {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(program).is_file())
}

/// A command's stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// results.csv of the study in `dir`, split into cells.
pub fn csv_rows(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("results.csv")).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

/// A small 2D heat case: 400 steps, snapshots every 100, checkpoints every 200.
pub const CASE: &str = r#"
[case]
name = "slurm_heat"
model = "heat"
[mesh]
cells = [48, 40]
periodic = [false, false]
[physics]
diffusivity = 0.3
source = "sin(pi*x)*(1 + t)"
[boundary]
xlo = { type = "dirichlet", value = "0" }
xhi = { type = "dirichlet", value = "y" }
ylo = { type = "neumann", gradient = "0" }
yhi = { type = "dirichlet", value = "x*t" }
[initial]
temperature = "exp(-((x-0.5)^2 + (y-0.5)^2)*8)"
[control]
max_steps = 400
[output]
every = 100
checkpoint_every = 200
"#;
