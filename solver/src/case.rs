//! Case files: TOML schema, `extends` overlays, `--set` overrides, validation with
//! file/line/column errors, and the resolved [`Case`] a run uses.
//!
//! Loading happens in three steps. Each source (the file, each file it extends,
//! each `--set`) is checked on its own against the schema, so an unknown key or a
//! wrong type is reported where it was written. The sources are then merged (later
//! ones win; sections merge key by key, boundary faces are replaced whole) and the
//! merged case is validated as a whole; those errors point at the source that set
//! the offending value last.
use crate::error::{suggest, CaseError, Location};
use crate::expr::Expr;
use crate::linsolve::{Cycle, Interpolation, Method, Precond, Smoother, SolverOptions};
use decomp::Grid;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- raw schema

/// A number or an expression string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum RawExpr {
    Num(f64),
    Str(String),
}

impl RawExpr {
    fn text(&self) -> String {
        match self {
            RawExpr::Num(v) => format!("{v:?}"),
            RawExpr::Str(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum RawRanks {
    Word(String),
    Grid(Vec<i64>),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[allow(dead_code)]
    extends: Option<String>,
    #[serde(default)]
    case: RawCaseSection,
    #[serde(default)]
    mesh: RawMesh,
    #[serde(default)]
    decomposition: RawDecomposition,
    #[serde(default)]
    physics: RawPhysics,
    #[serde(default)]
    boundary: RawBoundary,
    #[serde(default)]
    initial: RawInitial,
    #[serde(default)]
    numerics: RawNumerics,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    monitor: RawMonitor,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaseSection {
    name: Option<String>,
    model: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    cells: Option<Vec<i64>>,
    lower: Option<Vec<f64>>,
    upper: Option<Vec<f64>>,
    periodic: Option<Vec<bool>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecomposition {
    ranks: Option<RawRanks>,
    threads_per_rank: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhysics {
    diffusivity: Option<f64>,
    coefficient: Option<RawExpr>,
    source: Option<RawExpr>,
    viscosity: Option<f64>,
    body_force: Option<Vec<RawExpr>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoundary {
    xlo: Option<RawFace>,
    xhi: Option<RawFace>,
    ylo: Option<RawFace>,
    yhi: Option<RawFace>,
    zlo: Option<RawFace>,
    zhi: Option<RawFace>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFace {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<RawExpr>,
    gradient: Option<RawExpr>,
    velocity: Option<Vec<RawExpr>>,
    pressure: Option<RawExpr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInitial {
    temperature: Option<RawExpr>,
    phi: Option<RawExpr>,
    velocity_x: Option<RawExpr>,
    velocity_y: Option<RawExpr>,
    velocity_z: Option<RawExpr>,
    pressure: Option<RawExpr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumerics {
    dt: Option<f64>,
    dt_max: Option<f64>,
    stability_factor: Option<f64>,
    cfl: Option<f64>,
    time_scheme: Option<String>,
    viscous: Option<String>,
    viscous_rtol: Option<f64>,
    projection: Option<String>,
    steps_per_pass: Option<i64>,
    solver: Option<RawSolver>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSolver {
    method: Option<String>,
    preconditioner: Option<String>,
    rtol: Option<f64>,
    atol: Option<f64>,
    max_iterations: Option<i64>,
    reproducible: Option<bool>,
    error_if_not_converged: Option<bool>,
    cycle: Option<String>,
    smoother: Option<String>,
    interpolation: Option<String>,
    pre_smooth: Option<i64>,
    post_smooth: Option<i64>,
    coarse_max: Option<i64>,
    agglomerate_below: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    end_time: Option<f64>,
    max_steps: Option<i64>,
    steady_tolerance: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dir: Option<String>,
    every: Option<i64>,
    fields: Option<Vec<String>>,
    checkpoint_every: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    probes: Option<Vec<Vec<f64>>>,
    norms: Option<Vec<String>>,
}

// ---------------------------------------------------------------- resolved case

/// Models tessera knows.
pub const MODELS: [&str; 3] = ["heat", "poisson", "incompressible"];
/// Fields the heat model writes.
pub const HEAT_FIELDS: [&str; 1] = ["temperature"];
/// Fields the poisson model writes.
pub const POISSON_FIELDS: [&str; 1] = ["phi"];

/// Fields the incompressible model writes in 2D (vorticity is the z component).
pub const FLOW_FIELDS_2D: [&str; 4] = ["velocity_x", "velocity_y", "pressure", "vorticity"];
/// Fields the incompressible model writes in 3D (vorticity is the magnitude).
pub const FLOW_FIELDS_3D: [&str; 8] =
    ["velocity_x", "velocity_y", "velocity_z", "pressure", "vorticity", "vorticity_x", "vorticity_y", "vorticity_z"];

/// The fields model `model` can write on a `dims`-dimensional mesh; the first is the
/// scalar models' unknown.
pub fn model_fields(model: &str, dims: usize) -> &'static [&'static str] {
    match (model, dims) {
        ("poisson", _) => &POISSON_FIELDS,
        ("incompressible", 3) => &FLOW_FIELDS_3D,
        ("incompressible", _) => &FLOW_FIELDS_2D,
        _ => &HEAT_FIELDS,
    }
}
/// Norms a monitor can record.
pub const NORMS: [&str; 5] = ["l2", "max", "min", "mean", "integral"];
const FACES: [&str; 6] = ["xlo", "xhi", "ylo", "yhi", "zlo", "zhi"];
/// Boundary types of model incompressible (besides periodic).
const FLOW_FACE_KINDS: [&str; 4] = ["wall", "moving_wall", "inlet", "outlet"];

/// A boundary condition on one face.
#[derive(Clone, Debug)]
pub enum Bc {
    /// Fixed value `u = g(x, t)` on the face.
    Dirichlet(Expr),
    /// Fixed outward normal derivative `du/dn = q(x, t)`.
    Neumann(Expr),
    /// Periodic axis: filled by halo exchange.
    Periodic,
}

/// A boundary condition of model incompressible on one face.
#[derive(Clone, Debug)]
pub enum FlowBc {
    /// No-slip wall moving tangentially with `velocity` (one expression per axis;
    /// zeros for a stationary wall).
    Wall {
        /// Wall velocity, one component per axis.
        velocity: Vec<Expr>,
        /// Written as `moving_wall` (velocity given) rather than `wall`.
        moving: bool,
    },
    /// Velocity inlet: the velocity on the face, one expression per axis.
    Inlet(Vec<Expr>),
    /// Pressure outlet: `p = value`, zero normal gradient of the velocity.
    Outlet(Expr),
    /// Periodic axis.
    Periodic,
}

/// Time integration of the heat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeScheme {
    /// Forward Euler, step limited by stability.
    Explicit,
    /// Backward Euler: one linear solve per step, any step size, first order.
    BackwardEuler,
    /// Crank–Nicolson: one linear solve per step, second order.
    CrankNicolson,
}

impl TimeScheme {
    /// The name used in case files.
    pub fn name(self) -> &'static str {
        match self {
            TimeScheme::Explicit => "explicit",
            TimeScheme::BackwardEuler => "backward_euler",
            TimeScheme::CrankNicolson => "crank_nicolson",
        }
    }

    /// True for the schemes that solve a linear system each step.
    pub fn implicit(self) -> bool {
        self != TimeScheme::Explicit
    }
}

/// How model incompressible integrates its viscous term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viscous {
    /// Inside the explicit Runge–Kutta stages: the step is limited by ν Δt / h².
    Explicit,
    /// Crank–Nicolson within each stage (implicit): the Courant number limits the step,
    /// and ν Δt Σ 1/h² ≤ 10 keeps the highest modes damped.
    CrankNicolson,
}

impl Viscous {
    /// The name used in case files.
    pub fn name(self) -> &'static str {
        match self {
            Viscous::Explicit => "explicit",
            Viscous::CrankNicolson => "crank_nicolson",
        }
    }
}

/// How often model incompressible projects its velocity onto divergence-free fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// A pressure solve in each of the three Runge–Kutta stages: every stage's velocity
    /// is divergence-free.
    EveryStage,
    /// One pressure solve per step, in the final stage (Le & Moin 1991): the first two
    /// stages keep the step-start pressure gradient and are not projected, the step's
    /// velocity is divergence-free. A third of the pressure solves.
    FinalStage,
}

impl Projection {
    /// The name used in case files.
    pub fn name(self) -> &'static str {
        match self {
            Projection::EveryStage => "every_stage",
            Projection::FinalStage => "final_stage",
        }
    }
}

/// The process grid requested by the case.
#[derive(Clone, Debug, PartialEq)]
pub enum Ranks {
    /// Chosen by tessera to minimise halo traffic.
    Auto,
    /// Fixed process counts per axis.
    Fixed(Vec<usize>),
}

/// A validated case, ready to run.
#[derive(Clone, Debug)]
pub struct Case {
    /// Case name.
    pub name: String,
    /// Model name (one of [`MODELS`]).
    pub model: String,
    /// The mesh.
    pub grid: Grid,
    /// Requested decomposition.
    pub ranks: Ranks,
    /// Threads each rank sweeps its block with (hybrid MPI + threads; heat explicit).
    pub threads_per_rank: usize,
    /// Diffusivity (m²/s) of the heat model.
    pub diffusivity: f64,
    /// Kinematic viscosity ν of the incompressible model.
    pub viscosity: f64,
    /// Body force per unit mass of the incompressible model, one expression per axis.
    pub body_force: Vec<Expr>,
    /// Initial velocity of the incompressible model, one expression per axis.
    pub initial_velocity: Vec<Expr>,
    /// Courant number of the automatic time step of the incompressible model:
    /// dt · max over cells of Σ_d |u_d| / h_d (the largest local Courant number).
    pub cfl: f64,
    /// Coefficient `k(x, y, z)` of the poisson model's `-∇·(k ∇φ) = source`.
    pub coefficient: Option<Expr>,
    /// Linear solver options (`[numerics.solver]`).
    pub solver: SolverOptions,
    /// Time integration of the heat model.
    pub time_scheme: TimeScheme,
    /// Viscous term of the incompressible model: explicit in every Runge–Kutta stage, or
    /// Crank–Nicolson (one Helmholtz solve per velocity component and stage).
    pub viscous: Viscous,
    /// Relative tolerance of the Crank–Nicolson Helmholtz solves.
    pub viscous_rtol: f64,
    /// Explicit heat steps taken per pass over memory where nothing is due between them:
    /// 2 (temporal blocking, the default) or 1. Both give the same bits.
    pub steps_per_pass: usize,
    /// Pressure solves per step of the incompressible model: one per stage, or one.
    pub projection: Projection,
    /// Volumetric source term.
    pub source: Expr,
    /// Boundary conditions, `[axis][side]` with side 0 = low, 1 = high. For model
    /// incompressible, the pressure's: neumann 0 on walls and inlets, dirichlet on outlets.
    pub boundary: Vec<[Bc; 2]>,
    /// Boundary conditions of model incompressible, `[axis][side]` (empty otherwise).
    pub flow_boundary: Vec<[FlowBc; 2]>,
    /// Initial temperature (heat), initial guess for φ (poisson) or initial pressure
    /// (incompressible; the projection's first guess).
    pub initial: Expr,
    /// Fixed time step, if set.
    pub dt: Option<f64>,
    /// Cap on the automatic time step.
    pub dt_max: Option<f64>,
    /// Fraction of the explicit stability limit used for the automatic step.
    pub stability_factor: f64,
    /// Stop at this time.
    pub end_time: Option<f64>,
    /// Stop after this many steps.
    pub max_steps: Option<u64>,
    /// Stop when max |du/dt| falls below this.
    pub steady_tolerance: Option<f64>,
    /// Output directory (RUN_DIR).
    pub output_dir: PathBuf,
    /// Snapshot interval in steps (0: first and last only).
    pub output_every: u64,
    /// Fields written to snapshots.
    pub output_fields: Vec<String>,
    /// Checkpoint interval in steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Probe points (x, y, z).
    pub probes: Vec<[f64; 3]>,
    /// Norms recorded in monitor.csv.
    pub norms: Vec<String>,
    /// The resolved case as TOML: exactly what runs.
    pub resolved: String,
    /// Where each key was set, for errors found later (e.g. rank mismatch).
    sources: SourceMap,
}

impl Case {
    /// An error located at the place that set `key` (dotted path).
    pub fn error_at(&self, key: &str, message: impl Into<String>, help: impl Into<String>) -> CaseError {
        self.sources.error(key, message.into(), Some(help.into()))
    }

    /// Sends the run to `dir` (the CLI's `--out`), keeping the resolved text — what
    /// RUN_DIR/case.toml records — truthful.
    pub fn set_output_dir(&mut self, dir: PathBuf) {
        self.output_dir = dir;
        self.resolved = resolved_toml(self);
    }

    /// Human-readable boundary summary for reports.
    pub fn describe_bc(&self, axis: usize, side: usize) -> String {
        match &self.boundary[axis][side] {
            _ if !self.flow_boundary.is_empty() => match &self.flow_boundary[axis][side] {
                FlowBc::Wall { velocity, moving: true } => format!("moving wall, velocity ({})", sources(velocity)),
                FlowBc::Wall { .. } => "no-slip wall".into(),
                FlowBc::Inlet(v) => format!("inlet, velocity ({})", sources(v)),
                FlowBc::Outlet(p) => format!("outlet, pressure {}", p.source()),
                FlowBc::Periodic => "periodic".into(),
            },
            Bc::Dirichlet(e) => format!("dirichlet {}", e.source()),
            Bc::Neumann(e) => format!("neumann {}", e.source()),
            Bc::Periodic => "periodic".into(),
        }
    }

    /// The explicit stability limit of the viscous term of the incompressible model
    /// under three-stage Runge–Kutta: its real stability interval reaches 2.51 and the
    /// largest eigenvalue of ν∇² is at most ν Σ c/h² (c = 4, or 16/3 on walled axes).
    pub fn viscous_dt(&self) -> f64 {
        let h = self.grid.spacing();
        // Next to a wall the quadratic ghost raises the row sum of the discrete
        // Laplacian from 4/h² to 16/3h² (Gershgorin): the bound uses it there.
        let s: f64 = (0..self.grid.dims).map(|a| if self.grid.periodic[a] { 4.0 } else { 16.0 / 3.0 } / (h[a] * h[a])).sum();
        2.5 / (self.viscosity * s)
    }

    /// The stable explicit time-step limit for the heat equation.
    pub fn stable_dt(&self) -> f64 {
        let h = self.grid.spacing();
        let s: f64 = (0..self.grid.dims).map(|a| 1.0 / (h[a] * h[a])).sum();
        1.0 / (2.0 * self.diffusivity * s)
    }
}

fn sources(v: &[Expr]) -> String {
    v.iter().map(|e| e.source().to_string()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------- sources and spans

/// One source of case text: a file or a `--set` argument.
#[derive(Clone, Debug)]
struct Origin {
    name: String,
    text: String,
}

/// For every dotted key (and array element `key[i]`), the origin and byte span of the
/// value that set it last, and of the key token itself.
#[derive(Clone, Debug, Default)]
struct SourceMap {
    origins: Vec<Origin>,
    spans: HashMap<String, (usize, Range<usize>)>,
    /// Spans of the key tokens (`diffusivity` in `diffusivity = 0.1`).
    key_spans: HashMap<String, (usize, Range<usize>)>,
    /// The top-level file, for errors with no better position.
    main: String,
}

fn locate(origin: &Origin, span: Range<usize>) -> Location {
    let text = &origin.text;
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |p| p + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |p| start + p);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let end = span.end.clamp(start, line_end);
    Location {
        file: origin.name.clone(),
        line,
        column,
        snippet: text[line_start..line_end].trim_end_matches('\r').to_string(),
        width: text[start..end].chars().count().max(1),
    }
}

/// `boundary.xlo` and the like: a face, which overlays replace whole.
fn is_face(path: &str) -> bool {
    path.strip_prefix("boundary.").is_some_and(|f| FACES.contains(&f))
}

/// Narrows `loc` (a value's location) to the first whole-word occurrence of `word`
/// inside it, so the caret points at the offending name in an expression.
fn narrow(loc: &mut Location, word: &str) {
    let chars: Vec<char> = loc.snippet.chars().collect();
    let w: Vec<char> = word.chars().collect();
    let (from, to) = (loc.column.saturating_sub(1), (loc.column - 1 + loc.width).min(chars.len()));
    if w.is_empty() || to < from + w.len() {
        return;
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for i in from..=to - w.len() {
        let before_ok = i == 0 || !ident(chars[i - 1]);
        let after_ok = i + w.len() >= chars.len() || !ident(chars[i + w.len()]);
        if chars[i..i + w.len()] == w[..] && before_ok && after_ok {
            loc.column = i + 1;
            loc.width = w.len();
            return;
        }
    }
}

impl SourceMap {
    fn add_origin(&mut self, name: String, text: String) -> usize {
        self.origins.push(Origin { name, text });
        self.origins.len() - 1
    }

    /// Forgets every position under `path` (the value there is being replaced).
    fn clear_under(&mut self, path: &str) {
        let under = |k: &String| k == path || k.strip_prefix(path).is_some_and(|r| r.starts_with('.') || r.starts_with('['));
        self.spans.retain(|k, _| !under(k));
        self.key_spans.retain(|k, _| !under(k));
    }

    fn record_item(&mut self, origin: usize, path: &str, item: &toml_edit::Item) {
        match item {
            toml_edit::Item::Table(t) => {
                if is_face(path) {
                    self.clear_under(path);
                }
                // Dotted keys (`physics.diffusivity = 1`) make implicit tables: no span of their own.
                if let Some(sp) = t.span().filter(|_| !t.is_dotted() && !t.is_implicit()) {
                    self.spans.insert(path.to_string(), (origin, sp));
                }
                for (k, v) in t.iter() {
                    let p = join(path, k);
                    self.record_item(origin, &p, v);
                    if let Some(sp) = t.key(k).and_then(|k| k.span()) {
                        self.key_spans.insert(p, (origin, sp));
                    }
                }
            }
            toml_edit::Item::Value(v) => self.record_value(origin, path, v),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    for (k, v) in t.iter() {
                        self.record_item(origin, &join(&format!("{path}[{i}]"), k), v);
                    }
                }
            }
            toml_edit::Item::None => {}
        }
    }

    fn record_value(&mut self, origin: usize, path: &str, v: &toml_edit::Value) {
        // A value replaces what was there, except an inline table that merges key by key
        // (sections do, boundary faces do not).
        if is_face(path) || !matches!(v, toml_edit::Value::InlineTable(_)) {
            self.clear_under(path);
        }
        if let Some(sp) = v.span() {
            self.spans.insert(path.to_string(), (origin, sp));
        }
        match v {
            toml_edit::Value::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    self.record_value(origin, &format!("{path}[{i}]"), e);
                }
            }
            toml_edit::Value::InlineTable(t) => {
                for (k, e) in t.iter() {
                    let p = join(path, k);
                    self.record_value(origin, &p, e);
                    if let Some(sp) = t.key(k).and_then(|k| k.span()) {
                        self.key_spans.insert(p, (origin, sp));
                    }
                }
            }
            _ => {}
        }
    }

    fn location(&self, key: &str) -> Option<Location> {
        // Fall back to the closest recorded parent: `mesh.cells[3]` -> `mesh.cells` -> `mesh`.
        let mut k = key.to_string();
        loop {
            if let Some((o, sp)) = self.spans.get(&k) {
                return Some(locate(&self.origins[*o], sp.clone()));
            }
            match k.rfind(['.', '[']) {
                Some(p) => k.truncate(p),
                None => return None,
            }
        }
    }

    /// The name of the source that set `key` last (a file, or `--set ...`).
    fn origin_of(&self, key: &str) -> Option<&str> {
        self.spans.get(key).map(|(o, _)| self.origins[*o].name.as_str())
    }

    fn error(&self, key: &str, message: String, help: Option<String>) -> CaseError {
        let mut message = message;
        let location = self.location(key).or_else(|| {
            // Nothing of this section was written anywhere: say so, and point at the
            // start of the top-level file, where the section can be added.
            let section = key.split(['.', '[']).next().unwrap_or(key);
            message = format!("{message} (the case has no [{section}] section)");
            self.origins.first().map(|o| Location { file: o.name.clone(), line: 1, column: 1, snippet: String::new(), width: 0 })
        });
        CaseError { location, file: self.main.clone(), key: Some(key.to_string()), message, help }
    }

    /// Like [`SourceMap::error`], but pointing at the key token (`value` in
    /// `{ type = "neumann", value = "0" }`) rather than at its value.
    fn error_at_key(&self, key: &str, message: String, help: Option<String>) -> CaseError {
        let mut e = self.error(key, message, help);
        if let Some((o, sp)) = self.key_spans.get(key) {
            e.location = Some(locate(&self.origins[*o], sp.clone()));
        }
        e
    }

    /// The innermost recorded value whose span contains byte `pos` of origin `o`.
    fn path_at(&self, o: usize, pos: usize) -> Option<String> {
        self.spans
            .iter()
            .filter(|(_, (oo, sp))| *oo == o && sp.start <= pos && pos < sp.end.max(sp.start + 1))
            .min_by_key(|(k, (_, sp))| (sp.len(), std::cmp::Reverse(k.len())))
            .map(|(k, _)| k.clone())
    }

    /// The key whose key token starts at byte `pos` of origin `o`.
    fn key_at(&self, o: usize, pos: usize) -> Option<String> {
        self.key_spans.iter().find(|(_, (oo, sp))| *oo == o && sp.start == pos).map(|(k, _)| k.clone())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The most threads a rank may sweep with (`decomposition.threads_per_rank`).
pub const MAX_THREADS_PER_RANK: usize = 256;

/// Every section and its keys (kept equal to the `Raw*` structs by a unit test).
const SCHEMA: [(&str, &[&str]); 11] = [
    ("case", &["name", "model"]),
    ("mesh", &["cells", "lower", "upper", "periodic"]),
    ("decomposition", &["ranks", "threads_per_rank"]),
    ("physics", &["diffusivity", "coefficient", "source", "viscosity", "body_force"]),
    ("boundary", &FACES),
    ("initial", &["temperature", "phi", "velocity_x", "velocity_y", "velocity_z", "pressure"]),
    (
        "numerics",
        &["dt", "dt_max", "stability_factor", "cfl", "time_scheme", "viscous", "viscous_rtol", "projection", "steps_per_pass", "solver"],
    ),
    ("numerics.solver", &SOLVER_KEYS),
    ("control", &["end_time", "max_steps", "steady_tolerance"]),
    ("output", &["dir", "every", "fields", "checkpoint_every"]),
    ("monitor", &["probes", "norms"]),
];

const SOLVER_KEYS: [&str; 14] = [
    "method",
    "preconditioner",
    "rtol",
    "atol",
    "max_iterations",
    "reproducible",
    "error_if_not_converged",
    "cycle",
    "smoother",
    "interpolation",
    "pre_smooth",
    "post_smooth",
    "coarse_max",
    "agglomerate_below",
];

/// What a key accepts, with an example, for wrong-type errors.
fn key_help(path: &str) -> Option<&'static str> {
    // `boundary.xlo.value` -> `boundary.*.value`; drop array indices.
    let mut p: String = path.split('[').next().unwrap_or(path).to_string();
    for f in FACES {
        if let Some(rest) = p.strip_prefix(&format!("boundary.{f}")) {
            p = format!("boundary.*{rest}");
        }
    }
    Some(match p.as_str() {
        "extends" => "extends = \"base.toml\": a path relative to this file",
        "case.name" => "name = \"heat2d\": a string",
        "case.model" => "model = \"heat\": a string; models: heat, poisson, incompressible",
        "mesh.cells" => "cells = [64, 64] (2D) or [32, 32, 32] (3D): whole numbers, one per axis",
        "mesh.lower" => "lower = [0.0, 0.0]: one number per axis",
        "mesh.upper" => "upper = [1.0, 1.0]: one number per axis",
        "mesh.periodic" => "periodic = [false, true]: true or false (no quotes), one per axis",
        "decomposition.ranks" => "ranks = \"auto\", or process counts per axis such as [2, 2]",
        "decomposition.threads_per_rank" => "threads_per_rank = 2: a whole number from 1 to 256 (model heat, explicit scheme)",
        "physics.diffusivity" => "diffusivity = 0.1: a positive number (no quotes)",
        "physics.viscosity" => "viscosity = 0.01: the kinematic viscosity, a positive number (no quotes)",
        "physics.body_force" | "boundary.*.velocity" => {
            "a list with one number or expression per axis, e.g. [1.0, 0.0] or [\"4*y*(1-y)\", 0]"
        }
        "numerics.cfl" => "cfl = 0.5: the Courant number of the automatic step, in (0, 1]",
        "physics.source"
        | "physics.coefficient"
        | "initial.temperature"
        | "initial.phi"
        | "initial.velocity_x"
        | "initial.velocity_y"
        | "initial.velocity_z"
        | "initial.pressure"
        | "boundary.*.value"
        | "boundary.*.gradient"
        | "boundary.*.pressure" => "a number, or an expression string in x, y, z, t such as \"sin(pi*x)\"",
        "boundary.*" => "{ type = \"dirichlet\", value = \"0\" }, { type = \"neumann\", gradient = \"0\" } or { type = \"periodic\" }",
        "boundary.*.type" => {
            "type = \"dirichlet\", \"neumann\" or \"periodic\" (model incompressible: wall, moving_wall, inlet, outlet, periodic)"
        }
        "numerics.dt" | "numerics.dt_max" => "a positive number of time units (no quotes)",
        "numerics.stability_factor" => "stability_factor = 0.9: a number in (0, 1]",
        "numerics.time_scheme" => "time_scheme = \"explicit\": explicit, backward_euler or crank_nicolson",
        "numerics.viscous" => "viscous = \"explicit\": explicit or crank_nicolson (model incompressible)",
        "numerics.viscous_rtol" => "viscous_rtol = 1e-4: a number in (0, 1) (no quotes)",
        "numerics.steps_per_pass" => "steps_per_pass = 2: 1 or 2 (model heat, explicit scheme)",
        "numerics.projection" => "projection = \"every_stage\": every_stage or final_stage (model incompressible)",
        "numerics.solver.method" => "method = \"cg\": cg, cg1, fcg, bicgstab or mg",
        "numerics.solver.preconditioner" => "preconditioner = \"mg\": mg, jacobi or none",
        "numerics.solver.rtol" | "numerics.solver.atol" => "a number in [0, 1) (no quotes), e.g. rtol = 1e-8",
        "numerics.solver.max_iterations" | "numerics.solver.pre_smooth" | "numerics.solver.post_smooth" => "a whole number",
        "numerics.solver.coarse_max" | "numerics.solver.agglomerate_below" => "a whole number of cells",
        "numerics.solver.reproducible" | "numerics.solver.error_if_not_converged" => "true or false (no quotes)",
        "numerics.solver.cycle" => "cycle = \"V\": V, W or F",
        "numerics.solver.smoother" => "smoother = \"rbgs\": rbgs (red-black Gauss-Seidel) or chebyshev",
        "numerics.solver.interpolation" => "interpolation = \"cubic\": cubic or linear",
        "control.end_time" | "control.steady_tolerance" => "a positive number (no quotes)",
        "control.max_steps" => "max_steps = 1000: a whole number",
        "output.dir" => "dir = \"runs/heat2d\": a path string",
        "output.every" | "output.checkpoint_every" => "a whole number of steps (0: first and last only)",
        "output.fields" => "fields = [\"temperature\"]: a list of field names",
        "monitor.probes" => "probes = [[0.5, 0.5]]: a list of points, one coordinate per axis",
        "monitor.norms" => "norms = [\"l2\", \"max\"]: a list of l2, max, min, mean, integral",
        s if SCHEMA.iter().any(|(n, _)| *n == s) => "a section: a [name] header followed by key = value lines",
        _ => return None,
    })
}

/// serde's names of types, as a case-file user would say them.
fn plain_expected(e: &str) -> String {
    let e = e.trim();
    match e {
        "f64" | "f32" => "a number".into(),
        "i64" | "u64" | "i32" | "u32" | "usize" => "a whole number".into(),
        "a sequence" => "a list [...]".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a string in quotes".into(),
        s if s.starts_with("struct Raw") || s == "a map" => "a table".into(),
        s => s.to_string(),
    }
}

fn plain_found(f: &str) -> String {
    let f = f.trim();
    let unquote = |s: &str| s.trim_matches('`').to_string();
    if let Some(s) = f.strip_prefix("string ") {
        format!("the string {s}")
    } else if let Some(s) = f.strip_prefix("integer ") {
        format!("the whole number {}", unquote(s))
    } else if let Some(s) = f.strip_prefix("floating point ") {
        format!("the number {}", unquote(s))
    } else if let Some(s) = f.strip_prefix("boolean ") {
        unquote(s)
    } else if f == "sequence" {
        "a list".into()
    } else if f == "map" {
        "a table".into()
    } else {
        f.to_string()
    }
}

/// Turns a serde/TOML error into a located [`CaseError`]: the dotted key, what was
/// expected in words, what is allowed, and a "did you mean" for unknown keys.
/// `lookup` holds the positions of this one source (origin 0).
fn schema_error(origin: &Origin, err: &toml::de::Error, lookup: &SourceMap) -> CaseError {
    let raw = err.message().trim().to_string();
    let span = err.span();
    let mut message = raw.clone();
    let mut help = None;
    let mut key = span.as_ref().and_then(|sp| lookup.path_at(0, sp.start));
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = raw.split("expected ").nth(1).unwrap_or("").split('`').skip(1).step_by(2).collect();
        let full = span.as_ref().and_then(|sp| lookup.key_at(0, sp.start));
        let parent = full.as_deref().and_then(|f| f.rsplit_once('.').map(|(p, _)| p.to_string())).unwrap_or_default();
        key = None;
        let top = parent.is_empty() && expected.contains(&"extends");
        let is_section = top && span.as_ref().is_some_and(|sp| origin.text[..sp.start].trim_end_matches([' ', '\t']).ends_with('['));
        message = if is_section {
            format!("unknown section [{field}]")
        } else if top {
            format!("unknown top-level key `{field}`")
        } else if parent.is_empty() {
            format!("unknown key `{field}`")
        } else {
            format!("unknown key `{field}` in [{parent}]")
        };
        let allowed = if top {
            format!("sections: {}; top-level key: extends", SCHEMA.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", "))
        } else if expected.is_empty() {
            "no keys here".to_string()
        } else {
            format!("allowed keys: {}", expected.join(", "))
        };
        // A key that exists, but in another section (e.g. written above every header).
        let elsewhere = SCHEMA.iter().find(|(s, keys)| *s != parent && keys.contains(&field)).map(|(s, _)| *s);
        let sections: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
        let section_typo = if top { None } else { suggest(field, &sections) };
        help = Some(match (suggest(field, &expected), elsewhere) {
            (Some(s), _) => format!("did you mean `{s}`? {allowed}"),
            (None, _) if section_typo.is_some() => {
                format!(
                    "did you mean the section [{}]? a key written under [{parent}] belongs to [{parent}]; {allowed}",
                    section_typo.unwrap_or_default()
                )
            }
            (None, Some(s)) if top => {
                format!("`{field}` belongs in [{s}]: move it below the [{s}] header (keys above the first header are top-level); {allowed}")
            }
            (None, Some(s)) => format!("`{field}` belongs in [{s}], not [{parent}]; {allowed}"),
            (None, None) => allowed,
        });
    } else if raw.contains("untagged enum RawExpr") {
        message = "expected a number or an expression string such as \"sin(pi*x)\"".into();
    } else if raw.contains("untagged enum RawRanks") {
        message = "expected \"auto\" or a list of process counts per axis, e.g. [2, 1]".into();
    } else if let Some(name) = span.as_ref().and_then(|sp| origin.text[sp.start..].strip_prefix("[[")).and_then(|r| r.split("]]").next()) {
        message = format!("[[{name}]] declares a list of tables, but [{name}] is a single section");
        help = Some(format!("write [{name}] with single brackets"));
        key = Some(name.trim().to_string());
    } else if let Some(p) = raw.find("invalid type: ") {
        let body = &raw[p + "invalid type: ".len()..];
        let (found, expected) = body.rsplit_once(", expected ").unwrap_or((body, "?"));
        message = format!("wrong type: expected {}, found {}", plain_expected(expected), plain_found(found));
        let unquoted = found.strip_prefix("string \"").and_then(|s| s.strip_suffix('"'));
        let quoted_value = match (unquoted, expected.trim()) {
            (Some(s), "f64" | "i64") if s.trim().parse::<f64>().is_ok() => true,
            (Some("true" | "false"), "a boolean") => true,
            _ => false,
        };
        let example = key.as_deref().and_then(key_help);
        help = match (quoted_value, example) {
            (true, Some(ex)) => Some(format!("remove the quotes; {ex}")),
            (true, None) => Some("remove the quotes".into()),
            (false, ex) => ex.map(str::to_string),
        };
    } else if let Some(p) = raw.find("invalid length ") {
        message = format!("wrong number of entries: {}", &raw[p + "invalid length ".len()..]);
        help = key.as_deref().and_then(key_help).map(str::to_string);
    }
    if help.is_none() {
        help = key.as_deref().and_then(key_help).map(str::to_string);
    }
    let location = span.map(|sp| locate(origin, sp));
    CaseError { location, file: origin.name.clone(), key, message, help }
}

/// Line number (1-based) of byte `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// Turns a TOML syntax error into a located [`CaseError`] that says what to fix.
fn syntax_error(origin: &Origin, e: &toml_edit::TomlError) -> CaseError {
    let text = &origin.text;
    let raw = e.message().trim().to_string();
    let mut span = e.span();
    let mut message = format!("TOML syntax error: {raw}");
    let mut help = "see cases/heat2d.toml for a complete example".to_string();
    if let Some(sp) = span.clone() {
        let line_start = text[..sp.start.min(text.len())].rfind('\n').map_or(0, |p| p + 1);
        let line_end = text[sp.start.min(text.len())..].find('\n').map_or(text.len(), |p| sp.start + p);
        let this_line = text[line_start..line_end].trim();
        let token = text.get(sp.clone()).unwrap_or("").trim();
        if raw.starts_with("duplicate key") {
            if this_line.starts_with('[') {
                let first = text[..line_start].lines().position(|l| l.trim() == this_line);
                message = format!("TOML syntax error: section {this_line} is defined twice");
                help = match first {
                    Some(n) => format!("it was already opened on line {}; put all its keys under one header", n + 1),
                    None => "it is already defined above (as a `key = { ... }` inline table or by a dotted key); define it once".into(),
                };
            } else {
                // The earlier occurrence: scan back to the enclosing header.
                let before: Vec<&str> = text[..line_start].lines().collect();
                let mut first = None;
                for (i, l) in before.iter().enumerate().rev() {
                    let l = l.trim();
                    if l.starts_with('[') {
                        break;
                    }
                    if l.strip_prefix(token).is_some_and(|r| r.trim_start().starts_with('=')) {
                        first = Some(i + 1);
                    }
                }
                message = format!("TOML syntax error: key `{token}` is set twice");
                help = match first {
                    Some(n) => format!("it was already set on line {n}; keep one of the two"),
                    None => "a key may be set only once per table; keep one of the two".into(),
                };
            }
        } else if raw.contains("missing comma between") || (raw.contains("unclosed") && !raw.contains("unclosed table")) {
            // An array or inline table left open runs into the next line: point at its
            // opening bracket.
            if let Some(open) = unclosed_bracket(&text[..sp.start.min(text.len())]) {
                if line_of(text, open) < line_of(text, sp.start) {
                    let (what, close) = if text[open..].starts_with('{') { ("inline table", '}') } else { ("array", ']') };
                    message = format!("TOML syntax error: this {what} is never closed");
                    help = format!(
                        "add `{close}` at the end of line {} (the parser reached `{}` on line {} still inside the {what})",
                        line_of(text, open),
                        this_line,
                        line_of(text, sp.start)
                    );
                    span = Some(open..open + 1);
                }
            }
        } else if let Some(c) =
            text[sp.start.min(text.len())..].chars().next().filter(|c| raw.contains("unexpected key or value") && [']', '}'].contains(c))
        {
            message = format!("TOML syntax error: unexpected `{c}`");
            help = "remove it: the brackets on this line do not match".into();
        } else if raw.contains("invalid basic string") || raw.contains("invalid literal string") {
            message = "TOML syntax error: string not closed on this line".into();
            help = "add the closing quote; a string must end on the line where it starts".into();
        } else if raw.contains("unclosed table") {
            message = "TOML syntax error: table header not closed".into();
            help = "write the header as [name]".into();
        }
    }
    CaseError { location: span.map(|sp| locate(origin, sp)), file: origin.name.clone(), key: None, message, help: Some(help) }
}

/// Position of the last `[` in `text` that is still open at its end (strings and
/// comments skipped).
fn unclosed_bracket(text: &str) -> Option<usize> {
    let mut stack = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                while chars.peek().is_some_and(|(_, c)| *c != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' => {
                while let Some((_, d)) = chars.next() {
                    if d == '\\' && c == '"' {
                        chars.next();
                    } else if d == c || d == '\n' {
                        break;
                    }
                }
            }
            '[' | '{' => stack.push(i),
            ']' | '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

fn parse_source(origin: &Origin) -> Result<(toml::Table, toml_edit::Document<String>), CaseError> {
    let doc = toml_edit::Document::parse(origin.text.clone()).map_err(|e| syntax_error(origin, &e))?;
    let mut lookup = SourceMap::default();
    lookup.add_origin(origin.name.clone(), origin.text.clone());
    lookup.record_item(0, "", doc.as_item());
    let table: toml::Table = toml::from_str(&origin.text).map_err(|e| schema_error(origin, &e, &lookup))?;
    // Check the schema on this source alone so errors point into it.
    toml::from_str::<RawCase>(&origin.text).map_err(|e| schema_error(origin, &e, &lookup))?;
    Ok((table, doc))
}

/// Deep merge: tables merge key by key, except boundary faces, which are replaced.
fn merge(base: &mut toml::Table, over: toml::Table, path: &str) {
    for (k, v) in over {
        let p = join(path, &k);
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if !p.starts_with("boundary.") => merge(b, o, &p),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses one `--set KEY=VALUE` into a nested table; VALUE is TOML (`2.5`, `[64, 64]`,
/// `"sin(x)"`) or else taken as a plain string.
fn parse_set(arg: &str, map: &mut SourceMap) -> Result<toml::Table, CaseError> {
    let origin_name = format!("--set {arg}");
    let o = map.add_origin(origin_name.clone(), arg.to_string());
    let origin = map.origins[o].clone();
    let Some(eq) = arg.find('=') else {
        return Err(CaseError {
            location: Some(locate(&origin, 0..arg.len())),
            file: origin_name,
            key: None,
            message: "expected KEY=VALUE".into(),
            help: Some("e.g. --set physics.diffusivity=0.5 or --set mesh.cells=[128,128]".into()),
        });
    };
    let key = arg[..eq].trim();
    let value_text = &arg[eq + 1..];
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(CaseError {
            location: Some(locate(&origin, 0..eq.max(1))),
            file: origin_name,
            key: None,
            message: if key.is_empty() { "missing key before `=`".into() } else { format!("bad key `{key}`") },
            help: Some("keys are dotted paths such as physics.diffusivity".into()),
        });
    }
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    // Where the unknown part of the key ends, for the underline: `physics.difusivity`.
    let unknown_span = |field: &str| {
        let mut end = 0;
        for p in &parts {
            end = arg[end..].find(p).map_or(eq, |i| end + i + p.len());
            if *p == field {
                return 0..end;
            }
        }
        0..eq
    };
    // Set the key's value and record where it came from. VALUE as TOML when the whole
    // argument is a valid TOML line (then positions of array elements are known too).
    let as_toml = toml_edit::Document::parse(arg.to_string()).ok().filter(|_| toml::from_str::<toml::Table>(arg).is_ok());
    let table = if let Some(doc) = as_toml {
        let table: toml::Table = toml::from_str(arg).expect("parsed above");
        if let Err(e) = toml::from_str::<RawCase>(arg) {
            let mut lookup = SourceMap::default();
            lookup.add_origin(origin_name.clone(), arg.to_string());
            lookup.record_item(0, "", doc.as_item());
            let mut ce = schema_error(&origin, &e, &lookup);
            if let Some(field) =
                ce.message.strip_prefix("unknown ").and_then(|m| m.split('`').nth(1).or_else(|| m.split(['[', ']']).nth(1)))
            {
                ce.location = Some(locate(&origin, unknown_span(field)));
            }
            if ce.location.is_none() {
                ce.location = Some(locate(&origin, eq + 1..arg.len()));
            }
            ce.key = Some(ce.key.unwrap_or_else(|| key.to_string()));
            return Err(ce);
        }
        map.record_item(o, "", doc.as_item());
        table
    } else {
        let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {value_text}")) {
            Ok(mut t) => t.remove("v").expect("parsed key"),
            Err(_) => toml::Value::String(value_text.to_string()),
        };
        let mut table = toml::Table::new();
        let mut cur = &mut table;
        for p in &parts[..parts.len() - 1] {
            cur = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().expect("fresh table");
        }
        cur.insert(parts[parts.len() - 1].to_string(), value);
        // Validate this override alone against the schema.
        if let Err(e) = RawCase::deserialize(toml::Value::Table(table.clone())) {
            let mut ce = schema_error(&origin, &e, &SourceMap::default());
            let span = match ce.message.strip_prefix("unknown ").and_then(|m| m.split('`').nth(1).or_else(|| m.split(['[', ']']).nth(1))) {
                Some(field) => unknown_span(field),
                None => eq + 1..arg.len(),
            };
            ce.location = Some(locate(&origin, span));
            ce.key = Some(key.to_string());
            if ce.help.is_none() {
                ce.help = key_help(key).map(str::to_string);
            }
            return Err(ce);
        }
        map.clear_under(key);
        map.spans.insert(key.to_string(), (o, eq + 1..arg.len()));
        table
    };
    // Setting a key inside a boundary face replaces the face (see `merge`).
    if let Some(face) = (2..=parts.len()).map(|n| parts[..n].join(".")).find(|p| is_face(p)) {
        if face != key {
            map.clear_under(&face);
            map.spans.insert(face.clone(), (o, 0..arg.len()));
            map.spans.insert(key.to_string(), (o, eq + 1..arg.len()));
        }
    }
    Ok(table)
}

// ---------------------------------------------------------------- loading

/// Loads `path`, follows `extends`, applies `--set` overrides and validates.
pub fn load(path: &Path, sets: &[String]) -> Result<Case, CaseError> {
    let mut map = SourceMap { main: path.display().to_string(), ..Default::default() };
    let mut chain = Vec::new();
    let merged = load_chain(path, &mut map, &mut chain)?;
    let mut merged = merged;
    for s in sets {
        let t = parse_set(s, &mut map)?;
        merge(&mut merged, t, "");
    }
    merged.remove("extends");
    let raw = RawCase::deserialize(toml::Value::Table(merged.clone()))
        .map_err(|e| CaseError::file(path.display().to_string(), format!("after merging overlays: {}", e.message())))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "case".into());
    validate(raw, map, &stem)
}

/// `a/b/../c` as `a/c`, for display only.
fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match (c, out.last()) {
            (Component::ParentDir, Some(Component::Normal(_))) => {
                out.pop();
            }
            (Component::CurDir, _) => {}
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

fn load_chain(path: &Path, map: &mut SourceMap, chain: &mut Vec<(PathBuf, String)>) -> Result<toml::Table, CaseError> {
    let name = path.display().to_string();
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    chain.push((canon, tidy(path).display().to_string()));
    let text = std::fs::read_to_string(path).map_err(|e| {
        let (why, help) = match e.kind() {
            std::io::ErrorKind::NotFound => ("no such file".to_string(), "check the path; it is relative to the current directory"),
            _ if path.is_dir() => ("it is a directory".to_string(), "give the path of a case file (.toml), e.g. cases/heat2d.toml"),
            std::io::ErrorKind::InvalidData => {
                ("not a text file (invalid UTF-8)".to_string(), "a case file is TOML text in UTF-8, e.g. cases/heat2d.toml")
            }
            _ => (e.to_string(), "check the file's permissions"),
        };
        CaseError::file(name.clone(), format!("cannot read case file: {why}")).with_help(help)
    })?;
    let o = map.add_origin(name.clone(), text);
    let origin = map.origins[o].clone();
    let (mut table, doc) = parse_source(&origin)?;
    let extends_err = |message: String, help: String| CaseError {
        location: Some(locate(&origin, doc.as_table().get("extends").and_then(|i| i.span()).unwrap_or(0..0))),
        file: name.clone(),
        key: Some("extends".into()),
        message,
        help: Some(help),
    };
    let mut merged = match table.remove("extends") {
        Some(toml::Value::String(base)) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let base_path = dir.join(&base);
            if !base_path.is_file() {
                // A near miss among the .toml files beside it.
                let siblings: Vec<String> = std::fs::read_dir(base_path.parent().unwrap_or(dir))
                    .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".toml")).collect())
                    .unwrap_or_default();
                let file = base_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                let hint = suggest(&file, &siblings.iter().map(String::as_str).collect::<Vec<_>>())
                    .map(|s| format!("did you mean \"{}\"? ", Path::new(&base).with_file_name(s).display()))
                    .unwrap_or_default();
                let what = if base_path.is_dir() { "is a directory, not a case file" } else { "not found" };
                return Err(extends_err(
                    format!("base case {} {what}", base_path.display()),
                    match dir.as_os_str().is_empty() {
                        true => format!("{hint}`extends` is a path relative to the file that contains it"),
                        false => format!("{hint}`extends` is a path relative to the file that contains it, here {}", dir.display()),
                    },
                ));
            }
            let base_canon = base_path.canonicalize().unwrap_or_else(|_| base_path.clone());
            if chain.iter().any(|(c, _)| *c == base_canon) {
                let names: Vec<&str> = chain.iter().map(|(_, n)| n.as_str()).collect();
                return Err(extends_err(
                    "`extends` forms a cycle".into(),
                    format!("{} -> {}; remove `extends` from one of these files", names.join(" -> "), tidy(&base_path).display()),
                ));
            }
            load_chain(&base_path, map, chain)?
        }
        Some(_) => return Err(extends_err("expected a file path string".into(), "extends = \"base.toml\"".into())),
        None => toml::Table::new(),
    };
    // Record spans after the base so this file's values win.
    map.record_item(o, "", doc.as_item());
    merge(&mut merged, table, "");
    Ok(merged)
}

