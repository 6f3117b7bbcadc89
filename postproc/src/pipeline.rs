//! The pipeline file (TOML) of `tessera post`: `[source]`, `[[derive]]` and
//! `[[output]]` tables, checked key by key so every mistake names its line and column,
//! what is allowed and, for a typo, what was probably meant. The meaning of each key is
//! documented in docs/POST.md.
use crate::error::{did_you_mean, Location, PostError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// An expression with its place in the file.
#[derive(Clone, Debug)]
pub struct Expr {
    /// The expression text.
    pub text: String,
    /// Byte offset of the text's first character in the file (inside the quotes).
    pub offset: usize,
}

/// Which snapshots an output uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Snapshots {
    /// Every snapshot.
    All,
    /// The last one.
    Last,
    /// The first one.
    First,
    /// Steps in `[first, last]`.
    Steps(u64, u64),
    /// Every n-th snapshot (the first, then every n-th after it).
    Every(usize),
}

/// A reference data set for a line profile.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The CSV file (relative paths are relative to the pipeline file).
    pub file: PathBuf,
    /// Column with the coordinate.
    pub coordinate: String,
    /// Column with the value.
    pub value: String,
    /// Keep rows whose column equals the value (e.g. `table = "u_vs_y"`).
    pub filter: Vec<(String, String)>,
    /// What the coordinate measures: an axis (0, 1, 2) or `None` for the distance along
    /// the line from its start.
    pub axis: Option<usize>,
    /// Where the reference is in the pipeline file.
    pub loc: Location,
}

/// What an output computes.
#[derive(Clone, Debug)]
pub enum OutputKind {
    /// One row per snapshot; columns are scalar expressions.
    Table { columns: Vec<(String, Expr)>, plot: bool },
    /// A profile along a segment, interpolated.
    Line {
        field: Expr,
        from: Vec<f64>,
        to: Vec<f64>,
        points: usize,
        walls: Vec<(usize, usize, f64)>,
        reference: Option<Box<Reference>>,
        plot: bool,
    },
    /// Time series of fields at points.
    Probe { fields: Vec<(String, Expr)>, points: Vec<Vec<f64>>, plot: bool },
    /// A PNG colour map of a field (3D: of a plane).
    Map { field: Expr, plane: Option<(usize, f64)>, range: Option<(f64, f64)> },
    /// A plane of a 3D run (or a line of a 2D run) over all snapshots, as HDF5.
    Slice { fields: Vec<(String, Expr)>, axis: usize, at: f64 },
    /// Per-cell statistics over time: mean, rms (of the fluctuation), min, max.
    TimeStatistics { fields: Vec<(String, Expr)>, statistics: Vec<String>, plot: bool },
    /// Derived fields over all snapshots as HDF5 + XDMF.
    Field { fields: Vec<(String, Expr)> },
    /// Named scalars (time-reduced, or at the last snapshot) as JSON.
    Scalars { values: Vec<(String, Expr)> },
    /// Power spectrum along an axis, averaged over the other axes (and over time).
    Spectrum { field: Expr, axis: usize, time_average: bool },
}

/// One `[[output]]`.
#[derive(Clone, Debug)]
pub struct Output {
    /// Output name: the stem of its files.
    pub name: String,
    /// What it computes.
    pub kind: OutputKind,
    /// Its snapshots.
    pub snapshots: Snapshots,
    /// The canonical text of its table (for cache keys).
    pub canonical: String,
    /// Where it is in the file.
    pub loc: Location,
}

/// A parsed, checked pipeline file.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file as the user named it.
    pub file: String,
    /// Its text.
    pub text: String,
    /// `[source] fields`: fields to require (empty: whatever the expressions use).
    pub fields: Vec<(String, Location)>,
    /// `[source] snapshots`.
    pub snapshots: Snapshots,
    /// `[[derive]]` in order: name and expression.
    pub derive: Vec<(String, Expr, Location)>,
    /// `[[output]]` in order.
    pub outputs: Vec<Output>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<Value>>;

/// A table being read key by key; `finish` rejects the keys nobody asked for.
struct Tab<'a> {
    ctx: &'a Ctx<'a>,
    what: String,
    map: RawTable,
    known: Vec<&'static str>,
    span: (usize, usize),
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn loc(&self, span: (usize, usize)) -> Location {
        Location::of(self.file, self.text, span)
    }
    fn err(&self, span: (usize, usize), msg: impl Into<String>) -> PostError {
        PostError::at(self.loc(span), msg)
    }
}

