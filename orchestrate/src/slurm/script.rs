//! The sbatch script of a [`Job`]: readable, commented, and self-contained (bash only).
//!
//! What it does when it runs:
//! 1. finds where to start: a requeued job (or the same script submitted again)
//!    continues from the newest checkpoint in RUN_DIR/checkpoints;
//! 2. launches `tessera run` with `srun --mpi=pmix`, or with mpirun inside the
//!    allocation when srun or its pmix plugin is missing, in the background;
//! 3. traps USR1 (Slurm's walltime signal, `--signal=B:USR1@S`) and TERM, and passes a
//!    USR1 on to every rank, which finishes its step, writes a checkpoint and exits;
//! 4. after a stop on USR1 with `--requeue`: `scontrol requeue $SLURM_JOB_ID`.
use super::{format_time, Job};

/// Quotes `s` for bash (single quotes).
fn q(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=+,:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The script text.
pub fn render(job: &Job) -> String {
    let run_dir = job.run_dir.display().to_string();
    // A '%' in --output is a filename pattern; '%%' is a literal one.
    let log = match &job.array {
        Some(a) => a.output.clone(),
        None => format!("{}/slurm-%j.out", run_dir.replace('%', "%%")),
    };
    let mut s = String::new();
    let mut line = |l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    line("#!/bin/bash");
    line(&format!("# tessera on Slurm: case {} ({}) on {} rank(s).", job.case_name, job.case.display(), job.ranks));
    if let Some(a) = &job.array {
        line(&format!("# A job array of {} runs: each task runs the study's run whose number is its task id.", a.tasks.len()));
    }
    line(&format!("# Written by `tessera slurm script` (tessera {}). Submit it with `sbatch FILE`;", env!("CARGO_PKG_VERSION")));
    line("# `tessera slurm submit` (same options) writes it to RUN_DIR/job.sbatch and submits it.");
    line(&format!("# Request {}.", job.checked.replace(['\n', '\r'], " ")));
    line("# RUN_DIR must exist before sbatch (Slurm opens the output file there first), and");
    line("# the tessera binary and the case must be visible on the compute nodes.");
    line("#");
    line(&format!("#SBATCH --job-name={}", job.job_name));
    if let Some(a) = &job.array {
        line("#   Task ids (run numbers); after the '%': how many tasks run at once.");
        line(&format!("#SBATCH --array={}", a.spec));
    }
    if let Some(p) = &job.partition {
        line(&format!("#SBATCH --partition={p}"));
    }
    if let Some(a) = &job.account {
        line(&format!("#SBATCH --account={a}"));
    }
    if let Some(qos) = &job.qos {
        line(&format!("#SBATCH --qos={qos}"));
    }
    line("#   One MPI rank per task.");
    if let Some(n) = job.nodes {
        line(&format!("#SBATCH --nodes={n}"));
    }
    line(&format!("#SBATCH --ntasks={}", job.ranks));
    if let Some(n) = job.ntasks_per_node {
        line(&format!("#SBATCH --ntasks-per-node={n}"));
    }
    if let Some(n) = job.cpus_per_task {
        line(&format!("#SBATCH --cpus-per-task={n}"));
    }
    if let Some((m, mib)) = &job.mem {
        line(&format!("#SBATCH --mem={m}                  # per node ({mib} MiB)"));
    }
    match &job.time {
        Some((t, Some(secs))) if *t != format_time(*secs) => line(&format!("#SBATCH --time={t}                  # {}", format_time(*secs))),
        Some((t, Some(_))) => line(&format!("#SBATCH --time={t}")),
        Some((t, None)) => line(&format!("#SBATCH --time={t}")),
        None => line("#   No --time: the partition's default time limit applies."),
    }
    line("#   Slurm's output (stdout and stderr of this script and of every rank), in RUN_DIR.");
    line(&format!("#SBATCH --output={log}"));
    line(&format!("#SBATCH --error={log}"));
    line(&format!("#   The walltime signal: USR1 to this script {} s before the time limit (Slurm may", job.signal_seconds));
    line("#   send it up to 60 s early). The trap below passes it to every rank, which finishes");
    line("#   its step, writes a checkpoint and exits.");
    line(&format!("#SBATCH --signal=B:USR1@{}", job.signal_seconds));
    if job.requeue {
        line("#   After that signal the job requeues itself and continues from the checkpoint;");
        line("#   every attempt appends to the same output file.");
        line("#SBATCH --requeue");
        line("#SBATCH --open-mode=append");
    }
    line("");
    line("set -u");
    line("");
    let sets = |set: &[String]| set.iter().map(|s| format!("--set {}", q(s))).collect::<Vec<String>>().join(" ");
    match &job.array {
        None => {
            line(&format!("RUN_DIR={}", q(&run_dir)));
            line(&format!("SETS=({})", sets(&job.set)));
            line(&format!("OVERWRITE={}    # 1: the first attempt replaces a run already in RUN_DIR", u8::from(job.overwrite)));
        }
        Some(a) => {
            line("# This task's run: its directory, its --set overrides, and whether its first attempt");
            line("# replaces a run already in RUN_DIR.");
            line("case \"${SLURM_ARRAY_TASK_ID:-}\" in");
            for t in &a.tasks {
                line(&format!(
                    "  {}) RUN_DIR={}; SETS=({}); OVERWRITE={} ;;",
                    t.id,
                    q(&t.run_dir.display().to_string()),
                    sets(&t.set),
                    u8::from(t.overwrite)
                ));
            }
            line("  *) echo \"tessera job: array task ${SLURM_ARRAY_TASK_ID:-(none)} is not one of this array's runs\" >&2; exit 1 ;;");
            line("esac");
        }
    }
    line(&format!("CASE={}", q(&job.case.display().to_string())));
    line(&format!("TESSERA={}", q(&job.exe.display().to_string())));
    line(&format!("REQUEUE={}      # 1: requeue after the walltime signal", u8::from(job.requeue)));
    line("cd \"$RUN_DIR\" || exit 1");
    line("");
    line("restarts=${SLURM_RESTART_COUNT:-0}");
    line("echo \"tessera job ${SLURM_JOB_ID:-?}: attempt $((restarts + 1)), ${SLURM_NTASKS:-?} rank(s) on ${SLURM_JOB_NODELIST:-?}, $(date -Is)\"");
    line("");
    line("# Where to start. A requeued job, or this script submitted again, continues from the");
    line("# newest checkpoint (checkpoints/step_NNNNNNNN.h5: zero-padded, so the last name in");
    line("# glob order is the latest step). An attempt that ended before its first checkpoint");
    line("# starts afresh.");
    line("start=()");
    line("if [ \"$OVERWRITE\" = 1 ] && [ \"$restarts\" = 0 ]; then");
    line("  start=(--overwrite)");
    line("else");
    line("  newest=\"\"");
    line("  for ck in \"$RUN_DIR\"/checkpoints/step_*.h5; do");
    line("    if [ -f \"$ck\" ]; then newest=$ck; fi");
    line("  done");
    line("  if [ -n \"$newest\" ]; then");
    line("    start=(--restart \"$newest\")");
    line("    echo \"tessera job: continuing from $newest\"");
    line("  elif [ \"$restarts\" != 0 ] && { [ -e \"$RUN_DIR/output.h5\" ] || [ -e \"$RUN_DIR/summary.json\" ]; }; then");
    line("    start=(--overwrite)");
    line("  fi");
    line("fi");
    line("");
    line("# The launcher: srun with PMIx when Slurm has the plugin, else Open MPI's mpirun inside");
    line("# the allocation (it takes the hosts and slots from Slurm). TESSERA_LAUNCHER=srun or");
    line("# TESSERA_LAUNCHER=mpirun in the submitting environment forces one.");
    line("launcher=${TESSERA_LAUNCHER:-auto}");
    line("if [ \"$launcher\" = auto ]; then");
    line("  launcher=mpirun");
    line("  if command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -qw pmix; then launcher=srun; fi");
    line("fi");
    line("if [ \"$launcher\" = srun ]; then");
    line("  # Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch: pass it on.");
    line("  run=(srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=\"$SLURM_NTASKS\")");
    line("  if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then run+=(--cpus-per-task=\"$SLURM_CPUS_PER_TASK\"); fi");
    line("else");
    line("  run=(mpirun -n \"$SLURM_NTASKS\")");
    line("  if [ \"$(id -u)\" = 0 ]; then run+=(--allow-run-as-root); fi");
    line("fi");
    line("");
    line("# Signals: USR1 (walltime) or TERM (scancel, preemption) reach this script; a USR1 is");
    line("# passed on to the launcher, which forwards it to every rank.");
    line("stopped_by=\"\"");
    line("pid=\"\"");
    line("forward() {");
    line("  stopped_by=$1");
    line("  echo \"tessera job: SIG$1 at $(date -Is): every rank writes a checkpoint and stops\"");
    line("  if [ -n \"$pid\" ]; then kill -USR1 \"$pid\" 2>/dev/null; fi");
    line("}");
    line("trap 'forward USR1' USR1");
    line("trap 'forward TERM' TERM");
    line("");
    line("echo \"tessera job: ${run[*]} $TESSERA run $CASE --out $RUN_DIR ${SETS[*]+${SETS[*]}} ${start[*]+${start[*]}}\"");
    line("\"${run[@]}\" \"$TESSERA\" run \"$CASE\" --out \"$RUN_DIR\" ${SETS[@]+\"${SETS[@]}\"} ${start[@]+\"${start[@]}\"} &");
    line("pid=$!");
    line("# `wait` returns early when a trapped signal arrives: wait again until the launcher exits.");
    line("while :; do");
    line("  wait \"$pid\"");
    line("  rc=$?");
    line("  if [ \"$rc\" -gt 128 ] && kill -0 \"$pid\" 2>/dev/null; then continue; fi");
    line("  break");
    line("done");
    line("");
    line("# summary.json's top-level \"status\" (two-space indent): completed, stopped, diverged, failed.");
    line("status=$(sed -n 's/^  \"status\": \"\\([a-z]*\\)\".*/\\1/p' \"$RUN_DIR/summary.json\" 2>/dev/null | head -n 1)");
    line("echo \"tessera job: launcher exited with $rc; run status ${status:-unknown}, $(date -Is)\"");
    line("if [ \"$stopped_by\" = USR1 ] && [ \"$status\" = stopped ]; then");
    line("  if [ \"$REQUEUE\" = 1 ]; then");
    line("    echo \"tessera job: requeueing job $SLURM_JOB_ID; the next attempt continues from the checkpoint\"");
    line("    # Slurm ends this attempt here; the job waits in the queue and starts this script again.");
    line("    scontrol requeue \"$SLURM_JOB_ID\" && exit 0");
    line("    echo \"tessera job: scontrol requeue failed: submit this script again to continue\"");
    line("  else");
    line("    echo \"tessera job: stopped with a checkpoint: submit this script again to continue\"");
    line("  fi");
    line("fi");
    line("exit \"$rc\"");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            case: "/work/cases/heat2d.toml".into(),
            case_name: "heat2d".into(),
            set: vec!["physics.diffusivity=0.5".into(), "initial.temperature=sin(pi*x) * y's".into()],
            run_dir: "/scratch/runs/heat 100%".into(),
            exe: "/opt/tessera/bin/tessera".into(),
            ranks: 64,
            nodes: Some(2),
            ntasks_per_node: Some(32),
            cpus_per_task: None,
            time: Some(("1-12".into(), Some(36 * 3600))),
            partition: Some("batch".into()),
            account: Some("proj42".into()),
            qos: None,
            mem: Some(("100G".into(), 102400)),
            job_name: "heat2d".into(),
            requeue: true,
            signal_seconds: 300,
            overwrite: false,
            checked: "checked against partition batch\nof a cluster".into(),
            array: None,
        }
    }

    #[test]
    fn directives_and_quoting() {
        let s = render(&job());
        for want in [
            "#!/bin/bash\n",
            "#SBATCH --job-name=heat2d\n",
            "#SBATCH --partition=batch\n",
            "#SBATCH --account=proj42\n",
            "#SBATCH --nodes=2\n",
            "#SBATCH --ntasks=64\n",
            "#SBATCH --ntasks-per-node=32\n",
            "#SBATCH --time=1-12 ",
            "# 1-12:00:00",
            "#SBATCH --output=/scratch/runs/heat 100%%/slurm-%j.out\n",
            "#SBATCH --signal=B:USR1@300\n",
            "#SBATCH --requeue\n",
            "#SBATCH --open-mode=append\n",
            "RUN_DIR='/scratch/runs/heat 100%'\n",
            "SETS=(--set physics.diffusivity=0.5 --set 'initial.temperature=sin(pi*x) * y'\\''s')\n",
            "srun --mpi=pmix",
            "scontrol requeue \"$SLURM_JOB_ID\"",
            "# Request checked against partition batch of a cluster.\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert!(!s.contains("--qos"));
        // sbatch reads directives only up to the first command.
        let first_command = s.lines().position(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
        let last_directive = s.lines().enumerate().filter(|(_, l)| l.starts_with("#SBATCH")).last().unwrap().0;
        assert!(last_directive < first_command);
        let plain = render(&Job { requeue: false, time: None, ..job() });
        assert!(!plain.contains("--requeue") && !plain.contains("--open-mode"));
        assert!(plain.contains("No --time"));
    }

    fn array() -> Job {
        let task = |id: i64, set: &str, overwrite| super::super::ArrayTask {
            id,
            run_dir: format!("/scratch/study/runs/run_{id:04}").into(),
            set: vec![set.to_string()],
            overwrite,
        };
        Job {
            array: Some(super::super::ArrayTasks {
                spec: "0-1,5%2".into(),
                output: "/scratch/study/runs/run_%4a/slurm-%A_%a.out".into(),
                tasks: vec![task(0, "physics.diffusivity=0.1", true), task(1, "physics.diffusivity=0.2", true), task(5, "a=it's", false)],
            }),
            requeue: false,
            ..job()
        }
    }

    #[test]
    fn an_array_script_picks_its_run_by_task_id() {
        let s = render(&array());
        for want in [
            "#SBATCH --array=0-1,5%2\n",
            "#SBATCH --output=/scratch/study/runs/run_%4a/slurm-%A_%a.out\n",
            "  0) RUN_DIR=/scratch/study/runs/run_0000; SETS=(--set physics.diffusivity=0.1); OVERWRITE=1 ;;\n",
            "  5) RUN_DIR=/scratch/study/runs/run_0005; SETS=(--set 'a=it'\\''s'); OVERWRITE=0 ;;\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        // Run the selection part of the script for task 5 and for a task that is not in it.
        let select: String = s.lines().skip_while(|l| !l.starts_with("case ")).take_while(|l| *l != "esac").collect::<Vec<_>>().join("\n");
        let probe = format!("{select}\nesac\necho \"$RUN_DIR|${{SETS[*]}}|$OVERWRITE\"\n");
        let run = |task: &str| std::process::Command::new("bash").arg("-c").arg(&probe).env("SLURM_ARRAY_TASK_ID", task).output().unwrap();
        let o = run("5");
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "/scratch/study/runs/run_0005|--set a=it's|0");
        let o = run("3");
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("array task 3 is not one of this array's runs"));
    }

    #[test]
    fn the_script_is_valid_bash() {
        let d = std::env::temp_dir().join(format!("tessera-slurm-script-{}.sh", std::process::id()));
        for job in [job(), array()] {
            std::fs::write(&d, render(&job)).unwrap();
            let o = std::process::Command::new("bash").arg("-n").arg(&d).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let _ = std::fs::remove_file(&d);
    }
}