/// Functions an expression may call (exmex's unary operators plus ours).
fn expr_functions() -> Vec<&'static str> {
    use exmex::MakeOperators;
    crate::expr::Ops::make()
        .iter()
        .filter(|o| o.has_unary() && o.repr().chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|o| o.repr())
        .collect()
}

/// A located error for an expression that does not parse: the offending name
/// underlined where possible, what is allowed in the help line.
fn expr_error(map: &SourceMap, key: &str, text: &str, msg: String) -> CaseError {
    // exmex reports an unknown function as a syntax error; catch it first.
    let funcs = expr_functions();
    let known = |w: &str| funcs.contains(&w) || crate::expr::VARIABLES.contains(&w) || ["pi", "PI", "E", "e"].contains(&w);
    let mut word_start = None;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        let ident = c.is_ascii_alphanumeric() || c == '_';
        match (word_start, ident) {
            (None, true) if !c.is_ascii_digit() && !(i > 0 && (bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.')) => {
                word_start = Some(i)
            }
            (Some(s), false) => {
                word_start = None;
                let w = &text[s..i];
                let called = text[i..].trim_start().starts_with('(');
                if called && !known(w) {
                    let hint = suggest(w, &funcs).map(|f| format!("did you mean `{f}`? ")).unwrap_or_default();
                    let mut e = map.error(
                        key,
                        format!("unknown function `{w}` in expression \"{text}\""),
                        Some(format!("{hint}functions: {}", funcs.join(" "))),
                    );
                    if let Some(l) = e.location.as_mut() {
                        narrow(l, w);
                    }
                    return e;
                }
            }
            _ => {}
        }
    }
    if let Some((a, b, at)) = missing_operator(text, &funcs) {
        let mut e = map.error(
            key,
            format!("missing operator between `{a}` and `{b}` in expression \"{text}\""),
            Some(format!("write `{a}*{b}` for a product: expressions do not multiply implicitly")),
        );
        if let Some(l) = e.location.as_mut() {
            narrow_at(l, text, at, b.chars().count());
        }
        return e;
    }
    let (message, help) = match msg.split_once("; allowed") {
        Some((m, h)) => (plain_exmex(m), Some(format!("allowed{h}"))),
        None => (plain_exmex(&msg), None),
    };
    let mut e = map.error(key, message, help);
    if let (Some(l), Some(name)) = (e.location.as_mut(), msg.strip_prefix("unknown name `").and_then(|r| r.split('`').next())) {
        narrow(l, name);
    }
    e
}