fn span_of<T>(s: &Spanned<T>) -> (usize, usize) {
    let r = s.span();
    (r.start, r.end)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl<'a> Tab<'a> {
    fn new(ctx: &'a Ctx<'a>, what: impl Into<String>, map: RawTable, span: (usize, usize)) -> Self {
        Tab { ctx, what: what.into(), map, known: Vec::new(), span }
    }

    fn take(&mut self, key: &'static str) -> Option<Spanned<Value>> {
        self.known.push(key);
        let k = self.map.keys().find(|k| k.get_ref() == key).cloned()?;
        self.map.remove(&k)
    }

    fn bad(&self, v: &Spanned<Value>, key: &str, expected: &str) -> PostError {
        self.ctx.err(span_of(v), format!("{}.{key}: expected {expected}, found {}", self.what, type_name(v.get_ref())))
    }

    fn req<T>(&mut self, key: &'static str, f: impl FnOnce(&mut Self, Spanned<Value>) -> Result<T>) -> Result<T> {
        match self.take(key) {
            Some(v) => f(self, v),
            None => {
                // A misspelt key is the likely cause: point at it.
                if let Some(k) = self.map.keys().find(|k| crate::error::suggest(k.get_ref(), &[key]).is_some()) {
                    return Err(self
                        .ctx
                        .err(span_of(k), format!("{}: unknown key `{}`", self.what, k.get_ref()))
                        .help(format!("did you mean `{key}`? (`{key}` is required here)")));
                }
                Err(self.ctx.err(self.span, format!("{}: missing key `{key}`", self.what)))
            }
        }
    }

    fn string(&mut self, key: &'static str) -> Result<Option<(String, (usize, usize))>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                Value::String(s) => Ok(Some((s.clone(), span_of(&v)))),
                _ => Err(self.bad(&v, key, "a string")),
            },
        }
    }

    fn expr_of(&self, v: &Spanned<Value>, key: &str) -> Result<Expr> {
        match v.get_ref() {
            Value::String(s) => Ok(Expr { text: s.clone(), offset: span_of(v).0 + 1 }),
            _ => Err(self.bad(v, key, "an expression (a string)")),
        }
    }

    fn boolean(&mut self, key: &'static str, default: bool) -> Result<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => match v.get_ref() {
                Value::Boolean(b) => Ok(*b),
                _ => Err(self.bad(&v, key, "true or false")),
            },
        }
    }

    fn point(&self, v: &Spanned<Value>, key: &str, dims: Option<usize>) -> Result<Vec<f64>> {
        let arr = match v.get_ref() {
            Value::Array(a) => a,
            _ => return Err(self.bad(v, key, "a point [x, y] or [x, y, z]")),
        };
        let p: Option<Vec<f64>> = arr.iter().map(as_f64).collect();
        match p {
            Some(p) if (2..=3).contains(&p.len()) && dims.is_none_or(|d| d == p.len()) && p.iter().all(|x| x.is_finite()) => Ok(p),
            _ => Err(self.ctx.err(span_of(v), format!("{}.{key}: expected a point of 2 or 3 finite numbers [x, y(, z)]", self.what))),
        }
    }

    /// `fields`: a list of names/expressions or a table name -> expression.
    fn named_exprs(&mut self, key: &'static str) -> Result<Option<Vec<(String, Expr)>>> {
        let Some(v) = self.take(key) else { return Ok(None) };
        let start = span_of(&v).0;
        let mut out = Vec::new();
        match v.get_ref() {
            Value::Array(items) => {
                // Inner values carry no spans: locate each string in the array's text.
                let mut cursor = start;
                for it in items {
                    let Value::String(s) = it else { return Err(self.bad(&v, key, "an array of expressions (strings)")) };
                    let off = find_string(self.ctx.text, cursor, s).unwrap_or(start);
                    cursor = off + s.len();
                    out.push((s.clone(), Expr { text: s.clone(), offset: off }));
                }
            }
            Value::Table(t) => {
                let mut cursor = start;
                for (name, it) in t {
                    let Value::String(s) = it else { return Err(self.bad(&v, key, "a table of name = expression")) };
                    let off = find_string(self.ctx.text, cursor, s).unwrap_or(start);
                    cursor = off + s.len();
                    out.push((name.clone(), Expr { text: s.clone(), offset: off }));
                }
            }
            _ => return Err(self.bad(&v, key, "an array of expressions, or a table of name = expression")),
        }
        if out.is_empty() {
            return Err(self.ctx.err(span_of(&v), format!("{}.{key}: must not be empty", self.what)));
        }
        Ok(Some(out))
    }

    fn finish(self) -> Result<()> {
        if let Some((k, _)) = self.map.iter().next() {
            let known: Vec<&str> = self.known.clone();
            return Err(self.ctx.err(span_of(k), format!("{}: unknown key `{}`", self.what, k.get_ref())).help(format!(
                "{}allowed here: {}",
                did_you_mean(k.get_ref(), &known),
                known.join(", ")
            )));
        }
        Ok(())
    }
}

