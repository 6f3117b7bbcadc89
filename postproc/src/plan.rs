//! The plan: an arena of typed nodes built from the pipeline's expressions.
//!
//! Every node has a canonical key made of its operation and its children's ids, and
//! [`Plan::add`] returns the existing node for a key it has seen (hash-consing), so an
//! identical sub-expression, wherever it is written, is one node computed once.
//! Operands of commutative operations are ordered, so `a*b` and `b*a` are one node.
//! A node's *content* (its whole expression, independent of ids) keys the result cache.
use crate::error::{did_you_mean, Location, PostError, Result};
use crate::expr::{self, Ast, AstKind};
use crate::rundir::Run;
use std::collections::{BTreeSet, HashMap};

/// Node index in the arena.
pub type Id = usize;

/// Element-wise functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Un {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Floor,
    Ceil,
    Sign,
}

/// Element-wise functions of two arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    Atan2,
    Hypot,
}

impl Bin {
    fn commutative(self) -> bool {
        matches!(self, Bin::Add | Bin::Mul | Bin::Min | Bin::Max | Bin::Hypot)
    }
}

/// Reductions over space (a field to one number per snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Red {
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum over cells / number of cells.
    Mean,
    /// Sum over cells.
    Sum,
    /// Sum of value × cell volume.
    Integral,
    /// sqrt(sum of value² × cell volume): the L2 norm (as in monitor.csv).
    L2,
    /// sqrt(mean of value²).
    Rms,
    /// max |value|: the max norm.
    Linf,
}

/// Reductions over time (one number per snapshot to one number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum TRed {
    Min,
    Max,
    Mean,
    Sum,
    First,
    Last,
}

/// Per-cell statistics over time (a field over snapshots to one field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Time average.
    Mean,
    /// Root mean square of the fluctuation, sqrt(mean((f - mean f)²)).
    Rms,
    /// Smallest value over time.
    Min,
    /// Largest value over time.
    Max,
}

/// A node's operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A field dataset of the snapshot.
    Source(String),
    /// Cell-centre coordinate along an axis.
    Coord(usize),
    /// The snapshot's time.
    Time,
    /// The snapshot's step.
    Step,
    /// A constant.
    Const(f64),
    /// f(a), element-wise.
    Unary(Un, Id),
    /// f(a, b), element-wise (scalars broadcast).
    Binary(Bin, Id, Id),
    /// Derivative of order 1 or 2 along an axis: central inside, second-order one-sided
    /// at non-periodic boundaries, wrapped on periodic axes.
    Diff { axis: usize, order: u8, arg: Id },
    /// A reduction over space.
    Reduce(Red, Id),
    /// A reduction over the snapshots of selection `sel`.
    TimeReduce(TRed, Id, usize),
    /// A per-cell statistic over the snapshots of selection `sel`.
    TimeStat(Stat, Id, usize),
}

/// What a node's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// One number for the whole pipeline.
    Global,
    /// One number per snapshot.
    Scalar,
    /// A value per cell (per snapshot, or for the whole run for time statistics).
    Field,
}

/// A node of the arena.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Its level.
    pub level: Level,
    /// The pass (streaming sweep over the snapshots) in which it can be computed. A
    /// field that uses a reduction or a time statistic needs a later pass than it.
    pub pass: usize,
    /// A scalar computed from field data (a reduction or depends on one): a field that
    /// uses it must wait for the pass that computes it.
    pub computed: bool,
    /// Canonical key (operation + child ids).
    pub key: String,
}

/// The arena.
#[derive(Default)]
pub struct Plan {
    /// Nodes; children always have smaller ids than their parents.
    pub nodes: Vec<Node>,
    index: HashMap<String, Id>,
    /// Snapshot selections (steps) used by time reductions and statistics.
    pub selections: Vec<Vec<u64>>,
    /// How many `add` calls found an existing node (shared sub-expressions).
    pub shared: usize,
}