/// exmex's parse errors, without its internals (operator dumps, node counts).
fn plain_exmex(m: &str) -> String {
    let m = match m.find(", Operator {").or_else(|| m.find(" Operator {")) {
        Some(p) => &m[..p],
        None => m,
    };
    if m.contains("one more node than op") {
        return format!("{}: an operator or a number is missing", m.split(": ").next().unwrap_or(m));
    }
    if let Some(p) = m.find("wlog a number/variable cannot be on the right of a closing parenthesis") {
        return format!("{}an operator is missing after `)`", &m[..p]);
    }
    m.to_string()
}

/// Narrows `loc` (a value holding the expression `text`) to `len` characters starting
/// at character `at` of the expression.
fn narrow_at(loc: &mut Location, text: &str, at: usize, len: usize) {
    let snippet: Vec<char> = loc.snippet.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let from = loc.column.saturating_sub(1);
    let to = (from + loc.width).min(snippet.len());
    if t.is_empty() || to < from + t.len() {
        return;
    }
    if let Some(i) = (from..=to - t.len()).find(|&i| snippet[i..i + t.len()] == t[..]) {
        loc.column = i + at + 1;
        loc.width = len.max(1);
    }
}

/// Two operands side by side (`pi x`, `2(x+1)`, `(x)(y)`): the first pair, if any.
fn missing_operator(text: &str, funcs: &[&str]) -> Option<(String, String, usize)> {
    // Tokens: names, numbers (with exponents), single characters.
    let mut toks: Vec<(String, usize)> = Vec::new();
    let cs: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_digit() || c == '.' {
            while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                i += 1;
            }
            if i < cs.len() && (cs[i] == 'e' || cs[i] == 'E') && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == '-' || *d == '+')
            {
                i += 2;
                while i < cs.len() && cs[i].is_ascii_digit() {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
        } else {
            i += 1;
        }
        toks.push((cs[start..i].iter().collect(), start));
    }
    let is_name = |t: &str| t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_');
    let is_func = |t: &str| funcs.contains(&t);
    let operand_end = |t: &str| t == ")" || (is_name(t) && !is_func(t)) || t.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.');
    let operand_start = |t: &str| t == "(" || is_name(t) || t.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.');
    toks.windows(2).find(|w| operand_end(&w[0].0) && operand_start(&w[1].0)).map(|w| (w[0].0.clone(), w[1].0.clone(), w[1].1))
}