/// Byte offset (inside the quotes) of the string literal `s` at or after `from`.
fn find_string(text: &str, from: usize, s: &str) -> Option<usize> {
    let from = from.min(text.len());
    for q in ['"', '\''] {
        let pat = format!("{q}{s}{q}");
        if let Some(i) = text[from..].find(&pat) {
            return Some(from + i + 1);
        }
    }
    None
}

fn axis_index(name: &str) -> Option<usize> {
    match name {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    }
}

fn face_index(name: &str) -> Option<(usize, usize)> {
    let (a, side) = match name {
        "xlo" => (0, 0),
        "xhi" => (0, 1),
        "ylo" => (1, 0),
        "yhi" => (1, 1),
        "zlo" => (2, 0),
        "zhi" => (2, 1),
        _ => return None,
    };
    Some((a, side))
}

const SNAPSHOT_HELP: &str = "\"all\", \"last\", \"first\", [first_step, last_step], or { every = N }";

fn snapshots(ctx: &Ctx, v: &Spanned<Value>) -> Result<Snapshots> {
    let bad = || ctx.err(span_of(v), "snapshots: not a snapshot selection").help(SNAPSHOT_HELP);
    match v.get_ref() {
        Value::String(s) => match s.as_str() {
            "all" => Ok(Snapshots::All),
            "last" => Ok(Snapshots::Last),
            "first" => Ok(Snapshots::First),
            other => Err(ctx
                .err(span_of(v), format!("snapshots: unknown selection {other:?}"))
                .help(format!("{}{SNAPSHOT_HELP}", did_you_mean(other, &["all", "last", "first"])))),
        },
        Value::Array(a) if a.len() == 2 => match (a[0].as_integer(), a[1].as_integer()) {
            (Some(x), Some(y)) if x >= 0 && y >= x => Ok(Snapshots::Steps(x as u64, y as u64)),
            _ => Err(ctx.err(span_of(v), "snapshots: a step range needs two steps 0 <= first <= last").help(SNAPSHOT_HELP)),
        },
        Value::Table(t) if t.len() == 1 && t.contains_key("every") => match t["every"].as_integer() {
            Some(n) if n >= 1 => Ok(Snapshots::Every(n as usize)),
            _ => Err(ctx.err(span_of(v), "snapshots: every must be an integer >= 1").help(SNAPSHOT_HELP)),
        },
        _ => Err(bad()),
    }
}

/// The output kinds and the keys each allows (besides `name`, `kind`, `snapshots`).
pub const KINDS: &[&str] = &["table", "line", "probe", "map", "slice", "time_statistics", "field", "scalars", "spectrum"];

/// The statistics `time_statistics` can compute.
pub const STATISTICS: &[&str] = &["mean", "rms", "min", "max"];

/// Reads and checks the pipeline file `path`.
pub fn load(path: &Path) -> Result<Pipeline> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PostError::input(format!("{file}: cannot read the pipeline file: {e}")))?;
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: Option<Spanned<RawTable>>,
    derive: Option<Vec<Spanned<RawTable>>>,
    output: Option<Vec<Spanned<RawTable>>>,
}

