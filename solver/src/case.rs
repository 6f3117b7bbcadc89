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
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhysics {
    diffusivity: Option<f64>,
    source: Option<RawExpr>,
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
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInitial {
    temperature: Option<RawExpr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumerics {
    dt: Option<f64>,
    dt_max: Option<f64>,
    stability_factor: Option<f64>,
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
pub const MODELS: [&str; 1] = ["heat"];
/// Fields the heat model writes.
pub const HEAT_FIELDS: [&str; 1] = ["temperature"];
/// Norms a monitor can record.
pub const NORMS: [&str; 5] = ["l2", "max", "min", "mean", "integral"];
const FACES: [&str; 6] = ["xlo", "xhi", "ylo", "yhi", "zlo", "zhi"];

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
    /// Diffusivity (m²/s).
    pub diffusivity: f64,
    /// Volumetric source term.
    pub source: Expr,
    /// Boundary conditions, `[axis][side]` with side 0 = low, 1 = high.
    pub boundary: Vec<[Bc; 2]>,
    /// Initial temperature.
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

    /// Human-readable boundary summary for reports.
    pub fn describe_bc(&self, axis: usize, side: usize) -> String {
        match &self.boundary[axis][side] {
            Bc::Dirichlet(e) => format!("dirichlet {}", e.source()),
            Bc::Neumann(e) => format!("neumann {}", e.source()),
            Bc::Periodic => "periodic".into(),
        }
    }

    /// The stable explicit time-step limit for the heat equation.
    pub fn stable_dt(&self) -> f64 {
        let h = self.grid.spacing();
        let s: f64 = (0..self.grid.dims).map(|a| 1.0 / (h[a] * h[a])).sum();
        1.0 / (2.0 * self.diffusivity * s)
    }
}

// ---------------------------------------------------------------- sources and spans

/// One source of case text: a file or a `--set` argument.
#[derive(Clone, Debug)]
struct Origin {
    name: String,
    text: String,
}

/// For every dotted key (and array element `key[i]`), the origin and byte span of the
/// value that set it last.
#[derive(Clone, Debug, Default)]
struct SourceMap {
    origins: Vec<Origin>,
    spans: HashMap<String, (usize, Range<usize>)>,
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

impl SourceMap {
    fn add_origin(&mut self, name: String, text: String) -> usize {
        self.origins.push(Origin { name, text });
        self.origins.len() - 1
    }

    fn record_item(&mut self, origin: usize, path: &str, item: &toml_edit::Item) {
        match item {
            toml_edit::Item::Table(t) => {
                if let Some(sp) = t.span() {
                    self.spans.insert(path.to_string(), (origin, sp));
                }
                for (k, v) in t.iter() {
                    self.record_item(origin, &join(path, k), v);
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
                    self.record_value(origin, &join(path, k), e);
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

    fn error(&self, key: &str, message: String, help: Option<String>) -> CaseError {
        CaseError {
            location: self.location(key),
            file: self.main.clone(),
            key: Some(key.to_string()),
            message,
            help,
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Turns a serde/TOML error into a located [`CaseError`] with allowed keys and a
/// "did you mean" for unknown fields.
fn schema_error(origin: &Origin, err: &toml::de::Error) -> CaseError {
    let raw = err.message().trim().to_string();
    let mut message = raw.clone();
    let mut help = None;
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = raw.split("expected ").nth(1).unwrap_or("").split('`').skip(1).step_by(2).collect();
        message = format!("unknown key `{field}`");
        let allowed = if expected.is_empty() { "no keys here".to_string() } else { expected.join(", ") };
        help = Some(match suggest(field, &expected) {
            Some(s) => format!("did you mean `{s}`? allowed keys: {allowed}"),
            None => format!("allowed keys: {allowed}"),
        });
    } else if raw.contains("untagged enum RawExpr") {
        message = "expected a number or an expression string such as \"sin(pi*x)\"".into();
    } else if raw.contains("untagged enum RawRanks") {
        message = "expected \"auto\" or a list of process counts per axis, e.g. [2, 1]".into();
    } else if let Some(p) = raw.find("invalid type: ") {
        message = raw[p..].replace("invalid type: ", "wrong type: found ").replace(", expected", ", expected");
    }
    let location = err.span().map(|sp| locate(origin, sp));
    CaseError { location, file: origin.name.clone(), key: None, message, help }
}

fn parse_source(origin: &Origin) -> Result<(toml::Table, toml_edit::Document<String>), CaseError> {
    let doc = toml_edit::Document::parse(origin.text.clone()).map_err(|e| {
        let location = e.span().map(|sp| locate(origin, sp));
        CaseError {
            location,
            file: origin.name.clone(),
            key: None,
            message: format!("TOML syntax error: {}", e.message().trim()),
            help: Some("see cases/heat2d.toml for a complete example".into()),
        }
    })?;
    let table: toml::Table = toml::from_str(&origin.text).map_err(|e| schema_error(origin, &e))?;
    // Check the schema on this source alone so errors point into it.
    toml::from_str::<RawCase>(&origin.text).map_err(|e| schema_error(origin, &e))?;
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
            message: format!("bad key `{key}`"),
            help: Some("keys are dotted paths such as physics.diffusivity".into()),
        });
    }
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {value_text}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(value_text.to_string()),
    };
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    let mut table = toml::Table::new();
    let mut cur = &mut table;
    for p in &parts[..parts.len() - 1] {
        cur = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().expect("fresh table");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    // Validate this override alone against the schema.
    if let Err(e) = RawCase::deserialize(toml::Value::Table(table.clone())) {
        let fake = Origin { name: origin_name.clone(), text: arg.to_string() };
        let mut ce = schema_error(&fake, &e);
        let span = if ce.message.starts_with("unknown key") { 0..eq } else { eq + 1..arg.len() };
        ce.location = Some(locate(&fake, span));
        ce.key = Some(key.to_string());
        return Err(ce);
    }
    map.spans.insert(key.to_string(), (o, eq + 1..arg.len()));
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

fn load_chain(path: &Path, map: &mut SourceMap, chain: &mut Vec<PathBuf>) -> Result<toml::Table, CaseError> {
    let name = path.display().to_string();
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if chain.contains(&canon) {
        return Err(CaseError::file(name, "`extends` forms a cycle")
            .with_help(format!("chain: {}", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))));
    }
    chain.push(canon);
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        };
        CaseError::file(name.clone(), format!("cannot read case file: {why}"))
    })?;
    let o = map.add_origin(name.clone(), text);
    let origin = map.origins[o].clone();
    let (mut table, doc) = parse_source(&origin)?;
    let mut merged = match table.remove("extends") {
        Some(toml::Value::String(base)) => {
            let base_path = path.parent().unwrap_or(Path::new(".")).join(&base);
            if !base_path.is_file() {
                let sp = doc.as_table().get("extends").and_then(|i| i.span()).unwrap_or(0..0);
                return Err(CaseError {
                    location: Some(locate(&origin, sp)),
                    file: name,
                    key: Some("extends".into()),
                    message: format!("base case {} not found", base_path.display()),
                    help: Some("`extends` is a path relative to the file that contains it".into()),
                });
            }
            load_chain(&base_path, map, chain)?
        }
        Some(_) => {
            let sp = doc.as_table().get("extends").and_then(|i| i.span()).unwrap_or(0..0);
            return Err(CaseError {
                location: Some(locate(&origin, sp)),
                file: name,
                key: Some("extends".into()),
                message: "expected a file path string".into(),
                help: None,
            });
        }
        None => toml::Table::new(),
    };
    // Record spans after the base so this file's values win.
    map.record_item(o, "", doc.as_item());
    merge(&mut merged, table, "");
    Ok(merged)
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
    let cells = raw.mesh.cells.clone().ok_or_else(|| err("mesh", "missing `cells`".into(), "e.g. cells = [64, 64] (2D) or [32, 32, 32] (3D)"))?;
    if cells.len() != 2 && cells.len() != 3 {
        return Err(err("mesh.cells", format!("{} entries; a mesh is 2D or 3D", cells.len()), "cells = [nx, ny] or [nx, ny, nz]"));
    }
    let dims = cells.len();
    for (i, &c) in cells.iter().enumerate() {
        if c < 1 {
            return Err(err(&format!("mesh.cells[{i}]"), format!("cell count must be at least 1, got {c}"), "positive integers, one per axis"));
        }
        if c > 1 << 24 {
            return Err(err(&format!("mesh.cells[{i}]"), format!("cell count {c} is too large"), "at most 16777216 cells per axis"));
        }
    }
    let cells: Vec<usize> = cells.iter().map(|&c| c as usize).collect();
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
        Some(p) => return Err(err("mesh.periodic", format!("{} entries for a {dims}D mesh", p.len()), &format!("one true/false per axis ({dims})"))),
    };
    let grid = Grid::new(&cells, &lower, &upper, &periodic);

    // [decomposition]
    let ranks = match &raw.decomposition.ranks {
        None => Ranks::Auto,
        Some(RawRanks::Word(w)) if w == "auto" => Ranks::Auto,
        Some(RawRanks::Word(w)) => {
            return Err(err("decomposition.ranks", format!("unknown value \"{w}\""), "\"auto\" or process counts per axis, e.g. [2, 2]"))
        }
        Some(RawRanks::Grid(p)) => {
            if p.len() != dims {
                return Err(err("decomposition.ranks", format!("{} entries for a {dims}D mesh", p.len()), "one process count per axis, or \"auto\""));
            }
            for (i, &x) in p.iter().enumerate() {
                if x < 1 {
                    return Err(err(&format!("decomposition.ranks[{i}]"), format!("process count must be at least 1, got {x}"), ""));
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
        let e = Expr::parse(&text).map_err(|m| err(key, m, ""))?;
        if dims == 2 && e.uses_z() {
            return Err(err(key, format!("expression \"{text}\" uses z on a 2D mesh"), "variables of a 2D case: x, y, t"));
        }
        Ok(e)
    };

    // [physics]
    let diffusivity = raw.physics.diffusivity.ok_or_else(|| err("physics", "missing `diffusivity`".into(), "e.g. diffusivity = 1.0 (a positive number)"))?;
    if !(diffusivity > 0.0 && diffusivity.is_finite()) {
        return Err(err("physics.diffusivity", format!("must be positive, got {diffusivity}"), "a positive finite number"));
    }
    let source = expr("physics.source", &raw.physics.source, "0")?;

    // [boundary]
    let faces = [&raw.boundary.xlo, &raw.boundary.xhi, &raw.boundary.ylo, &raw.boundary.yhi, &raw.boundary.zlo, &raw.boundary.zhi];
    let mut boundary = Vec::new();
    for a in 0..dims {
        let mut pair: Vec<Bc> = Vec::new();
        for side in 0..2 {
            let fname = FACES[2 * a + side];
            let key = format!("boundary.{fname}");
            let face = faces[2 * a + side];
            let axis = ["x", "y", "z"][a];
            if grid.periodic[a] {
                match face {
                    None => {}
                    Some(f) if f.kind.as_deref() == Some("periodic") && f.value.is_none() && f.gradient.is_none() => {}
                    Some(f) => {
                        return Err(err(
                            &format!("{key}.type"),
                            format!(
                                "{fname} is given as {} but mesh.periodic makes the {axis} axis periodic",
                                f.kind.as_deref().unwrap_or("a boundary")
                            ),
                            &format!("remove boundary.{fname}, or set mesh.periodic[{a}] = false"),
                        ))
                    }
                }
                pair.push(Bc::Periodic);
                continue;
            }
            let Some(f) = face else {
                return Err(err(
                    "boundary",
                    format!("no condition for face {fname}"),
                    &format!("add {fname} = {{ type = \"dirichlet\", value = \"0\" }} or {{ type = \"neumann\", gradient = \"0\" }}, or make the {axis} axis periodic"),
                ));
            };
            let kind = f.kind.clone().unwrap_or_default();
            let bc = match kind.as_str() {
                "dirichlet" => {
                    if f.gradient.is_some() {
                        return Err(err(&format!("{key}.gradient"), "a dirichlet face takes `value`, not `gradient`".into(), "use type = \"neumann\" for a gradient condition"));
                    }
                    if f.value.is_none() {
                        return Err(err(&key, format!("dirichlet face {fname} needs `value`"), "value = a number or an expression in x, y, z, t"));
                    }
                    Bc::Dirichlet(expr(&format!("{key}.value"), &f.value, "0")?)
                }
                "neumann" => {
                    if f.value.is_some() {
                        return Err(err(&format!("{key}.value"), "a neumann face takes `gradient` (du/dn, outward), not `value`".into(), "use type = \"dirichlet\" for a fixed value"));
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
                "" => return Err(err(&key, format!("face {fname} has no `type`"), "type = \"dirichlet\", \"neumann\" or \"periodic\"")),
                other => {
                    let kinds = ["dirichlet", "neumann", "periodic"];
                    let hint = suggest(other, &kinds).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
                    return Err(err(&format!("{key}.type"), format!("unknown boundary type \"{other}\""), &format!("{hint}types: dirichlet, neumann, periodic")));
                }
            };
            pair.push(bc);
        }
        let hi = pair.pop().expect("two sides");
        let lo = pair.pop().expect("two sides");
        boundary.push([lo, hi]);
    }
    if dims == 2 {
        for (i, f) in [&raw.boundary.zlo, &raw.boundary.zhi].iter().enumerate() {
            if f.is_some() {
                return Err(err(&format!("boundary.{}", FACES[4 + i]), "a 2D mesh has no z faces".into(), "remove it, or give mesh.cells three entries"));
            }
        }
    }

    // [initial]
    let initial = expr("initial.temperature", &raw.initial.temperature, "0")?;

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
        return Err(err("numerics.stability_factor", format!("must be in (0, 1], got {stability_factor}"), "a fraction of the explicit stability limit"));
    }

    // [control]
    let end_time = pos("control.end_time", raw.control.end_time)?;
    let steady_tolerance = pos("control.steady_tolerance", raw.control.steady_tolerance)?;
    let max_steps = match raw.control.max_steps {
        Some(n) if n < 1 => return Err(err("control.max_steps", format!("must be at least 1, got {n}"), "")),
        n => n.map(|n| n as u64),
    };
    if end_time.is_none() && max_steps.is_none() && steady_tolerance.is_none() {
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
    let output_fields = raw.output.fields.clone().unwrap_or_else(|| HEAT_FIELDS.iter().map(|s| s.to_string()).collect());
    for (i, f) in output_fields.iter().enumerate() {
        if !HEAT_FIELDS.contains(&f.as_str()) {
            let hint = suggest(f, &HEAT_FIELDS).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(&format!("output.fields[{i}]"), format!("model heat has no field \"{f}\""), &format!("{hint}fields: {}", HEAT_FIELDS.join(", "))));
        }
    }

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
                return Err(err(&key, format!("probe {p:?} lies outside the mesh {lower:?}..{upper:?}"), "probes must be inside the domain"));
            }
            q[a] = p[a];
        }
        probes.push(q);
    }
    let norms = raw.monitor.norms.clone().unwrap_or_else(|| vec!["l2".into(), "max".into(), "min".into()]);
    for (i, n) in norms.iter().enumerate() {
        if !NORMS.contains(&n.as_str()) {
            let hint = suggest(n, &NORMS).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
            return Err(err(&format!("monitor.norms[{i}]"), format!("unknown norm \"{n}\""), &format!("{hint}norms: {}", NORMS.join(", "))));
        }
    }

    let mut case = Case {
        name,
        model,
        grid,
        ranks,
        diffusivity,
        source,
        boundary,
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
    if let Some(dt) = case.dt {
        let limit = case.stable_dt();
        if dt > limit {
            return Err(case.error_at(
                "numerics.dt",
                format!("dt = {dt:e} exceeds the explicit stability limit {limit:.6e} (h²/(2·d·diffusivity)); the run would blow up"),
                "lower dt, or remove it to let tessera choose a stable step",
            ));
        }
    }
    case.resolved = resolved_toml(&case);
    Ok(case)
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
        vec![(
            "ranks",
            match &c.ranks {
                Ranks::Auto => s("auto"),
                Ranks::Fixed(p) => ints(p),
            },
        )],
    );
    t("physics", vec![("diffusivity", V::Float(c.diffusivity)), ("source", s(c.source.source()))]);
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
            faces.push((FACES[2 * a + side], V::Table(f)));
        }
    }
    t("boundary", faces);
    t("initial", vec![("temperature", s(c.initial.source()))]);
    let mut num = vec![("stability_factor", V::Float(c.stability_factor))];
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
    t("control", ctl);
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
        ],
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
    fn set_errors_name_the_argument() {
        let p = write(&tmpdir("set"), "s.toml", GOOD);
        let e = load(&p, &["physics.difusivity=2".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--set physics.difusivity=2:1:1"), "{e}");
        assert!(e.contains("did you mean `diffusivity`"), "{e}");
        let e = load(&p, &["physics.diffusivity=-2".into()]).unwrap_err().to_string();
        assert!(e.contains("--set physics.diffusivity=-2:1:21") && e.contains("must be positive"), "{e}");
    }
}