/// A string option `numerics.<key>` of model incompressible, `value` as given: refused
/// in other models (which have no `lacks`), the first of `choices` when absent, and
/// otherwise one of them by name (`noun` names an unknown one, `listing` says what is
/// allowed, after a "did you mean" for a near miss).
fn flow_choice<T: Copy>(
    map: &SourceMap,
    (key, value): (&str, Option<&str>),
    (flow, model, lacks): (bool, &str, &str),
    choices: &[(&str, T)],
    noun: &str,
    listing: &str,
) -> Result<T, CaseError> {
    let full = format!("numerics.{key}");
    let Some(v) = value else { return Ok(choices[0].1) };
    if !flow {
        return Err(map.error_at_key(
            &full,
            format!("model {model} has no {lacks}: `{key}` applies to model incompressible"),
            Some("remove it".into()),
        ));
    }
    if let Some((_, c)) = choices.iter().find(|(n, _)| *n == v) {
        return Ok(*c);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = suggest(v, &names).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
    Err(map.error(&full, format!("unknown {noun} \"{v}\""), Some(format!("{hint}{listing}"))))
}

fn validate(raw: RawCase, map: SourceMap, stem: &str) -> Result<Case, CaseError> {
    let err = |key: &str, msg: String, help: &str| map.error(key, msg, (!help.is_empty()).then(|| help.to_string()));

    // [case]
    let model = raw.case.model.clone().unwrap_or_default();
    if raw.case.model.is_none() {
        return Err(err("case", "missing `model`".into(), "add `model = \"heat\"` under [case]; models: heat"));
    }
    if !MODELS.contains(&model.as_str()) {
        let hint = suggest(&model, &MODELS).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
        return Err(err("case.model", format!("unknown model \"{model}\""), &format!("{hint}models: {}", MODELS.join(", "))));
    }
    let name = raw.case.name.clone().unwrap_or_else(|| stem.to_string());
    if name.is_empty() || name.contains(['/', '\\']) {
        return Err(err("case.name", format!("bad name \"{name}\""), "a non-empty name without path separators"));
    }

    // [mesh]
    let cells =
        raw.mesh.cells.clone().ok_or_else(|| err("mesh", "missing `cells`".into(), "e.g. cells = [64, 64] (2D) or [32, 32, 32] (3D)"))?;
    if cells.len() != 2 && cells.len() != 3 {
        return Err(err("mesh.cells", format!("{} entries; a mesh is 2D or 3D", cells.len()), "cells = [nx, ny] or [nx, ny, nz]"));
    }
    let dims = cells.len();
    for (i, &c) in cells.iter().enumerate() {
        if c < 1 {
            return Err(err(
                &format!("mesh.cells[{i}]"),
                format!("cell count must be at least 1, got {c}"),
                "positive integers, one per axis",
            ));
        }
        if c > 1 << 24 {
            return Err(err(&format!("mesh.cells[{i}]"), format!("cell count {c} is too large"), "at most 16777216 cells per axis"));
        }
    }
    let cells: Vec<usize> = cells.iter().map(|&c| c as usize).collect();
    // 2^40 cells (8 TiB per field) is beyond any machine this runs on; larger products
    // would also overflow index arithmetic.
    const MAX_CELLS: usize = 1 << 40;
    if cells.iter().try_fold(1usize, |acc, &c| acc.checked_mul(c)).is_none_or(|n| n > MAX_CELLS) {
        return Err(err(
            "mesh.cells",
            format!("{} cells in all is too many", cells.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" x ")),
            "at most 2^40 (about 1.1e12) cells in total",
        ));
    }
    let vec_of = |key: &str, v: &Option<Vec<f64>>, default: f64| -> Result<Vec<f64>, CaseError> {
        match v {
            None => Ok(vec![default; dims]),
            Some(v) if v.len() == dims => {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(err(&format!("{key}[{i}]"), "must be a finite number".into(), ""));
                }
                Ok(v.clone())
            }
            Some(v) => Err(err(key, format!("{} entries for a {dims}D mesh", v.len()), &format!("one value per axis ({dims})"))),
        }
    };
    let lower = vec_of("mesh.lower", &raw.mesh.lower, 0.0)?;
    let upper = vec_of("mesh.upper", &raw.mesh.upper, 1.0)?;
    for a in 0..dims {
        if upper[a] <= lower[a] {
            return Err(err(
                &format!("mesh.upper[{a}]"),
                format!("upper bound {} is not above lower bound {}", upper[a], lower[a]),
                "each upper coordinate must exceed the lower one",
            ));
        }
    }
    let periodic = match &raw.mesh.periodic {
        None => vec![false; dims],
        Some(p) if p.len() == dims => p.clone(),
        Some(p) => {
            return Err(err(
                "mesh.periodic",
                format!("{} entries for a {dims}D mesh", p.len()),
                &format!("one true/false per axis ({dims})"),
            ))
        }
    };
    let grid = Grid::new(&cells, &lower, &upper, &periodic);

    // [decomposition]
    let ranks = match &raw.decomposition.ranks {
        None => Ranks::Auto,
        Some(RawRanks::Word(w)) if w == "auto" => Ranks::Auto,
        Some(RawRanks::Word(w)) => {
            let hint = suggest(w, &["auto"]).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(
                "decomposition.ranks",
                format!("unknown value \"{w}\""),
                &format!("{hint}\"auto\" or process counts per axis, e.g. [2, 2]"),
            ));
        }
        Some(RawRanks::Grid(p)) => {
            if p.len() != dims {
                return Err(err(
                    "decomposition.ranks",
                    format!("{} entries for a {dims}D mesh", p.len()),
                    "one process count per axis, or \"auto\"",
                ));
            }
            for (i, &x) in p.iter().enumerate() {
                if x < 1 {
                    return Err(err(
                        &format!("decomposition.ranks[{i}]"),
                        format!("process count must be at least 1, got {x}"),
                        "process counts of 1 or more per axis, or \"auto\"",
                    ));
                }
                if x as usize > cells[i] {
                    return Err(err(
                        &format!("decomposition.ranks[{i}]"),
                        format!("{x} processes along an axis of {} cells", cells[i]),
                        "at most one process per cell along each axis",
                    ));
                }
            }
            Ranks::Fixed(p.iter().map(|&x| x as usize).collect())
        }
    };

    // Expressions
    let expr = |key: &str, v: &Option<RawExpr>, default: &str| -> Result<Expr, CaseError> {
        let text = v.as_ref().map(RawExpr::text).unwrap_or_else(|| default.to_string());
        let e = Expr::parse(&text).map_err(|m| expr_error(&map, key, &text, m))?;
        if let Some(c) = e.as_constant().filter(|c| !c.is_finite()) {
            return Err(err(key, format!("expression \"{text}\" evaluates to {c}"), "a finite value"));
        }
        if dims == 2 && e.uses_z() {
            let mut e = err(key, format!("expression \"{text}\" uses z on a 2D mesh"), "variables of a 2D case: x, y, t");
            if let Some(l) = e.location.as_mut() {
                narrow(l, "z");
            }
            return Err(e);
        }
        Ok(e)
    };

    // [physics]
    let poisson = model == "poisson";
    let flow = model == "incompressible";
    let vector = |key: &str, v: &Option<Vec<RawExpr>>| -> Result<Vec<Expr>, CaseError> {
        match v {
            None => (0..dims).map(|_| Ok(Expr::constant(0.0))).collect(),
            Some(list) if list.len() != dims => Err(err(
                key,
                format!("{} components for a {dims}D mesh", list.len()),
                &format!("one component per axis, e.g. {}", if dims == 2 { "[1.0, 0.0]" } else { "[1.0, 0.0, 0.0]" }),
            )),
            Some(list) => list.iter().enumerate().map(|(i, c)| expr(&format!("{key}[{i}]"), &Some(c.clone()), "0")).collect(),
        }
    };
    let flow_only = [("physics.viscosity", raw.physics.viscosity.is_some()), ("physics.body_force", raw.physics.body_force.is_some())];
    if !flow {
        if let Some((key, _)) = flow_only.iter().find(|(_, set)| *set) {
            return Err(map.error_at_key(
                key,
                format!("model {model} has no `{}`", key.rsplit('.').next().unwrap_or(key)),
                Some("it belongs to model incompressible".into()),
            ));
        }
    }
    let (viscosity, body_force) = if flow {
        for (key, set) in [
            ("physics.diffusivity", raw.physics.diffusivity.is_some()),
            ("physics.coefficient", raw.physics.coefficient.is_some()),
            ("physics.source", raw.physics.source.is_some()),
        ] {
            if set {
                return Err(map.error_at_key(
                    key,
                    format!("model incompressible has no `{}`", key.rsplit('.').next().unwrap_or(key)),
                    Some("its physics keys are viscosity (kinematic, a positive number) and body_force (one expression per axis)".into()),
                ));
            }
        }
        let nu = raw.physics.viscosity.ok_or_else(|| {
            err("physics", "missing `viscosity`".into(), "e.g. viscosity = 0.01 (kinematic viscosity, a positive number)")
        })?;
        if !(nu > 0.0 && nu.is_finite()) {
            return Err(err("physics.viscosity", format!("must be positive, got {nu}"), "a positive finite kinematic viscosity"));
        }
        (nu, vector("physics.body_force", &raw.physics.body_force)?)
    } else {
        (0.0, Vec::new())
    };
    let (diffusivity, coefficient) = if flow {
        (0.0, None)
    } else if poisson {
        if raw.physics.diffusivity.is_some() {
            return Err(map.error_at_key(
                "physics.diffusivity",
                "model poisson has no diffusivity".into(),
                Some("it solves -div(k grad phi) = source: give k as physics.coefficient (a number or an expression)".into()),
            ));
        }
        let k = expr("physics.coefficient", &raw.physics.coefficient, "1")?;
        // Positive everywhere: checked at every cell centre (a strided sample of very
        // large meshes; the run checks every cell).
        let stride = ((grid.total_cells() as f64 / 4e6).powf(1.0 / dims as f64).ceil() as usize).max(1);
        let mut bad = None;
        'scan: for kk in (0..grid.cells[2]).step_by(stride) {
            for j in (0..grid.cells[1]).step_by(stride) {
                for i in (0..grid.cells[0]).step_by(stride) {
                    let (x, y, z) = (grid.centre(0, i), grid.centre(1, j), grid.centre(2, kk));
                    let v = k.eval(x, y, z, 0.0);
                    if !(v > 0.0 && v.is_finite()) {
                        bad = Some((v, [x, y, z]));
                        break 'scan;
                    }
                }
            }
        }
        if let Some((v, p)) = bad {
            let at = p[..dims].iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
            return Err(err(
                "physics.coefficient",
                format!("the coefficient must be positive and finite; it is {v} at ({at})"),
                "k > 0 everywhere in the domain",
            ));
        }
        (1.0, Some(k))
    } else {
        if raw.physics.coefficient.is_some() {
            return Err(map.error_at_key(
                "physics.coefficient",
                "model heat takes a constant `diffusivity`, not `coefficient`".into(),
                Some("write diffusivity = 0.1; physics.coefficient belongs to model poisson".into()),
            ));
        }
        let d = raw
            .physics
            .diffusivity
            .ok_or_else(|| err("physics", "missing `diffusivity`".into(), "e.g. diffusivity = 1.0 (a positive number)"))?;
        if !(d > 0.0 && d.is_finite()) {
            return Err(err("physics.diffusivity", format!("must be positive, got {d}"), "a positive finite number"));
        }
        (d, None)
    };
    let source = expr("physics.source", &raw.physics.source, "0")?;

    // [boundary]
    // One face of model incompressible.
    let flow_face = |f: &RawFace, key: &str, a: usize, kind: &str| -> Result<FlowBc, CaseError> {
        let fname = key.rsplit('.').next().unwrap_or(key);
        let allowed: &[&str] = match kind {
            "wall" => &[],
            "moving_wall" | "inlet" => &["velocity"],
            "outlet" => &["pressure"],
            _ => &["velocity", "pressure"],
        };
        for (k, set) in [
            ("value", f.value.is_some()),
            ("gradient", f.gradient.is_some()),
            ("velocity", f.velocity.is_some()),
            ("pressure", f.pressure.is_some()),
        ] {
            if set && !allowed.contains(&k) && FLOW_FACE_KINDS.contains(&kind) {
                let help = match (kind, k) {
                    ("wall", "velocity") => "use type = \"moving_wall\" for a wall that moves (a lid), or remove velocity".to_string(),
                    ("outlet", "velocity") => "an outlet fixes the pressure; the velocity leaves with zero normal gradient. Use type = \"inlet\" to fix the velocity".to_string(),
                    (_, "pressure") => "only an outlet fixes the pressure".to_string(),
                    _ => format!(
                        "faces of model incompressible: {{ type = \"wall\" }}, {{ type = \"moving_wall\", velocity = [...] }}, \
                         {{ type = \"inlet\", velocity = [...] }}, {{ type = \"outlet\", pressure = 0 }}; \"{kind}\" takes {}",
                        if allowed.is_empty() { "no other key".to_string() } else { allowed.join(", ") }
                    ),
                };
                let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                return Err(map.error_at_key(&format!("{key}.{k}"), format!("{article} {kind} face takes no `{k}`"), Some(help)));
            }
        }
        let velocity = |what: &str| -> Result<Vec<Expr>, CaseError> {
            if f.velocity.is_none() {
                let example = if dims == 2 { "[1.0, 0.0]" } else { "[1.0, 0.0, 0.0]" };
                return Err(err(
                    key,
                    format!("{kind} face {fname} needs `velocity` ({what})"),
                    &format!("e.g. {fname} = {{ type = \"{kind}\", velocity = {example} }}: one number or expression per axis"),
                ));
            }
            vector(&format!("{key}.velocity"), &f.velocity)
        };
        match kind {
            "wall" => Ok(FlowBc::Wall { velocity: (0..dims).map(|_| Expr::constant(0.0)).collect(), moving: false }),
            "moving_wall" => {
                let v = velocity("the wall's tangential velocity, e.g. the lid speed")?;
                if v[a].as_constant() != Some(0.0) {
                    return Err(err(
                        &format!("{key}.velocity[{a}]"),
                        format!(
                            "the velocity of wall {fname} has a normal ({}) component \"{}\"; a wall moves along itself",
                            ["x", "y", "z"][a],
                            v[a].source()
                        ),
                        "set the normal component to 0, or use type = \"inlet\" for flow through the face",
                    ));
                }
                Ok(FlowBc::Wall { velocity: v, moving: true })
            }
            "inlet" => Ok(FlowBc::Inlet(velocity("the inflow velocity")?)),
            "outlet" => Ok(FlowBc::Outlet(expr(&format!("{key}.pressure"), &f.pressure, "0")?)),
            "" => Err(err(
                key,
                format!("face {fname} has no `type`"),
                "type = \"wall\", \"moving_wall\", \"inlet\", \"outlet\" or \"periodic\"",
            )),
            "periodic" => Err(err(
                &format!("{key}.type"),
                format!("{fname} is periodic but the {} axis is not", ["x", "y", "z"][a]),
                &format!("set mesh.periodic[{a}] = true (and make both faces periodic)"),
            )),
            other => {
                let kinds = ["wall", "moving_wall", "inlet", "outlet", "periodic"];
                let hint = suggest(other, &kinds).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
                let heat = if ["dirichlet", "neumann"].contains(&other) {
                    "model incompressible sets velocity and pressure together; "
                } else {
                    ""
                };
                Err(err(
                    &format!("{key}.type"),
                    format!("unknown boundary type \"{other}\" for model incompressible"),
                    &format!("{hint}{heat}types: {}", kinds.join(", ")),
                ))
            }
        }
    };
    let faces = [&raw.boundary.xlo, &raw.boundary.xhi, &raw.boundary.ylo, &raw.boundary.yhi, &raw.boundary.zlo, &raw.boundary.zhi];
    let mut boundary = Vec::new();
    let mut flow_boundary = Vec::new();
    for a in 0..dims {
        let mut pair: Vec<Bc> = Vec::new();
        let mut flow_pair: Vec<FlowBc> = Vec::new();
        for side in 0..2 {
            let fname = FACES[2 * a + side];
            let key = format!("boundary.{fname}");
            let face = faces[2 * a + side];
            let axis = ["x", "y", "z"][a];
            if grid.periodic[a] {
                match face {
                    None => {}
                    Some(f)
                        if f.kind.as_deref() == Some("periodic")
                            && f.value.is_none()
                            && f.gradient.is_none()
                            && f.velocity.is_none()
                            && f.pressure.is_none() => {}
                    Some(f) => {
                        return Err(err(
                            &format!("{key}.type"),
                            format!(
                                "{fname} is given as {} but mesh.periodic makes the {axis} axis periodic",
                                f.kind.as_deref().unwrap_or("a boundary")
                            ),
                            &format!(
                            "a periodic axis has no boundary faces: remove {} and {} from [boundary], or set mesh.periodic[{a}] = false",
                            FACES[2 * a],
                            FACES[2 * a + 1]
                        ),
                        ))
                    }
                }
                pair.push(Bc::Periodic);
                flow_pair.push(FlowBc::Periodic);
                continue;
            }
            let Some(f) = face else {
                let example = if flow {
                    format!("{fname} = {{ type = \"wall\" }}")
                } else {
                    format!("{fname} = {{ type = \"dirichlet\", value = \"0\" }} or {{ type = \"neumann\", gradient = \"0\" }}")
                };
                return Err(err(
                    "boundary",
                    format!("no condition for face {fname}"),
                    &format!("add {example}, or make the {axis} axis periodic"),
                ));
            };
            let kind = f.kind.clone().unwrap_or_default();
            if flow {
                let fb = flow_face(f, &key, a, &kind)?;
                pair.push(match &fb {
                    FlowBc::Outlet(p) => Bc::Dirichlet(p.clone()),
                    _ => Bc::Neumann(Expr::constant(0.0)),
                });
                flow_pair.push(fb);
                continue;
            }
            for (k, set) in [("velocity", f.velocity.is_some()), ("pressure", f.pressure.is_some())] {
                if set {
                    return Err(map.error_at_key(
                        &format!("{key}.{k}"),
                        format!("model {model} faces take no `{k}`"),
                        Some("velocity and pressure belong to the faces of model incompressible".into()),
                    ));
                }
            }
            if FLOW_FACE_KINDS.contains(&kind.as_str()) {
                return Err(err(
                    &format!("{key}.type"),
                    format!("\"{kind}\" is a boundary type of model incompressible, not of model {model}"),
                    "types: dirichlet, neumann, periodic",
                ));
            }
            let bc = match kind.as_str() {
                "dirichlet" => {
                    if f.gradient.is_some() {
                        return Err(map.error_at_key(
                            &format!("{key}.gradient"),
                            "a dirichlet face takes `value`, not `gradient`".into(),
                            Some("use type = \"neumann\" for a gradient condition".into()),
                        ));
                    }
                    if f.value.is_none() {
                        return Err(err(
                            &key,
                            format!("dirichlet face {fname} needs `value`"),
                            &format!("e.g. {fname} = {{ type = \"dirichlet\", value = \"0\" }}; the value is a number or an expression"),
                        ));
                    }
                    Bc::Dirichlet(expr(&format!("{key}.value"), &f.value, "0")?)
                }
                "neumann" => {
                    if f.value.is_some() {
                        return Err(map.error_at_key(
                            &format!("{key}.value"),
                            "a neumann face takes `gradient` (du/dn, outward), not `value`".into(),
                            Some("write gradient = ... instead, or use type = \"dirichlet\" for a fixed value".into()),
                        ));
                    }
                    Bc::Neumann(expr(&format!("{key}.gradient"), &f.gradient, "0")?)
                }
                "periodic" => {
                    return Err(err(
                        &format!("{key}.type"),
                        format!("{fname} is periodic but the {axis} axis is not"),
                        &format!("set mesh.periodic[{a}] = true (and make both {axis} faces periodic)"),
                    ))
                }
                "" => {
                    let mut help = "type = \"dirichlet\", \"neumann\" or \"periodic\"".to_string();
                    if map.origin_of(&key).is_some_and(|o| o.starts_with("--set")) {
                        help.push_str(&format!(
                            "; --set replaces a boundary face whole, so give all of it: --set '{key}={{type=\"dirichlet\", value=\"1\"}}'"
                        ));
                    }
                    return Err(err(&key, format!("face {fname} has no `type`"), &help));
                }
                other => {
                    let kinds = ["dirichlet", "neumann", "periodic"];
                    let hint = suggest(other, &kinds).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
                    return Err(err(
                        &format!("{key}.type"),
                        format!("unknown boundary type \"{other}\""),
                        &format!("{hint}types: dirichlet, neumann, periodic"),
                    ));
                }
            };
            pair.push(bc);
        }
        let hi = pair.pop().expect("two sides");
        let lo = pair.pop().expect("two sides");
        boundary.push([lo, hi]);
        if flow {
            let hi = flow_pair.pop().expect("two sides");
            let lo = flow_pair.pop().expect("two sides");
            flow_boundary.push([lo, hi]);
        }
    }
    if dims == 2 {
        for (i, f) in [&raw.boundary.zlo, &raw.boundary.zhi].iter().enumerate() {
            if f.is_some() {
                return Err(map.error_at_key(
                    &format!("boundary.{}", FACES[4 + i]),
                    "a 2D mesh has no z faces".into(),
                    Some("remove it, or give mesh.cells three entries".into()),
                ));
            }
        }
    }

    if flow {
        check_mass_balance(&grid, &flow_boundary, &map)?;
    }

    // [initial]
    let initial_keys = [
        ("temperature", &raw.initial.temperature),
        ("phi", &raw.initial.phi),
        ("velocity_x", &raw.initial.velocity_x),
        ("velocity_y", &raw.initial.velocity_y),
        ("velocity_z", &raw.initial.velocity_z),
        ("pressure", &raw.initial.pressure),
    ];
    let own: &[&str] = match (model.as_str(), dims) {
        ("poisson", _) => &["phi"],
        ("incompressible", 2) => &["velocity_x", "velocity_y", "pressure"],
        ("incompressible", _) => &["velocity_x", "velocity_y", "velocity_z", "pressure"],
        _ => &["temperature"],
    };
    if let Some((name, _)) = initial_keys.iter().find(|(n, v)| v.is_some() && !own.contains(n)) {
        let why = if *name == "velocity_z" && flow { " on a 2D mesh".to_string() } else { String::new() };
        return Err(map.error_at_key(
            &format!("initial.{name}"),
            format!("model {model} has no field \"{name}\"{why}"),
            Some(if own.len() == 1 {
                format!("its field is \"{}\": write initial.{} = ...", own[0], own[0])
            } else {
                format!("its initial values: {}", own.iter().map(|n| format!("initial.{n}")).collect::<Vec<_>>().join(", "))
            }),
        ));
    }
    let initial_of = |name: &str| initial_keys.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).expect("known key");
    let initial = expr(&format!("initial.{}", own[own.len() - 1]), initial_of(own[own.len() - 1]), "0")?;
    let initial_velocity = if flow {
        own[..dims].iter().map(|n| expr(&format!("initial.{n}"), initial_of(n), "0")).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };

    // [numerics]
    let pos = |key: &str, v: Option<f64>| -> Result<Option<f64>, CaseError> {
        match v {
            Some(x) if !(x > 0.0 && x.is_finite()) => Err(err(key, format!("must be positive, got {x}"), "a positive finite number")),
            _ => Ok(v),
        }
    };
    let dt = pos("numerics.dt", raw.numerics.dt)?;
    let dt_max = pos("numerics.dt_max", raw.numerics.dt_max)?;
    let stability_factor = raw.numerics.stability_factor.unwrap_or(0.9);
    if !(stability_factor > 0.0 && stability_factor <= 1.0) {
        return Err(err(
            "numerics.stability_factor",
            format!("must be in (0, 1], got {stability_factor}"),
            "a fraction of the explicit stability limit",
        ));
    }

    let cfl = raw.numerics.cfl.unwrap_or(0.5);
    if raw.numerics.cfl.is_some() && !flow {
        return Err(map.error_at_key(
            "numerics.cfl",
            format!("model {model} has no advection: `cfl` does not apply"),
            Some(if poisson { "remove it".into() } else { "the heat step is set by numerics.stability_factor or numerics.dt".into() }),
        ));
    }
    if !(cfl > 0.0 && cfl <= 1.0) {
        return Err(err(
            "numerics.cfl",
            format!("must be in (0, 1], got {cfl}"),
            "the Courant number dt·Σ|u|/h of the automatic step; the central advection with RK3 is unstable above √3 ≈ 1.7 and \
             inaccurate near it, so at most 1 (default 0.5)",
        ));
    }

    // [control]
    let end_time = pos("control.end_time", raw.control.end_time)?;
    let steady_tolerance = pos("control.steady_tolerance", raw.control.steady_tolerance)?;
    let max_steps = match raw.control.max_steps {
        Some(n) if n < 1 => {
            return Err(err("control.max_steps", format!("must be at least 1, got {n}"), "a whole number of steps, 1 or more"))
        }
        n => n.map(|n| n as u64),
    };
    if !poisson && end_time.is_none() && max_steps.is_none() && steady_tolerance.is_none() {
        return Err(err("control", "no stopping rule".into(), "set end_time, max_steps or steady_tolerance under [control]"));
    }

    // [output]
    let output_dir = PathBuf::from(raw.output.dir.clone().unwrap_or_else(|| format!("runs/{name}")));
    let nonneg = |key: &str, v: Option<i64>| -> Result<u64, CaseError> {
        match v {
            Some(n) if n < 0 => Err(err(key, format!("must be 0 or more, got {n}"), "a step interval (0: first and last only)")),
            n => Ok(n.unwrap_or(0) as u64),
        }
    };
    let output_every = nonneg("output.every", raw.output.every)?;
    let checkpoint_every = nonneg("output.checkpoint_every", raw.output.checkpoint_every)?;
    let fields = model_fields(&model, dims);
    let default_fields = if flow && dims == 3 { &fields[..5] } else { fields };
    let output_fields = raw.output.fields.clone().unwrap_or_else(|| default_fields.iter().map(|s| s.to_string()).collect());
    for (i, f) in output_fields.iter().enumerate() {
        if !fields.contains(&f.as_str()) {
            let hint = suggest(f, fields).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(
                &format!("output.fields[{i}]"),
                format!("model {model} has no field \"{f}\""),
                &format!("{hint}fields: {}", fields.join(", ")),
            ));
        }
    }
    let schemes = ["explicit", "backward_euler", "crank_nicolson"];
    let time_scheme = match raw.numerics.time_scheme.as_deref() {
        None | Some("explicit") => TimeScheme::Explicit,
        Some("backward_euler") => TimeScheme::BackwardEuler,
        Some("crank_nicolson") => TimeScheme::CrankNicolson,
        Some(other) => {
            let hint = suggest(other, &schemes).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(
                "numerics.time_scheme",
                format!("unknown time scheme \"{other}\""),
                &format!("{hint}schemes: {}", schemes.join(", ")),
            ));
        }
    };
    if flow && raw.numerics.time_scheme.is_some() {
        return Err(map.error_at_key(
            "numerics.time_scheme",
            "model incompressible has one time scheme (three-stage Runge–Kutta; numerics.projection sets the pressure solves per step): `time_scheme` does not apply"
                .into(),
            Some("remove it; the step follows numerics.cfl, numerics.stability_factor, numerics.dt and numerics.dt_max".into()),
        ));
    }
    let viscous = flow_choice(
        &map,
        ("viscous", raw.numerics.viscous.as_deref()),
        (flow, &model, "viscous term"),
        &[("explicit", Viscous::Explicit), ("crank_nicolson", Viscous::CrankNicolson)],
        "viscous scheme",
        "schemes: explicit, crank_nicolson",
    )?;
    if raw.numerics.viscous_rtol.is_some() && !flow {
        return Err(map.error_at_key(
            "numerics.viscous_rtol",
            format!("model {model} has no viscous term: `viscous_rtol` applies to model incompressible"),
            Some("remove it".into()),
        ));
    }
    let viscous_rtol = raw.numerics.viscous_rtol.unwrap_or(1e-4);
    if !(viscous_rtol > 0.0 && viscous_rtol < 1.0) {
        return Err(err(
            "numerics.viscous_rtol",
            format!("must be in (0, 1), got {viscous_rtol}"),
            "the relative residual ‖r‖₂/‖b‖₂ at which each viscous Helmholtz solve stops (default 1e-4)",
        ));
    }
    if raw.numerics.steps_per_pass.is_some() && (model != "heat" || time_scheme.implicit()) {
        return Err(map.error_at_key(
            "numerics.steps_per_pass",
            format!(
                "`steps_per_pass` applies to model heat with the explicit scheme, not {}",
                if model == "heat" { format!("time_scheme \"{}\"", time_scheme.name()) } else { format!("model {model}") }
            ),
            Some("remove it".into()),
        ));
    }
    let steps_per_pass = raw.numerics.steps_per_pass.unwrap_or(2);
    if !(1..=2).contains(&steps_per_pass) {
        return Err(err(
            "numerics.steps_per_pass",
            format!("must be 1 or 2, got {steps_per_pass}"),
            "2 (default): two explicit steps per pass over memory where nothing is due between them; 1: one; both give the same bits",
        ));
    }
    let steps_per_pass = steps_per_pass as usize;
    let threads_per_rank = raw.decomposition.threads_per_rank.unwrap_or(1);
    if !(1..=MAX_THREADS_PER_RANK as i64).contains(&threads_per_rank) {
        return Err(err(
            "decomposition.threads_per_rank",
            format!("must be from 1 to {MAX_THREADS_PER_RANK}, got {threads_per_rank}"),
            "1 (default): one thread per rank; more: each rank sweeps its block with that many threads",
        ));
    }
    if threads_per_rank > 1 && (model != "heat" || time_scheme.implicit()) {
        return Err(map.error_at_key(
            "decomposition.threads_per_rank",
            format!(
                "threads inside a rank are implemented for model heat with the explicit scheme, not {}",
                if model == "heat" { format!("time_scheme \"{}\"", time_scheme.name()) } else { format!("model {model}") }
            ),
            Some("set it to 1 (or remove it) and run more ranks instead".into()),
        ));
    }
    let threads_per_rank = threads_per_rank as usize;
    let projection = flow_choice(
        &map,
        ("projection", raw.numerics.projection.as_deref()),
        (flow, &model, "pressure projection"),
        &[("every_stage", Projection::EveryStage), ("final_stage", Projection::FinalStage)],
        "projection",
        "choices: every_stage (a pressure solve per Runge–Kutta stage), final_stage (one per step)",
    )?;
    if poisson && raw.numerics.time_scheme.is_some() {
        return Err(map.error_at_key(
            "numerics.time_scheme",
            "model poisson is steady (one linear solve): `time_scheme` does not apply".into(),
            Some("remove it".into()),
        ));
    }
    if !poisson && !flow && !time_scheme.implicit() && raw.numerics.solver.is_some() {
        return Err(map.error_at_key(
            "numerics.solver",
            "the explicit heat scheme has no linear solver".into(),
            Some("remove [numerics.solver], or set numerics.time_scheme = \"backward_euler\" or \"crank_nicolson\"".into()),
        ));
    }
    if time_scheme.implicit() && raw.numerics.dt.is_none() {
        return Err(err(
            "numerics",
            format!("time_scheme \"{}\" needs a time step", time_scheme.name()),
            "set numerics.dt: an implicit scheme is stable for any step, so tessera does not choose one",
        ));
    }
    if poisson {
        let time_keys = [
            ("numerics.dt", raw.numerics.dt.is_some()),
            ("numerics.dt_max", raw.numerics.dt_max.is_some()),
            ("numerics.stability_factor", raw.numerics.stability_factor.is_some()),
            ("control.end_time", raw.control.end_time.is_some()),
            ("control.max_steps", raw.control.max_steps.is_some()),
            ("control.steady_tolerance", raw.control.steady_tolerance.is_some()),
        ];
        if let Some((key, _)) = time_keys.iter().find(|(_, set)| *set) {
            return Err(map.error_at_key(
                key,
                format!("model poisson is steady (one linear solve): `{}` does not apply", key.rsplit('.').next().unwrap_or(key)),
                Some("remove it; the solve stops on numerics.solver.rtol / atol / max_iterations".into()),
            ));
        }
    }
    let mut raw_solver = raw.numerics.solver.clone().unwrap_or_default();
    if flow && raw_solver.coarse_max.is_none() {
        // One to three pressure solves per step (numerics.projection) of a few iterations
        // each, on meshes of 10⁴-10⁵ cells: a 256-cell dense coarsest solve would cost a
        // fifth of the cycle, a 16-cell one nothing (measured: 18% less run time on the
        // 64² cavity).
        raw_solver.coarse_max = Some(16);
    }
    if flow && raw_solver.agglomerate_below.is_none() {
        // The same small solves on several ranks: gathering the 64² level of a 128²
        // cavity (4096 cells, the poisson default) makes half of every cycle redundant
        // work; gathering from 1024 cells on made its 2-rank run 10-25 % faster.
        raw_solver.agglomerate_below = Some(1024);
    }
    let solver = solver_options(&raw_solver, &map)?;

    // [monitor]
    let mut probes = Vec::new();
    for (i, p) in raw.monitor.probes.clone().unwrap_or_default().iter().enumerate() {
        let key = format!("monitor.probes[{i}]");
        if p.len() != dims {
            return Err(err(&key, format!("probe has {} coordinates on a {dims}D mesh", p.len()), "one coordinate per axis"));
        }
        let mut q = [0.0; 3];
        for a in 0..dims {
            if p[a] < lower[a] || p[a] > upper[a] {
                return Err(err(
                    &key,
                    format!("probe {p:?} lies outside the mesh {lower:?}..{upper:?}"),
                    "probes must be inside the domain",
                ));
            }
            q[a] = p[a];
        }
        probes.push(q);
    }
    if flow && raw.monitor.norms.is_some() {
        return Err(map.error_at_key(
            "monitor.norms",
            "model incompressible records its own monitors: kinetic energy, max |u|, max divergence, CFL, pressure iterations".into(),
            Some("remove monitor.norms; probes record velocity and pressure at points".into()),
        ));
    }
    let norms = if flow { Vec::new() } else { raw.monitor.norms.clone().unwrap_or_else(|| vec!["l2".into(), "max".into(), "min".into()]) };
    for (i, n) in norms.iter().enumerate() {
        if !NORMS.contains(&n.as_str()) {
            let hint = suggest(n, &NORMS).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(
                &format!("monitor.norms[{i}]"),
                format!("unknown norm \"{n}\""),
                &format!("{hint}norms: {}", NORMS.join(", ")),
            ));
        }
    }

    let mut case = Case {
        name,
        model,
        grid,
        ranks,
        diffusivity,
        viscosity,
        body_force,
        initial_velocity,
        cfl,
        coefficient,
        solver,
        time_scheme,
        viscous,
        viscous_rtol,
        steps_per_pass,
        threads_per_rank,
        projection,
        source,
        boundary,
        flow_boundary,
        initial,
        dt,
        dt_max,
        stability_factor,
        end_time,
        max_steps,
        steady_tolerance,
        output_dir,
        output_every,
        output_fields,
        checkpoint_every,
        probes,
        norms,
        resolved: String::new(),
        sources: map,
    };
    if let (Some(dt), true, Viscous::Explicit) = (case.dt, flow, viscous) {
        let limit = case.viscous_dt();
        if dt > limit {
            return Err(case.error_at(
                "numerics.dt",
                format!(
                    "dt = {dt} is above the explicit viscous stability limit {limit:.4e} = 2.5/(viscosity·Σ c/h²) of this mesh; the run would blow up"
                ),
                format!(
                    "use dt <= {limit:.4e}, remove dt to let tessera choose the step from numerics.cfl and stability_factor, or set \
                     numerics.viscous = \"crank_nicolson\" (no viscous limit)"
                ),
            ));
        }
    }
    if let (Some(dt), false, false, false) = (case.dt, poisson, flow, time_scheme.implicit()) {
        let limit = case.stable_dt();
        if dt > limit {
            return Err(case.error_at(
                "numerics.dt",
                format!("dt = {dt} is above the explicit stability limit {limit:.4e} = 1/(2·diffusivity·Σ 1/h²) of this mesh; the run would blow up"),
                format!("use dt <= {limit:.4e}, or remove dt to let tessera choose a stable step (stability_factor × the limit)"),
            ));
        }
    }
    case.resolved = resolved_toml(&case);
    Ok(case)
}