/// Parses pipeline text (`file` names it in messages; `dir` resolves relative paths).
pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Pipeline> {
    let ctx = Ctx { file, text, dir: dir.to_path_buf() };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let span = e.span().map(|r| (r.start, r.end)).unwrap_or((0, 0));
        let msg = e.message().trim().to_string();
        let help =
            if msg.contains("unknown field") { Some("a pipeline file has [source], [[derive]] and [[output]] tables") } else { None };
        let err = ctx.err(span, msg);
        match help {
            Some(h) => err.help(h),
            None => err,
        }
    })?;
    let mut fields = Vec::new();
    let mut snaps = Snapshots::All;
    if let Some(src) = raw.source {
        let span = span_of(&src);
        let mut t = Tab::new(&ctx, "source", src.into_inner(), span);
        if let Some(v) = t.take("fields") {
            let Value::Array(a) = v.get_ref() else { return Err(t.bad(&v, "fields", "an array of field names")) };
            let mut cursor = span_of(&v).0;
            for it in a {
                let Value::String(s) = it else { return Err(t.bad(&v, "fields", "an array of field names")) };
                let off = find_string(text, cursor, s).unwrap_or(span_of(&v).0);
                cursor = off + s.len();
                fields.push((s.clone(), ctx.loc((off, off + s.len()))));
            }
        }
        if let Some(v) = t.take("snapshots") {
            snaps = snapshots(&ctx, &v)?;
        }
        t.finish()?;
    }
    let mut derive = Vec::new();
    for d in raw.derive.unwrap_or_default() {
        let span = span_of(&d);
        let mut t = Tab::new(&ctx, "derive", d.into_inner(), span);
        let (name, nspan) = t.req("name", |t, v| match v.get_ref() {
            Value::String(s) => Ok((s.clone(), span_of(&v))),
            _ => Err(t.bad(&v, "name", "a string")),
        })?;
        check_name(&ctx, &name, nspan, "derive.name")?;
        let expr = t.req("expr", |t, v| t.expr_of(&v, "expr"))?;
        t.finish()?;
        if derive.iter().any(|(n, _, _): &(String, Expr, Location)| *n == name) {
            return Err(ctx.err(nspan, format!("derive.name: `{name}` is defined twice")));
        }
        derive.push((name, expr, ctx.loc(nspan)));
    }
    let mut outputs: Vec<Output> = Vec::new();
    for o in raw.output.unwrap_or_default() {
        let span = span_of(&o);
        let map = o.into_inner();
        // Every key and value, in key order: the output's identity for the cache.
        let canonical: String = map.iter().map(|(k, v)| format!("{} = {}\n", k.get_ref(), v.get_ref())).collect();
        let mut t = Tab::new(&ctx, "output", map, span);
        let (name, nspan) = t.req("name", |t, v| match v.get_ref() {
            Value::String(s) => Ok((s.clone(), span_of(&v))),
            _ => Err(t.bad(&v, "name", "a string")),
        })?;
        check_name(&ctx, &name, nspan, "output.name")?;
        if outputs.iter().any(|x| x.name == name) {
            return Err(ctx.err(nspan, format!("output.name: `{name}` is used twice (each output writes files named after it)")));
        }
        let (kind, kspan) = t.req("kind", |t, v| match v.get_ref() {
            Value::String(s) => Ok((s.clone(), span_of(&v))),
            _ => Err(t.bad(&v, "kind", "a string")),
        })?;
        t.what = format!("output `{name}`");
        let default_snaps = match kind.as_str() {
            "line" | "map" => Snapshots::Last,
            _ => snaps.clone(),
        };
        let snapshots_sel = match t.take("snapshots") {
            Some(v) => snapshots(&ctx, &v)?,
            None => default_snaps,
        };
        let kind = output_kind(&ctx, &mut t, &kind, kspan)?;
        t.finish()?;
        outputs.push(Output { name, kind, snapshots: snapshots_sel, canonical, loc: ctx.loc(span) });
    }
    if outputs.is_empty() {
        return Err(PostError::input(format!("{file}: no [[output]] table: nothing to compute")).help(format!(
            "add e.g. [[output]] name = \"stats\" kind = \"table\" columns = [\"time\", \"max(u)\"]; kinds: {}",
            KINDS.join(", ")
        )));
    }
    Ok(Pipeline { file: file.to_string(), text: text.to_string(), fields, snapshots: snaps, derive, outputs })
}

