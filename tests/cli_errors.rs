//! Bad input gives exit code 2 and a located message, never a panic.
//!
//! Every file in tests/cases/bad/ is a realistic mistake; its leading comment lines say
//! what the error must look like:
//!
//! ```text
//! # expect-loc: 12:9                  line:column in this file, or
//! # expect-loc: base/x.toml:2:11      in another file (relative to this one's directory)
//! # expect: unknown key               a substring of stderr (repeatable)
//! # args: --np 3                      extra arguments for `check` and `run` (optional)
//! ```
//!
//! Each file is given to `tessera check FILE` and `tessera run FILE --out DIR`.
//! The other tests cover the command line itself: `--set`, missing files, `--out`,
//! an existing run, and a rank count that does not match `[decomposition] ranks`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{with_mpi_env, EXE};
const CORPUS: &str = "tests/cases/bad";
const GOOD: &str = "cases/heat2d.toml";

/// `tessera ARGS` from the workspace root, with the Open MPI settings tests need.
fn tessera(args: &[&str]) -> Output {
    command(EXE, args).output().expect("tessera starts")
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    with_mpi_env(&mut c).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("RUST_BACKTRACE");
    c
}

/// A fresh scratch directory for one test (removed first if a previous run left it).
fn scratch(tag: &str) -> PathBuf {
    common::scratch("cli-errors", tag)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks the common contract of a user mistake: exit 2, every expected substring,
/// no panic or backtrace hint. Returns the problems found (empty: fine).
fn problems(label: &str, out: &Output, expected: &[String]) -> Vec<String> {
    let err = text(&out.stderr);
    let mut p = Vec::new();
    if out.status.code() != Some(2) {
        p.push(format!("exit code {:?}, expected 2", out.status.code()));
    }
    for s in expected {
        if !err.contains(s.as_str()) {
            p.push(format!("stderr lacks {s:?}"));
        }
    }
    for bad in ["panicked", "RUST_BACKTRACE"] {
        if err.contains(bad) || text(&out.stdout).contains(bad) {
            p.push(format!("output contains {bad:?}"));
        }
    }
    if !p.is_empty() {
        p.insert(0, format!("--- {label}\nstdout:\n{}\nstderr:\n{err}", text(&out.stdout)));
    }
    p
}

fn assert_user_error(label: &str, out: &Output, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let p = problems(label, out, &expected);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

/// What a corpus file declares about its own error.
struct Expectation {
    /// `FILE:LINE:COL`, as the message must print it.
    location: String,
    substrings: Vec<String>,
    args: Vec<String>,
}

fn expectation(rel: &str) -> Expectation {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(root.join(rel)).unwrap();
    let (mut location, mut substrings, mut args) = (None, Vec::new(), Vec::new());
    for line in body.lines().take_while(|l| l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("# expect-loc:") {
            let v = v.trim();
            // `L:C` is in this file; `other.toml:L:C` in a file beside it.
            let in_other = v.rsplitn(3, ':').nth(2).map(|f| f.to_string());
            location = Some(match in_other {
                Some(f) => {
                    let lc = &v[f.len() + 1..];
                    format!("{}:{lc}", Path::new(rel).parent().unwrap().join(f).display())
                }
                None => format!("{rel}:{v}"),
            });
        } else if let Some(v) = line.strip_prefix("# expect:") {
            substrings.push(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("# args:") {
            args.extend(v.split_whitespace().map(str::to_string));
        }
    }
    let location = location.unwrap_or_else(|| panic!("{rel}: no `# expect-loc:` line"));
    assert!(!substrings.is_empty(), "{rel}: no `# expect:` line");
    Expectation { location, substrings, args }
}

#[test]
fn malformed_corpus_gives_exit_2_and_a_located_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(root.join(CORPUS))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .map(|n| format!("{CORPUS}/{n}"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} malformed cases in {CORPUS}", files.len());
    let tmp = scratch("corpus");

    // `run` starts MPI (a singleton) each time: run the files side by side.
    let workers = 8;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let files = &files;
                let tmp = &tmp;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for rel in files.iter().skip(w).step_by(workers) {
                        let exp = expectation(rel);
                        let mut expected = exp.substrings.clone();
                        // The location right after "error: ", then ": " (not a prefix of 1:10).
                        expected.push(format!("error: {}: ", exp.location));
                        let extra: Vec<&str> = exp.args.iter().map(String::as_str).collect();

                        let mut args = vec!["check", rel.as_str()];
                        args.extend(&extra);
                        let out = tessera(&args);
                        failures.extend(problems(&format!("tessera {}", args.join(" ")), &out, &expected));
                        if text(&out.stdout).contains("case OK") {
                            failures.push(format!("--- tessera check {rel}: printed `case OK`"));
                        }

                        let run_dir = tmp.join(Path::new(rel).file_stem().unwrap());
                        let run_dir_s = run_dir.display().to_string();
                        let mut args = vec!["run", rel.as_str(), "--quiet", "--out", run_dir_s.as_str()];
                        args.extend(&extra);
                        // A singleton that spawns no helper daemon starts twice as fast; it
                        // needs a session directory of its own when several run at once.
                        let session = tmp.join(format!("{}.ompi", Path::new(rel).file_stem().unwrap().to_string_lossy()));
                        std::fs::create_dir_all(&session).unwrap();
                        let out = command(EXE, &args)
                            .env("OMPI_MCA_ess_singleton_isolated", "1")
                            .env("OMPI_MCA_orte_tmpdir_base", &session)
                            .output()
                            .expect("tessera starts");
                        failures.extend(problems(&format!("tessera {}", args.join(" ")), &out, &expected));
                        if run_dir.exists() {
                            failures.push(format!("--- tessera run {rel}: created {run_dir_s} for a bad case"));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn good_cases_still_pass_check() {
    // Without this, a binary that rejects everything would pass the corpus test.
    for case in [GOOD, "cases/heat3d.toml", "tests/cases/bad/base/heat2d.toml"] {
        let out = tessera(&["check", case]);
        assert_eq!(out.status.code(), Some(0), "{case}:\n{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("case OK"), "{}", text(&out.stdout));
    }
}

#[test]
fn set_with_a_typo_points_at_the_argument() {
    for cmd in ["check", "run"] {
        let mut args = vec![cmd, GOOD, "--set", "physics.difusivity=1"];
        if cmd == "run" {
            args.extend(["--quiet", "--out", "/nonexistent-parent/run"]);
        }
        let out = tessera(&args);
        assert_user_error(
            &format!("{cmd} --set typo"),
            &out,
            &["error: --set physics.difusivity=1:1:1: ", "unknown key `difusivity` in [physics]", "did you mean `diffusivity`?"],
        );
    }
    // A typo in the section part.
    let out = tessera(&["check", GOOD, "--set", "phyiscs.diffusivity=1"]);
    assert_user_error("section typo", &out, &["error: --set phyiscs.diffusivity=1:1:1: ", "did you mean `physics`?"]);
}

#[test]
fn set_with_a_bad_value_points_at_the_value() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "physics.diffusivity=abc",
            &["error: --set physics.diffusivity=abc:1:21: ", "physics.diffusivity", "expected a number, found the string \"abc\""],
        ),
        ("mesh.cells=64", &["error: --set mesh.cells=64:1:12: ", "expected a list", "cells = [64, 64]"]),
        // The bad element of the override, not the file's cells (which are fine).
        ("mesh.cells=[64,-1]", &["error: --set mesh.cells=[64,-1]:1:16: ", "mesh.cells[1]", "at least 1, got -1"]),
        ("physics.diffusivity=-2", &["error: --set physics.diffusivity=-2:1:21: ", "must be positive"]),
    ];
    for (set, expected) in cases {
        let out = tessera(&["check", GOOD, "--set", set]);
        assert_user_error(set, &out, expected);
    }
    // Half a boundary face: the override replaces the face, and the message says so.
    let out = tessera(&["check", GOOD, "--set", "boundary.xlo.value=1"]);
    assert_user_error(
        "half a face",
        &out,
        &["error: --set boundary.xlo.value=1:1:1: ", "face xlo has no `type`", "replaces a boundary face whole"],
    );
    let out = tessera(&["check", GOOD, "--set", "physics.diffusivity"]);
    assert_user_error("no =", &out, &["error: --set physics.diffusivity:1:1: ", "expected KEY=VALUE"]);
    // Solver options of a poisson case, overridden on the command line.
    let out = tessera(&["check", "cases/poisson2d.toml", "--set", "numerics.solver.method=gmres"]);
    assert_user_error(
        "solver method",
        &out,
        &["error: --set numerics.solver.method=gmres:1:24: ", "unknown method \"gmres\"", "method: cg, cg1, fcg, bicgstab, mg"],
    );
    let out = tessera(&["check", "cases/poisson2d.toml", "--set", "numerics.solver.cycle=\"X\""]);
    assert_user_error("solver cycle", &out, &["--set numerics.solver.cycle=\"X\":1:23: ", "unknown cycle \"X\"", "cycle: V, W, F"]);
}

#[test]
fn missing_case_file() {
    for cmd in ["check", "run"] {
        let out = tessera(&[cmd, "cases/no_such_case.toml"]);
        assert_user_error(cmd, &out, &["cases/no_such_case.toml", "no such file"]);
    }
    let out = tessera(&["check", "cases"]);
    assert_user_error("a directory", &out, &["cases: cannot read case file: it is a directory"]);
}

#[test]
fn out_with_a_missing_parent_or_under_a_file() {
    let tmp = scratch("out");
    let missing = tmp.join("no_such_dir").join("run");
    let out = tessera(&["run", GOOD, "--quiet", "--out", missing.to_str().unwrap()]);
    assert_user_error("missing parent", &out, &["no_such_dir", "does not exist"]);
    assert!(!tmp.join("no_such_dir").exists(), "--out created its missing parent");

    let file = tmp.join("notes.txt");
    std::fs::write(&file, b"not a directory\n").unwrap();
    let under = file.join("run");
    let out = tessera(&["run", GOOD, "--quiet", "--out", under.to_str().unwrap()]);
    assert_user_error("under a file", &out, &["notes.txt"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory\n");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    all.sort();
    all
}

#[test]
fn existing_run_is_kept_without_overwrite() {
    let tmp = scratch("existing");
    let dir = tmp.join("run");
    let d = dir.to_str().unwrap();
    // A real (tiny) run first.
    let small = ["--set", "mesh.cells=[16,16]", "--set", "control.max_steps=3", "--set", "output.checkpoint_every=2"];
    let mut args = vec!["run", GOOD, "--quiet", "--out", d];
    args.extend(small);
    let out = tessera(&args);
    assert_eq!(out.status.code(), Some(0), "first run failed:\n{}", text(&out.stderr));
    let before = snapshot(&dir);
    assert!(before.iter().any(|(p, _)| p.ends_with("summary.json")), "{before:?}");

    // The same again, and a different case, into the same directory: refused, nothing touched.
    for extra in [&small[..], &[][..]] {
        let mut args = vec!["run", GOOD, "--quiet", "--out", d];
        args.extend(extra);
        let out = tessera(&args);
        assert_user_error("existing run", &out, &["already holds a run", "--overwrite"]);
        let after = snapshot(&dir);
        assert_eq!(before.len(), after.len(), "files appeared or vanished");
        for ((p, a), (q, b)) in before.iter().zip(&after) {
            assert_eq!(p, q);
            assert!(a == b, "{} changed", p.display());
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn rank_mismatch_names_the_ranks_line() {
    let rel = "tests/cases/bad/rank_mismatch.toml";
    let exp = expectation(rel);
    let loc = format!("error: {}: ", exp.location);
    let tmp = scratch("ranks");
    let d = tmp.join("run");
    let d = d.to_str().unwrap();

    // Under mpirun: every rank sees the mismatch, one message is printed.
    let out = command("mpirun", &["-n", "3", EXE, "run", rel, "--quiet", "--out", d]).output().expect("mpirun starts");
    assert_user_error("mpirun -n 3", &out, &[&loc, "asks for 2×2 = 4 ranks but the job has 3", "mpirun -n 4"]);
    assert_eq!(text(&out.stderr).matches(&loc).count(), 1, "one message, not one per rank:\n{}", text(&out.stderr));

    // tessera run --np 3 checks before launching mpirun.
    let out = tessera(&["run", rel, "--np", "3", "--quiet", "--out", d]);
    assert_user_error("--np 3", &out, &[&loc, "the job has 3"]);
    assert!(!Path::new(d).exists(), "a run directory was created for a rank mismatch");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn meshes_too_large_are_refused_before_allocating() {
    // Beyond index arithmetic: refused by validation (check and run).
    let o = tessera(&["check", GOOD, "--set", "mesh.cells=[16777216,16777216,16777216]"]);
    assert_user_error("too many cells", &o, &["too many", "2^40"]);
    // Valid but larger than this machine's memory: refused at run time, exit 2,
    // no output directory, no allocator abort.
    let dir = scratch("too-big");
    let out = dir.join("run");
    let o = tessera(&["run", GOOD, "--set", "mesh.cells=[1000000,1000000]", "--out", out.to_str().unwrap()]);
    assert_user_error("out of memory", &o, &["GiB per rank", "available"]);
    assert!(!out.exists(), "nothing written");
}

/// A fixed Crank–Nicolson step beyond ν·dt·Σ1/h² = 10 is stable, so it runs (exit 0),
/// but the user is told the shortest waves are no longer damped and what step would
/// damp them; a step within the bound says nothing.
#[test]
fn a_long_fixed_crank_nicolson_step_runs_with_a_warning() {
    let dir = scratch("cn-long-step");
    // ν = 1 on 128²: ν·dt·Σ1/h² = 1 · 0.005 · 2 · 128² = 163.84, Courant number 0.64.
    for (dt, warned) in [("0.005", true), ("0.0001", false)] {
        let out_dir = dir.join(dt);
        let out = tessera(&[
            "run",
            "cases/cavity.toml",
            "--quiet",
            "--out",
            out_dir.to_str().unwrap(),
            "--set",
            "physics.viscosity=1.0",
            "--set",
            &format!("numerics.dt={dt}"),
            "--set",
            "control.max_steps=2",
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "dt {dt}: {err}");
        assert_eq!(err.contains("warning: numerics.dt"), warned, "dt {dt}: {err}");
        if warned {
            assert!(err.contains("163.840 > 10") && err.contains("dt <= 3.0518e-4"), "{err}");
        }
    }
}