/// Model incompressible without an outlet: what enters through inlets must leave
/// through inlets, or no velocity field satisfies continuity (the pressure equation
/// would have no solution). Checked at t = 0 with the midpoint rule on the face cells.
fn check_mass_balance(grid: &Grid, boundary: &[[FlowBc; 2]], map: &SourceMap) -> Result<(), CaseError> {
    if boundary.iter().flatten().any(|b| matches!(b, FlowBc::Outlet(_))) {
        return Ok(());
    }
    let dims = grid.dims;
    let h = grid.spacing();
    let (mut net, mut gross, mut first) = (0.0f64, 0.0f64, None);
    for a in 0..dims {
        let others: Vec<usize> = (0..dims).filter(|&b| b != a).collect();
        let area: f64 = others.iter().map(|&b| h[b]).product();
        let n1 = grid.cells[others[0]];
        let n2 = others.get(1).map_or(1, |&b| grid.cells[b]);
        for side in 0..2 {
            let FlowBc::Inlet(v) = &boundary[a][side] else { continue };
            first.get_or_insert(FACES[2 * a + side]);
            let inward = if side == 0 { 1.0 } else { -1.0 };
            for j in 0..n1 {
                for k in 0..n2 {
                    let mut p = [0.0; 3];
                    p[a] = if side == 0 { grid.lower[a] } else { grid.upper[a] };
                    p[others[0]] = grid.centre(others[0], j);
                    if let Some(&b) = others.get(1) {
                        p[b] = grid.centre(b, k);
                    }
                    let q = inward * v[a].eval(p[0], p[1], p[2], 0.0) * area;
                    net += q;
                    gross += q.abs();
                }
            }
        }
    }
    match first {
        Some(face) if net.abs() > 1e-9 * gross => Err(map.error(
            &format!("boundary.{face}"),
            format!("the inlets bring in a net volume flux of {net:.4e} per unit time at t = 0 and no face lets it out"),
            Some(
                "an incompressible flow needs somewhere to go: make a face type = \"outlet\" (fixed pressure), or balance the inlets"
                    .into(),
            ),
        )),
        _ => Ok(()),
    }
}