impl Plan {
    /// Adds a node, or returns the identical one already present.
    pub fn add(&mut self, op: Op) -> Id {
        let op = match op {
            Op::Binary(b, x, y) if b.commutative() && y < x => Op::Binary(b, y, x),
            o => o,
        };
        let key = match &op {
            Op::Source(s) => format!("source({s})"),
            Op::Coord(a) => format!("coord({a})"),
            Op::Time => "t".into(),
            Op::Step => "step".into(),
            Op::Const(c) => format!("const({:e})", c),
            Op::Unary(u, a) => format!("{u:?}(#{a})"),
            Op::Binary(b, x, y) => format!("{b:?}(#{x},#{y})"),
            Op::Diff { axis, order, arg } => format!("d{order}/dx{axis}(#{arg})"),
            Op::Reduce(r, a) => format!("reduce_{r:?}(#{a})"),
            Op::TimeReduce(r, a, s) => format!("time_{r:?}(#{a},sel{s})"),
            Op::TimeStat(st, a, s) => format!("stat_{st:?}(#{a},sel{s})"),
        };
        if let Some(&id) = self.index.get(&key) {
            self.shared += 1;
            return id;
        }
        let n = |i: &Id| &self.nodes[*i];
        let (level, pass, computed) = match &op {
            Op::Source(_) | Op::Coord(_) => (Level::Field, 0, false),
            Op::Time | Op::Step => (Level::Scalar, 0, false),
            Op::Const(_) => (Level::Global, 0, false),
            Op::Unary(_, a) => (n(a).level, n(a).pass, n(a).computed),
            Op::Binary(_, x, y) => {
                let level = n(x).level.max(n(y).level);
                let avail = |c: &Node| if level == Level::Field && c.level != Level::Field && c.computed { c.pass + 1 } else { c.pass };
                (level, avail(n(x)).max(avail(n(y))), n(x).computed || n(y).computed)
            }
            Op::Diff { arg, .. } => (Level::Field, n(arg).pass, false),
            Op::Reduce(_, a) => (Level::Scalar, n(a).pass, true),
            Op::TimeReduce(_, a, _) => (Level::Global, n(a).pass, true),
            Op::TimeStat(_, a, _) => (Level::Field, n(a).pass + 1, false),
        };
        let id = self.nodes.len();
        self.nodes.push(Node { op, level, pass, computed, key: key.clone() });
        self.index.insert(key, id);
        id
    }

    /// Registers a snapshot selection; identical selections share an index.
    pub fn selection(&mut self, steps: Vec<u64>) -> usize {
        if let Some(i) = self.selections.iter().position(|s| *s == steps) {
            return i;
        }
        self.selections.push(steps);
        self.selections.len() - 1
    }

    /// Children of a node.
    pub fn children(&self, id: Id) -> Vec<Id> {
        match &self.nodes[id].op {
            Op::Unary(_, a) | Op::Diff { arg: a, .. } | Op::Reduce(_, a) | Op::TimeReduce(_, a, _) | Op::TimeStat(_, a, _) => vec![*a],
            Op::Binary(_, a, b) => vec![*a, *b],
            _ => Vec::new(),
        }
    }

    /// The whole expression under `id`, independent of node ids: a stable content key.
    pub fn content(&self, id: Id) -> String {
        let n = &self.nodes[id];
        let kids: Vec<String> = self.children(id).iter().map(|&c| self.content(c)).collect();
        let head = n.key.split('(').next().unwrap_or("");
        match &n.op {
            Op::Source(_) | Op::Coord(_) | Op::Time | Op::Step | Op::Const(_) => n.key.clone(),
            Op::TimeReduce(_, _, s) | Op::TimeStat(_, _, s) => format!("{head}({};steps={:?})", kids.join(","), self.selections[*s]),
            _ => format!("{head}({})", kids.join(",")),
        }
    }

    /// Every node `roots` depend on (including themselves).
    pub fn closure(&self, roots: &[Id]) -> BTreeSet<Id> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Id> = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.children(i));
            }
        }
        seen
    }
}

/// Names an expression can use, and where to report problems.
pub struct Scope<'a> {
    /// The run being read.
    pub run: &'a Run,
    /// Fields present in every selected snapshot.
    pub fields: Vec<String>,
    /// Derived fields defined so far.
    pub derived: HashMap<String, Id>,
    /// Derived fields defined later in the file (for a clearer error).
    pub later: Vec<String>,
    /// The pipeline file's name and text.
    pub file: &'a str,
    /// Its text.
    pub text: &'a str,
    /// The default selection for time reductions (the pipeline's `[source] snapshots`).
    pub selection: Vec<u64>,
}