fn check_name(ctx: &Ctx, name: &str, span: (usize, usize), what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ctx.err(span, format!("{what}: `{name}` is not a valid name")).help("letters, digits, `_` and `-`, starting with a letter"))
    }
}

fn axis_key(ctx: &Ctx, t: &mut Tab, key: &'static str) -> Result<Option<usize>> {
    match t.string(key)? {
        None => Ok(None),
        Some((s, sp)) => axis_index(&s)
            .map(Some)
            .ok_or_else(|| ctx.err(sp, format!("{}.{key}: unknown axis {s:?}", t.what)).help("\"x\", \"y\" or \"z\"")),
    }
}

fn output_kind(ctx: &Ctx, t: &mut Tab, kind: &str, kspan: (usize, usize)) -> Result<OutputKind> {
    let what = t.what.clone();
    Ok(match kind {
        "table" => {
            let columns = t.named_exprs("columns")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `columns`")))?;
            OutputKind::Table { columns, plot: t.boolean("plot", false)? }
        }
        "line" => {
            let field = t.req("field", |t, v| t.expr_of(&v, "field"))?;
            let from = t.req("from", |t, v| t.point(&v, "from", None))?;
            let to = t.req("to", |t, v| t.point(&v, "to", Some(from.len())))?;
            let points = match t.take("points") {
                None => 101,
                Some(v) => match v.get_ref().as_integer() {
                    Some(n) if (2..=1_000_000).contains(&n) => n as usize,
                    _ => return Err(ctx.err(span_of(&v), format!("{what}.points: expected an integer from 2 to 1000000"))),
                },
            };
            let mut walls = Vec::new();
            if let Some(v) = t.take("walls") {
                let Value::Table(w) = v.get_ref() else { return Err(t.bad(&v, "walls", "a table face = value, e.g. { yhi = 1.0 }")) };
                for (face, val) in w {
                    let Some((a, side)) = face_index(face) else {
                        return Err(ctx.err(span_of(&v), format!("{what}.walls: unknown face `{face}`")).help(format!(
                            "{}faces: xlo, xhi, ylo, yhi, zlo, zhi",
                            did_you_mean(face, &["xlo", "xhi", "ylo", "yhi", "zlo", "zhi"])
                        )));
                    };
                    let Some(x) = as_f64(val) else { return Err(ctx.err(span_of(&v), format!("{what}.walls.{face}: expected a number"))) };
                    walls.push((a, side, x));
                }
            }
            let reference = match t.take("reference") {
                None => None,
                Some(v) => Some(Box::new(reference(ctx, &what, &v)?)),
            };
            OutputKind::Line { field, from, to, points, walls, reference, plot: t.boolean("plot", true)? }
        }
        "probe" => {
            let fields = t.named_exprs("fields")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `fields`")))?;
            let points = t.req("points", |t, v| {
                let Value::Array(a) = v.get_ref() else { return Err(t.bad(&v, "points", "an array of points [[x, y], ...]")) };
                let mut pts = Vec::new();
                for p in a {
                    let sp = Spanned::new(span_of(&v).0..span_of(&v).1, p.clone());
                    pts.push(t.point(&sp, "points", pts.first().map(Vec::len))?);
                }
                if pts.is_empty() {
                    return Err(ctx.err(span_of(&v), format!("{what}.points: must not be empty")));
                }
                Ok(pts)
            })?;
            OutputKind::Probe { fields, points, plot: t.boolean("plot", true)? }
        }
        "map" => {
            let field = t.req("field", |t, v| t.expr_of(&v, "field"))?;
            let axis = axis_key(ctx, t, "axis")?;
            let at = t.take("at");
            let plane = match (axis, at) {
                (None, None) => None,
                (Some(a), Some(v)) => Some((a, as_f64(v.get_ref()).ok_or_else(|| t.bad(&v, "at", "a number"))?)),
                _ => return Err(ctx.err(t.span, format!("{what}: `axis` and `at` go together (the plane of a 3D run)"))),
            };
            let range = match t.take("range") {
                None => None,
                Some(v) => match v.get_ref().as_array().map(|a| a.iter().map(as_f64).collect::<Option<Vec<f64>>>()) {
                    Some(Some(r)) if r.len() == 2 && r[0] < r[1] && r.iter().all(|x| x.is_finite()) => Some((r[0], r[1])),
                    _ => {
                        return Err(ctx
                            .err(span_of(&v), format!("{what}.range: expected [low, high] with low < high"))
                            .help("values outside the range take the colour of its ends"))
                    }
                },
            };
            OutputKind::Map { field, plane, range }
        }
        "slice" => {
            let fields = t.named_exprs("fields")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `fields`")))?;
            let axis = axis_key(ctx, t, "axis")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `axis`")))?;
            let at = t.req("at", |t, v| as_f64(v.get_ref()).ok_or_else(|| t.bad(&v, "at", "a number")))?;
            OutputKind::Slice { fields, axis, at }
        }
        "time_statistics" => {
            let fields = t.named_exprs("fields")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `fields`")))?;
            let statistics = match t.take("statistics") {
                None => vec!["mean".to_string(), "rms".to_string()],
                Some(v) => {
                    let Value::Array(a) = v.get_ref() else { return Err(t.bad(&v, "statistics", "an array of names")) };
                    let mut s = Vec::new();
                    for it in a {
                        match it.as_str() {
                            Some(n) if STATISTICS.contains(&n) => s.push(n.to_string()),
                            other => {
                                return Err(ctx
                                    .err(
                                        span_of(&v),
                                        format!(
                                            "{what}.statistics: unknown statistic {}",
                                            other.map(|o| format!("{o:?}")).unwrap_or_else(|| "(not a string)".into())
                                        ),
                                    )
                                    .help(format!("{}allowed: {}", did_you_mean(other.unwrap_or(""), STATISTICS), STATISTICS.join(", "))))
                            }
                        }
                    }
                    s
                }
            };
            OutputKind::TimeStatistics { fields, statistics, plot: t.boolean("plot", true)? }
        }
        "field" => {
            OutputKind::Field { fields: t.named_exprs("fields")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `fields`")))? }
        }
        "scalars" => OutputKind::Scalars {
            values: t.named_exprs("values")?.ok_or_else(|| ctx.err(t.span, format!("{what}: missing key `values`")))?,
        },
        "spectrum" => {
            let field = t.req("field", |t, v| t.expr_of(&v, "field"))?;
            let axis = axis_key(ctx, t, "axis")?.unwrap_or(0);
            let time_average = match t.string("average")? {
                None => true,
                Some((s, sp)) => match s.as_str() {
                    "time" => true,
                    "none" => false,
                    _ => {
                        return Err(ctx
                            .err(sp, format!("{what}.average: unknown value {s:?}"))
                            .help("\"time\" (one spectrum averaged over the snapshots) or \"none\" (one per snapshot)"))
                    }
                },
            };
            OutputKind::Spectrum { field, axis, time_average }
        }
        other => {
            return Err(ctx.err(kspan, format!("{what}: unknown output kind {other:?}")).help(format!(
                "{}kinds: {}",
                did_you_mean(other, KINDS),
                KINDS.join(", ")
            )))
        }
    })
}

fn reference(ctx: &Ctx, what: &str, v: &Spanned<Value>) -> Result<Reference> {
    let loc = ctx.loc(span_of(v));
    let bad = |m: String| PostError::at(loc.clone(), format!("{what}.reference: {m}"));
    let (file, tab) = match v.get_ref() {
        Value::String(s) => (s.clone(), toml::Table::new()),
        Value::Table(t) => match t.get("file").and_then(Value::as_str) {
            Some(f) => (f.to_string(), t.clone()),
            None => return Err(bad("missing key `file` (the reference CSV)".into())),
        },
        _ => return Err(bad("expected a CSV path, or a table { file, coordinate, value, filter, axis }".into())),
    };
    let known = ["file", "coordinate", "value", "filter", "axis"];
    for k in tab.keys() {
        if !known.contains(&k.as_str()) {
            return Err(bad(format!("unknown key `{k}`")).help(format!("{}allowed: {}", did_you_mean(k, &known), known.join(", "))));
        }
    }
    let col = |k: &str, d: &str| -> Result<String> {
        match tab.get(k) {
            None => Ok(d.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(format!("{k}: expected a column name"))),
        }
    };
    let mut filter = Vec::new();
    if let Some(f) = tab.get("filter") {
        let Value::Table(f) = f else { return Err(bad("filter: expected a table column = value".into())) };
        for (k, x) in f {
            let val = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            filter.push((k.clone(), val));
        }
    }
    let axis = match tab.get("axis").map(|a| a.as_str()) {
        None => None,
        Some(Some("s")) => None,
        Some(Some(a)) if axis_index(a).is_some() => axis_index(a),
        Some(_) => {
            return Err(bad(
                "axis: expected \"x\", \"y\", \"z\" (the coordinate is that position) or \"s\" (distance along the line)".into()
            ))
        }
    };
    let path = PathBuf::from(&file);
    let path = if path.is_absolute() { path } else { ctx.dir.join(path) };
    Ok(Reference { file: path, coordinate: col("coordinate", "coordinate")?, value: col("value", "value")?, filter, axis, loc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Pipeline> {
        parse("p.toml", text, Path::new("."))
    }

    #[test]
    fn the_design_sketch_parses() {
        let text = r#"
[source]
fields = ["velocity_x", "velocity_y"]
snapshots = "all"

[[derive]]
name = "vort"
expr = "vorticity(velocity_x, velocity_y)"

[[output]]
name = "vort_stats"
kind = "table"
columns = ["time", "max(abs(vort))", "mean(vort)", "l2(vort)"]

[[output]]
name = "centerline"
kind = "line"
field = "velocity_x"
from = [0.5, 0.0]
to = [0.5, 1.0]
points = 129
walls = { yhi = 1.0, ylo = 0 }
reference = { file = "ghia.csv", filter = { table = "u_vs_y" }, axis = "y" }
"#;
        let pl = p(text).unwrap();
        assert_eq!(pl.fields.len(), 2);
        assert_eq!(pl.derive[0].0, "vort");
        let d = &pl.derive[0].1;
        assert_eq!(&text[d.offset..d.offset + d.text.len()], d.text);
        let OutputKind::Table { columns, .. } = &pl.outputs[0].kind else { panic!() };
        assert_eq!(columns[1].0, "max(abs(vort))");
        assert_eq!(&text[columns[1].1.offset..columns[1].1.offset + 14], "max(abs(vort))");
        let OutputKind::Line { points, walls, reference, .. } = &pl.outputs[1].kind else { panic!() };
        assert_eq!(*points, 129);
        assert_eq!(walls.len(), 2);
        let r = reference.as_ref().unwrap();
        assert_eq!((r.axis, r.filter.clone()), (Some(1), vec![("table".to_string(), "u_vs_y".to_string())]));
        assert_eq!(pl.outputs[1].snapshots, Snapshots::Last);
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let e = p("[source]\nsnapshot = \"all\"\n[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"t\"]\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:2:1: source: unknown key `snapshot`") && e.contains("did you mean `snapshots`"), "{e}");
        let e = p("[[output]]\nname = \"a\"\nkind = \"tabel\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:3:8:") && e.contains("did you mean `table`"), "{e}");
        let e = p("[[output]]\nname = \"a\"\nkind = \"line\"\nfield = \"u\"\nfrom = [0, 0]\nto = [1, 1, 1]\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:6:6:"), "{e}");
        let e = p("[[output]]\nname = \"a\"\nkind = \"table\"\ncolumns = [\"t\"]\nsnapshots = \"lats\"\n").unwrap_err().to_string();
        assert!(e.contains("p.toml:5:13") && e.contains("did you mean `last`"), "{e}");
        let e = p("[sources]\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:1:") && e.contains("sources"), "{e}");
        let e = p("[source]\nsnapshots = \"all\"\n").unwrap_err().to_string();
        assert!(e.contains("no [[output]]"), "{e}");
        let e = p("[[output]]\nname = \"a b\"\nkind = \"table\"\ncolumns = [\"t\"]\n").unwrap_err().to_string();
        assert!(e.contains("not a valid name"), "{e}");
        let e =
            p("[[output]]\nname = \"a\"\nkind = \"time_statistics\"\nfields = [\"u\"]\nstatistics = [\"mena\"]\n").unwrap_err().to_string();
        assert!(e.contains("did you mean `mean`"), "{e}");
        let e = p("x = = 1").unwrap_err().to_string();
        assert!(e.starts_with("p.toml:1:"), "{e}");
    }
}