/// `[numerics.solver]` validated into solver options.
fn solver_options(raw: &RawSolver, map: &SourceMap) -> Result<SolverOptions, CaseError> {
    let mut o = SolverOptions::default();
    let err = |key: &str, msg: String, help: String| map.error(&format!("numerics.solver.{key}"), msg, Some(help));
    let pick = |key: &str, v: &Option<String>, allowed: &[&str]| -> Result<Option<usize>, CaseError> {
        let Some(v) = v else { return Ok(None) };
        match allowed.iter().position(|a| a.eq_ignore_ascii_case(v)) {
            Some(i) => Ok(Some(i)),
            None => {
                let hint = suggest(v, allowed).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
                Err(err(key, format!("unknown {key} \"{v}\""), format!("{hint}{key}: {}", allowed.join(", "))))
            }
        }
    };
    if let Some(i) = pick("method", &raw.method, &["cg", "cg1", "fcg", "bicgstab", "mg"])? {
        o.method = [Method::Cg, Method::Cg1, Method::Fcg, Method::BiCgStab, Method::Mg][i];
    }
    if let Some(i) = pick("preconditioner", &raw.preconditioner, &["mg", "jacobi", "none"])? {
        o.precond = [Precond::Mg, Precond::Jacobi, Precond::None][i];
    }
    if let Some(i) = pick("cycle", &raw.cycle, &["V", "W", "F"])? {
        o.mg.cycle = [Cycle::V, Cycle::W, Cycle::F][i];
    }
    if let Some(i) = pick("smoother", &raw.smoother, &["rbgs", "chebyshev"])? {
        o.mg.smoother = [Smoother::Rbgs, Smoother::Chebyshev][i];
    }
    if let Some(i) = pick("interpolation", &raw.interpolation, &["cubic", "linear"])? {
        o.mg.interpolation = [Interpolation::Cubic, Interpolation::Linear][i];
    }
    for (key, v, dst) in [("rtol", raw.rtol, &mut o.rtol), ("atol", raw.atol, &mut o.atol)] {
        if let Some(x) = v {
            if !(x.is_finite() && x >= 0.0 && x < 1.0) {
                return Err(err(key, format!("must be in [0, 1), got {x}"), "a small non-negative number such as 1e-8".into()));
            }
            *dst = x;
        }
    }
    if o.rtol == 0.0 && o.atol == 0.0 {
        return Err(err(
            "rtol",
            "rtol and atol are both 0 (atol defaults to 0): the solve could never stop early".into(),
            "set rtol = 1e-8 (or a positive atol)".into(),
        ));
    }
    let counts = [
        ("max_iterations", raw.max_iterations, 1, &mut o.max_iterations),
        ("pre_smooth", raw.pre_smooth, 0, &mut o.mg.pre_smooth),
        ("post_smooth", raw.post_smooth, 0, &mut o.mg.post_smooth),
        ("coarse_max", raw.coarse_max, 1, &mut o.mg.coarse_max),
        ("agglomerate_below", raw.agglomerate_below, 0, &mut o.mg.agglomerate_below),
    ];
    for (key, v, min, dst) in counts {
        if let Some(n) = v {
            if n < min || n > 1_000_000_000 {
                return Err(err(
                    key,
                    format!("must be a whole number from {min} up, got {n}"),
                    format!("e.g. {key} = {}", (*dst).max(min as usize)),
                ));
            }
            *dst = n as usize;
        }
    }
    if o.mg.coarse_max > 4096 {
        return Err(err(
            "coarse_max",
            format!("{} cells is too many for the dense coarsest solve", o.mg.coarse_max),
            "at most 4096 (default 256)".into(),
        ));
    }
    if o.mg.pre_smooth + o.mg.post_smooth == 0 && (o.precond == Precond::Mg || o.method == Method::Mg) {
        return Err(err(
            "pre_smooth",
            "no smoothing at all: multigrid cannot converge".into(),
            "pre_smooth + post_smooth must be at least 1".into(),
        ));
    }
    o.reproducible = raw.reproducible.unwrap_or(false);
    o.error_if_not_converged = raw.error_if_not_converged.unwrap_or(false);
    Ok(o)
}