/// Function names, for suggestions and help.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "sqrt",
    "exp",
    "log",
    "ln",
    "log10",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "floor",
    "ceil",
    "sign",
    "atan2",
    "pow",
    "hypot",
    "min",
    "max",
    "mean",
    "sum",
    "integral",
    "l2",
    "rms",
    "linf",
    "ddx",
    "ddy",
    "ddz",
    "d2dx2",
    "d2dy2",
    "d2dz2",
    "laplacian",
    "grad_mag",
    "divergence",
    "vorticity",
    "vorticity_x",
    "vorticity_y",
    "vorticity_z",
    "magnitude",
    "time_mean",
    "time_rms",
    "time_min",
    "time_max",
    "tmin",
    "tmax",
    "tmean",
    "tsum",
    "tfirst",
    "tlast",
];

impl Scope<'_> {
    fn loc(&self, offset: usize, span: (usize, usize)) -> Location {
        Location::of(self.file, self.text, (offset + span.0, offset + span.1))
    }

    /// Parses and lowers an expression found at byte `offset` of the pipeline file.
    pub fn lower_text(&self, plan: &mut Plan, text: &str, offset: usize) -> Result<Id> {
        let ast = expr::parse(text).map_err(|e| {
            PostError::at(self.loc(offset, (e.at, e.at + e.width)), format!("in expression {text:?}: {}", e.message))
                .help("numbers, field names, x y z t, + - * / ^, and functions such as max(abs(f)), ddx(f), vorticity(u, v)")
        })?;
        self.lower(plan, &ast, offset)
    }

    fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.fields.iter().map(String::as_str).collect();
        v.extend(self.derived.keys().map(String::as_str));
        v.extend(["x", "y", "z", "t", "time", "step", "pi", "e", "dx", "dy", "dz"]);
        v
    }

    fn lower(&self, plan: &mut Plan, ast: &Ast, off: usize) -> Result<Id> {
        let dims = self.run.dims;
        match &ast.kind {
            AstKind::Num(v) => Ok(plan.add(Op::Const(*v))),
            AstKind::Neg(a) => {
                let a = self.lower(plan, a, off)?;
                Ok(plan.add(Op::Unary(Un::Neg, a)))
            }
            AstKind::Bin(c, l, r) => {
                let (l, r) = (self.lower(plan, l, off)?, self.lower(plan, r, off)?);
                let b = match c {
                    '+' => Bin::Add,
                    '-' => Bin::Sub,
                    '*' => Bin::Mul,
                    '/' => Bin::Div,
                    _ => Bin::Pow,
                };
                Ok(plan.add(Op::Binary(b, l, r)))
            }
            AstKind::Name(n) => {
                if let Some(&id) = self.derived.get(n) {
                    return Ok(id);
                }
                if self.fields.contains(n) {
                    return Ok(plan.add(Op::Source(n.clone())));
                }
                let axis = |a: usize| if a < dims { Some(a) } else { None };
                let id = match n.as_str() {
                    "x" => axis(0).map(|a| plan.add(Op::Coord(a))),
                    "y" => axis(1).map(|a| plan.add(Op::Coord(a))),
                    "z" => axis(2).map(|a| plan.add(Op::Coord(a))),
                    "t" | "time" => Some(plan.add(Op::Time)),
                    "step" => Some(plan.add(Op::Step)),
                    "pi" => Some(plan.add(Op::Const(std::f64::consts::PI))),
                    "e" => Some(plan.add(Op::Const(std::f64::consts::E))),
                    "dx" => axis(0).map(|a| plan.add(Op::Const(self.run.spacing[a]))),
                    "dy" => axis(1).map(|a| plan.add(Op::Const(self.run.spacing[a]))),
                    "dz" => axis(2).map(|a| plan.add(Op::Const(self.run.spacing[a]))),
                    _ => None,
                };
                if let Some(id) = id {
                    return Ok(id);
                }
                let loc = self.loc(off, ast.span);
                if matches!(n.as_str(), "z" | "dz") {
                    return Err(PostError::at(loc, format!("`{n}` in a 2D run")).help("a 2D run has x and y only"));
                }
                if self.later.contains(n) {
                    return Err(PostError::at(loc, format!("`{n}` is derived further down the file"))
                        .help("a [[derive]] may use only fields derived above it"));
                }
                let names = self.names();
                Err(PostError::at(loc, format!("unknown name `{n}`")).help(format!(
                    "{}fields of this run: {}; derived: {}; also x, y{}, t, step, pi, e, dx, dy{}",
                    did_you_mean(n, &names),
                    self.fields.join(", "),
                    if self.derived.is_empty() { "none".to_string() } else { self.derived.keys().cloned().collect::<Vec<_>>().join(", ") },
                    if dims == 3 { ", z" } else { "" },
                    if dims == 3 { ", dz" } else { "" }
                )))
            }
            AstKind::Call(f, fspan, args) => self.call(plan, f, *fspan, args, ast, off),
        }
    }

    fn call(&self, plan: &mut Plan, f: &str, fspan: (usize, usize), args: &[Ast], ast: &Ast, off: usize) -> Result<Id> {
        let dims = self.run.dims;
        let loc = self.loc(off, fspan);
        let arity = |want: &str| PostError::at(loc.clone(), format!("{f}() takes {want}, given {}", args.len()));
        let mut ids = Vec::new();
        for a in args {
            ids.push(self.lower(plan, a, off)?);
        }
        let level = |plan: &Plan, i: usize| plan.nodes[ids[i]].level;
        let need_field = |plan: &Plan, i: usize, hint: &str| -> Result<()> {
            if level(plan, i) != Level::Field {
                return Err(PostError::at(
                    self.loc(off, args[i].span),
                    format!("{f}() needs a field here, and this is one number per snapshot"),
                )
                .help(hint.to_string()));
            }
            Ok(())
        };
        let unary = [
            ("abs", Un::Abs),
            ("sqrt", Un::Sqrt),
            ("exp", Un::Exp),
            ("log", Un::Ln),
            ("ln", Un::Ln),
            ("log10", Un::Log10),
            ("sin", Un::Sin),
            ("cos", Un::Cos),
            ("tan", Un::Tan),
            ("asin", Un::Asin),
            ("acos", Un::Acos),
            ("atan", Un::Atan),
            ("sinh", Un::Sinh),
            ("cosh", Un::Cosh),
            ("tanh", Un::Tanh),
            ("floor", Un::Floor),
            ("ceil", Un::Ceil),
            ("sign", Un::Sign),
        ];
        if let Some((_, u)) = unary.iter().find(|(n, _)| *n == f) {
            if ids.len() != 1 {
                return Err(arity("one argument"));
            }
            return Ok(plan.add(Op::Unary(*u, ids[0])));
        }
        let binary = [("atan2", Bin::Atan2), ("pow", Bin::Pow), ("hypot", Bin::Hypot)];
        if let Some((_, b)) = binary.iter().find(|(n, _)| *n == f) {
            if ids.len() != 2 {
                return Err(arity("two arguments"));
            }
            return Ok(plan.add(Op::Binary(*b, ids[0], ids[1])));
        }
        let reductions = [
            ("min", Red::Min),
            ("max", Red::Max),
            ("mean", Red::Mean),
            ("sum", Red::Sum),
            ("integral", Red::Integral),
            ("l2", Red::L2),
            ("rms", Red::Rms),
            ("linf", Red::Linf),
        ];
        if let Some((_, r)) = reductions.iter().find(|(n, _)| *n == f) {
            if (f == "min" || f == "max") && ids.len() == 2 {
                let b = if f == "min" { Bin::Min } else { Bin::Max };
                return Ok(plan.add(Op::Binary(b, ids[0], ids[1])));
            }
            if ids.len() != 1 {
                return Err(arity(if f == "min" || f == "max" {
                    "one argument (a reduction over space) or two (element-wise)"
                } else {
                    "one argument"
                }));
            }
            need_field(plan, 0, &format!("{f}() reduces a field over space; over time use t{f}(), e.g. t{f}({f}(u))"))?;
            return Ok(plan.add(Op::Reduce(*r, ids[0])));
        }
        let time_red = [
            ("tmin", TRed::Min),
            ("tmax", TRed::Max),
            ("tmean", TRed::Mean),
            ("tsum", TRed::Sum),
            ("tfirst", TRed::First),
            ("tlast", TRed::Last),
        ];
        if let Some((_, r)) = time_red.iter().find(|(n, _)| *n == f) {
            if ids.len() != 1 {
                return Err(arity("one argument"));
            }
            if level(plan, 0) != Level::Scalar {
                return Err(PostError::at(self.loc(off, args[0].span), format!("{f}() reduces one number per snapshot over time"))
                    .help(format!("reduce the field over space first, e.g. {f}(max(u)); per-cell statistics over time are time_mean(), time_rms(), time_min(), time_max()")));
            }
            let sel = plan.selection(self.selection.clone());
            return Ok(plan.add(Op::TimeReduce(*r, ids[0], sel)));
        }
        let stats = [("time_mean", Stat::Mean), ("time_rms", Stat::Rms), ("time_min", Stat::Min), ("time_max", Stat::Max)];
        if let Some((_, s)) = stats.iter().find(|(n, _)| *n == f) {
            if ids.len() != 1 {
                return Err(arity("one argument"));
            }
            need_field(plan, 0, "per-cell statistics over time take a field")?;
            let sel = plan.selection(self.selection.clone());
            return Ok(plan.add(Op::TimeStat(*s, ids[0], sel)));
        }
        let axis_of = |name: &str| -> Option<usize> {
            match name.chars().last() {
                Some('x') => Some(0),
                Some('y') => Some(1),
                Some('z') => Some(2),
                _ => None,
            }
        };
        let diff = |plan: &mut Plan, axis: usize, order: u8, arg: Id, span: (usize, usize)| -> Result<Id> {
            if axis >= dims {
                return Err(PostError::at(self.loc(off, span), "a derivative along z in a 2D run").help("a 2D run has x and y only"));
            }
            let need = if order == 1 { 3 } else { 4 };
            if self.run.cells[axis] < need && !self.run.periodic[axis] {
                return Err(PostError::at(
                    self.loc(off, span),
                    format!("the mesh has {} cells along this axis; a derivative needs at least {need}", self.run.cells[axis]),
                ));
            }
            if plan.nodes[arg].level != Level::Field {
                return Ok(plan.add(Op::Const(0.0)));
            }
            Ok(plan.add(Op::Diff { axis, order, arg }))
        };
        match f {
            "ddx" | "ddy" | "ddz" | "d2dx2" | "d2dy2" | "d2dz2" => {
                if ids.len() != 1 {
                    return Err(arity("one argument"));
                }
                let order = if f.starts_with("d2") { 2 } else { 1 };
                let axis = axis_of(if order == 2 { &f[..4] } else { f }).unwrap_or(0);
                diff(plan, axis, order, ids[0], ast.span)
            }
            "laplacian" | "grad_mag" => {
                if ids.len() != 1 {
                    return Err(arity("one argument"));
                }
                let mut terms = Vec::new();
                for a in 0..dims {
                    if f == "laplacian" {
                        terms.push(diff(plan, a, 2, ids[0], ast.span)?);
                    } else {
                        let d = diff(plan, a, 1, ids[0], ast.span)?;
                        terms.push(plan.add(Op::Binary(Bin::Mul, d, d)));
                    }
                }
                let mut s = terms[0];
                for &t in &terms[1..] {
                    s = plan.add(Op::Binary(Bin::Add, s, t));
                }
                Ok(if f == "grad_mag" { plan.add(Op::Unary(Un::Sqrt, s)) } else { s })
            }
            "divergence" | "magnitude" => {
                if ids.len() != dims && !(f == "magnitude" && (2..=3).contains(&ids.len())) {
                    return Err(arity(if dims == 2 { "two components in a 2D run" } else { "three components in a 3D run" }));
                }
                let mut s = None;
                for (a, &c) in ids.iter().enumerate() {
                    let t = if f == "divergence" { diff(plan, a, 1, c, args[a].span)? } else { plan.add(Op::Binary(Bin::Mul, c, c)) };
                    s = Some(match s {
                        None => t,
                        Some(p) => plan.add(Op::Binary(Bin::Add, p, t)),
                    });
                }
                let s = s.expect("at least two components");
                Ok(if f == "magnitude" { plan.add(Op::Unary(Un::Sqrt, s)) } else { s })
            }
            "vorticity" | "vorticity_x" | "vorticity_y" | "vorticity_z" => {
                let comps = if dims == 2 { 2 } else { 3 };
                if ids.len() != comps {
                    return Err(arity(if dims == 2 {
                        "two components (u, v) in a 2D run"
                    } else {
                        "three components (u, v, w) in a 3D run"
                    }));
                }
                if dims == 2 && f != "vorticity" && f != "vorticity_z" {
                    return Err(PostError::at(loc, format!("{f}() in a 2D run"))
                        .help("the 2D vorticity is the scalar vorticity(u, v) = dv/dx - du/dy"));
                }
                let sp = ast.span;
                let comp = |plan: &mut Plan, c: usize| -> Result<Id> {
                    // ω_c = d(u_b)/d(x_a) - d(u_a)/d(x_b) with (c, a, b) cyclic.
                    let (a, b) = ((c + 1) % 3, (c + 2) % 3);
                    let p = diff(plan, a, 1, ids[b], sp)?;
                    let q = diff(plan, b, 1, ids[a], sp)?;
                    Ok(plan.add(Op::Binary(Bin::Sub, p, q)))
                };
                match (dims, f) {
                    (2, _) => comp(plan, 2),
                    (_, "vorticity_x") => comp(plan, 0),
                    (_, "vorticity_y") => comp(plan, 1),
                    (_, "vorticity_z") => comp(plan, 2),
                    _ => {
                        let mut s = None;
                        for c in 0..3 {
                            let w = comp(plan, c)?;
                            let w2 = plan.add(Op::Binary(Bin::Mul, w, w));
                            s = Some(match s {
                                None => w2,
                                Some(p) => plan.add(Op::Binary(Bin::Add, p, w2)),
                            });
                        }
                        let s = s.expect("three components");
                        Ok(plan.add(Op::Unary(Un::Sqrt, s)))
                    }
                }
            }
            _ => Err(PostError::at(loc, format!("unknown function `{f}`")).help(format!(
                "{}functions: {}",
                did_you_mean(f, FUNCTIONS),
                FUNCTIONS.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_consing_shares_identical_subexpressions() {
        let mut p = Plan::default();
        let u = p.add(Op::Source("u".into()));
        let v = p.add(Op::Source("v".into()));
        let a = p.add(Op::Binary(Bin::Mul, u, v));
        let b = p.add(Op::Binary(Bin::Mul, v, u));
        assert_eq!(a, b);
        let s1 = p.add(Op::Binary(Bin::Sub, u, v));
        let s2 = p.add(Op::Binary(Bin::Sub, v, u));
        assert_ne!(s1, s2);
        let r = p.add(Op::Reduce(Red::Max, a));
        assert_eq!(p.nodes[r].level, Level::Scalar);
        // A field that uses a reduction waits one pass for it.
        let f = p.add(Op::Binary(Bin::Div, u, r));
        assert_eq!((p.nodes[f].level, p.nodes[f].pass), (Level::Field, 1));
        // A scalar combination of reductions does not.
        let q = p.add(Op::Binary(Bin::Div, r, r));
        assert_eq!((p.nodes[q].level, p.nodes[q].pass), (Level::Scalar, 0));
        let sel = p.selection(vec![0, 10]);
        let m = p.add(Op::TimeStat(Stat::Mean, u, sel));
        let fl = p.add(Op::Binary(Bin::Sub, u, m));
        assert_eq!(p.nodes[fl].pass, 1);
        assert_eq!(p.content(fl), "Sub(source(u),stat_Mean(source(u);steps=[0, 10]))");
        assert!(p.shared >= 1);
    }
}