/// `[numerics.solver]` with every default written out.
fn solver_table(o: &SolverOptions) -> toml::Table {
    use toml::Value as V;
    let mut t = toml::Table::new();
    let method = match o.method {
        Method::Cg => "cg",
        Method::Cg1 => "cg1",
        Method::Fcg => "fcg",
        Method::BiCgStab => "bicgstab",
        Method::Mg => "mg",
    };
    let pc = match o.precond {
        Precond::Mg => "mg",
        Precond::Jacobi => "jacobi",
        Precond::None => "none",
    };
    let cycle = match o.mg.cycle {
        Cycle::V => "V",
        Cycle::W => "W",
        Cycle::F => "F",
    };
    let sm = match o.mg.smoother {
        Smoother::Rbgs => "rbgs",
        Smoother::Chebyshev => "chebyshev",
    };
    let interp = match o.mg.interpolation {
        Interpolation::Linear => "linear",
        Interpolation::Cubic => "cubic",
    };
    for (k, v) in [
        ("method", V::String(method.into())),
        ("preconditioner", V::String(pc.into())),
        ("rtol", V::Float(o.rtol)),
        ("atol", V::Float(o.atol)),
        ("max_iterations", V::Integer(o.max_iterations as i64)),
        ("reproducible", V::Boolean(o.reproducible)),
        ("error_if_not_converged", V::Boolean(o.error_if_not_converged)),
        ("cycle", V::String(cycle.into())),
        ("smoother", V::String(sm.into())),
        ("interpolation", V::String(interp.into())),
        ("pre_smooth", V::Integer(o.mg.pre_smooth as i64)),
        ("post_smooth", V::Integer(o.mg.post_smooth as i64)),
        ("coarse_max", V::Integer(o.mg.coarse_max as i64)),
        ("agglomerate_below", V::Integer(o.mg.agglomerate_below as i64)),
    ] {
        t.insert(k.into(), v);
    }
    t
}

/// The resolved case as TOML, with every default written out.
fn resolved_toml(c: &Case) -> String {
    use toml::Value as V;
    let d = c.grid.dims;
    let mut doc = toml::Table::new();
    let mut t = |name: &str, kv: Vec<(&str, V)>| {
        let mut s = toml::Table::new();
        for (k, v) in kv {
            s.insert(k.to_string(), v);
        }
        doc.insert(name.to_string(), V::Table(s));
    };
    let ints = |v: &[usize]| V::Array(v.iter().map(|&x| V::Integer(x as i64)).collect());
    let floats = |v: &[f64]| V::Array(v.iter().map(|&x| V::Float(x)).collect());
    let s = |x: &str| V::String(x.to_string());
    t("case", vec![("name", s(&c.name)), ("model", s(&c.model))]);
    t(
        "mesh",
        vec![
            ("cells", ints(&c.grid.cells[..d])),
            ("lower", floats(&c.grid.lower[..d])),
            ("upper", floats(&c.grid.upper[..d])),
            ("periodic", V::Array(c.grid.periodic[..d].iter().map(|&b| V::Boolean(b)).collect())),
        ],
    );
    t(
        "decomposition",
        vec![
            (
                "ranks",
                match &c.ranks {
                    Ranks::Auto => s("auto"),
                    Ranks::Fixed(p) => ints(p),
                },
            ),
            ("threads_per_rank", V::Integer(c.threads_per_rank as i64)),
        ],
    );
    let exprs = |v: &[Expr]| V::Array(v.iter().map(|e| s(e.source())).collect());
    let flow = c.model == "incompressible";
    match &c.coefficient {
        _ if flow => t("physics", vec![("viscosity", V::Float(c.viscosity)), ("body_force", exprs(&c.body_force))]),
        Some(k) => t("physics", vec![("coefficient", s(k.source())), ("source", s(c.source.source()))]),
        None => t("physics", vec![("diffusivity", V::Float(c.diffusivity)), ("source", s(c.source.source()))]),
    }
    let mut faces = Vec::new();
    for a in 0..d {
        for side in 0..2 {
            let mut f = toml::Table::new();
            match &c.boundary[a][side] {
                Bc::Dirichlet(e) => {
                    f.insert("type".into(), s("dirichlet"));
                    f.insert("value".into(), s(e.source()));
                }
                Bc::Neumann(e) => {
                    f.insert("type".into(), s("neumann"));
                    f.insert("gradient".into(), s(e.source()));
                }
                Bc::Periodic => {
                    f.insert("type".into(), s("periodic"));
                }
            }
            if flow {
                f.clear();
                match &c.flow_boundary[a][side] {
                    FlowBc::Periodic => {
                        f.insert("type".into(), s("periodic"));
                    }
                    FlowBc::Wall { velocity, moving } => {
                        f.insert("type".into(), s(if *moving { "moving_wall" } else { "wall" }));
                        if *moving {
                            f.insert("velocity".into(), exprs(velocity));
                        }
                    }
                    FlowBc::Inlet(v) => {
                        f.insert("type".into(), s("inlet"));
                        f.insert("velocity".into(), exprs(v));
                    }
                    FlowBc::Outlet(p) => {
                        f.insert("type".into(), s("outlet"));
                        f.insert("pressure".into(), s(p.source()));
                    }
                }
            }
            faces.push((FACES[2 * a + side], V::Table(f)));
        }
    }
    t("boundary", faces);
    if flow {
        let mut init: Vec<(&str, V)> =
            ["velocity_x", "velocity_y", "velocity_z"][..d].iter().zip(&c.initial_velocity).map(|(n, e)| (*n, s(e.source()))).collect();
        init.push(("pressure", s(c.initial.source())));
        t("initial", init);
    } else {
        t("initial", vec![(model_fields(&c.model, d)[0], s(c.initial.source()))]);
    }
    let mut num = Vec::new();
    if flow {
        num.push(("cfl", V::Float(c.cfl)));
        num.push(("viscous", V::String(c.viscous.name().into())));
        if c.viscous == Viscous::CrankNicolson {
            num.push(("viscous_rtol", V::Float(c.viscous_rtol)));
        } else {
            num.push(("stability_factor", V::Float(c.stability_factor)));
        }
        num.push(("projection", V::String(c.projection.name().into())));
        num.push(("solver", V::Table(solver_table(&c.solver))));
    } else if c.model == "poisson" {
        num.push(("solver", V::Table(solver_table(&c.solver))));
    } else if c.time_scheme.implicit() {
        num.push(("time_scheme", V::String(c.time_scheme.name().into())));
        num.push(("solver", V::Table(solver_table(&c.solver))));
    } else {
        num.push(("time_scheme", V::String(c.time_scheme.name().into())));
        num.push(("stability_factor", V::Float(c.stability_factor)));
        num.push(("steps_per_pass", V::Integer(c.steps_per_pass as i64)));
    }
    if let Some(x) = c.dt {
        num.push(("dt", V::Float(x)));
    }
    if let Some(x) = c.dt_max {
        num.push(("dt_max", V::Float(x)));
    }
    t("numerics", num);
    let mut ctl = Vec::new();
    if let Some(x) = c.end_time {
        ctl.push(("end_time", V::Float(x)));
    }
    if let Some(x) = c.max_steps {
        ctl.push(("max_steps", V::Integer(x as i64)));
    }
    if let Some(x) = c.steady_tolerance {
        ctl.push(("steady_tolerance", V::Float(x)));
    }
    if c.model != "poisson" {
        t("control", ctl);
    }
    t(
        "output",
        vec![
            ("dir", s(&c.output_dir.display().to_string())),
            ("every", V::Integer(c.output_every as i64)),
            ("fields", V::Array(c.output_fields.iter().map(|f| s(f)).collect())),
            ("checkpoint_every", V::Integer(c.checkpoint_every as i64)),
        ],
    );
    t(
        "monitor",
        vec![
            ("probes", V::Array(c.probes.iter().map(|p| floats(&p[..d])).collect())),
            ("norms", V::Array(c.norms.iter().map(|n| s(n)).collect())),
        ]
        .into_iter()
        .filter(|(k, _)| !(flow && *k == "norms"))
        .collect(),
    );
    toml::to_string(&doc).expect("a table serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tessera-case-{}-{tag}", std::process::id()))
    }

    const GOOD: &str = r#"
[case]
name = "t"
model = "heat"
[mesh]
cells = [16, 8]
periodic = [false, true]
[physics]
diffusivity = 1.0
[boundary]
xlo = { type = "dirichlet", value = "sin(pi*y)" }
xhi = { type = "neumann", gradient = 0 }
[control]
end_time = 0.1
"#;

    #[test]
    fn loads_good_case_with_defaults() {
        let p = write(&tmpdir("good"), "good.toml", GOOD);
        let c = load(&p, &[]).unwrap();
        assert_eq!(c.grid.cells, [16, 8, 1]);
        assert!(matches!(c.boundary[1][0], Bc::Periodic));
        assert_eq!(c.output_dir, PathBuf::from("runs/t"));
        // The resolved text loads again to the same case.
        let p2 = write(&tmpdir("good"), "resolved.toml", &c.resolved);
        let c2 = load(&p2, &[]).unwrap();
        assert_eq!(c2.resolved, c.resolved);
    }

    #[test]
    fn extends_and_set_override() {
        let d = tmpdir("ext");
        write(&d, "base.toml", GOOD);
        let p = write(&d, "child.toml", "extends = \"base.toml\"\n[physics]\ndiffusivity = 2.0\n");
        let c = load(&p, &["mesh.cells=[32, 4]".into(), "case.name=renamed".into()]).unwrap();
        assert_eq!(c.diffusivity, 2.0);
        assert_eq!(c.grid.cells[..2], [32, 4]);
        assert_eq!(c.name, "renamed");
        // Errors in the base file point into the base file.
        write(&d, "bad_base.toml", &GOOD.replace("diffusivity = 1.0", "diffusivity = -1.0"));
        let p = write(&d, "child2.toml", "extends = \"bad_base.toml\"\n");
        let e = load(&p, &[]).unwrap_err();
        let loc = e.location.unwrap();
        assert!(loc.file.ends_with("bad_base.toml") && loc.line == 9, "{loc:?}");
    }

    #[test]
    fn unknown_key_gets_position_and_suggestion() {
        let p = write(&tmpdir("typo"), "typo.toml", &GOOD.replace("diffusivity = 1.0", "difusivity = 1.0"));
        let e = load(&p, &[]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("typo.toml:9:1"), "{s}");
        assert!(s.contains("did you mean `diffusivity`"), "{s}");
    }

    #[test]
    fn schema_table_matches_the_raw_structs() {
        // SCHEMA drives "belongs in [section]" hints; serde's own key lists must agree.
        let expected = |text: &str| -> Vec<String> {
            let e = toml::from_str::<RawCase>(text).unwrap_err();
            let m = e.message().to_string();
            m.split("expected ").nth(1).unwrap_or("").split('`').skip(1).step_by(2).map(str::to_string).collect()
        };
        let mut top = vec!["extends".to_string()];
        top.extend(SCHEMA.iter().filter(|(s, _)| !s.contains('.')).map(|(s, _)| s.to_string()));
        assert_eq!(expected("zz_unknown = 1"), top);
        for (section, keys) in SCHEMA {
            assert_eq!(expected(&format!("[{section}]\nzz_unknown = 1")), keys.to_vec(), "[{section}]");
        }
    }

    #[test]
    fn set_errors_name_the_argument() {
        let p = write(&tmpdir("set"), "s.toml", GOOD);
        let e = load(&p, &["physics.difusivity=2".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--set physics.difusivity=2:1:1"), "{e}");
        assert!(e.contains("did you mean `diffusivity`"), "{e}");
        let e = load(&p, &["physics.diffusivity=-2".into()]).unwrap_err().to_string();
        assert!(e.contains("--set physics.diffusivity=-2:1:21") && e.contains("must be positive"), "{e}");
    }
}
