//! Plan optimisation that does not depend on the data: culling (only nodes some output
//! needs are kept; a `[[derive]]` no output uses costs nothing) and the Graphviz export
//! of the optimised plan (`--graph plan.dot`). Sharing of identical sub-expressions
//! happens as the plan is built ([`crate::plan::Plan::add`]); fusion of element-wise
//! chains in [`crate::kernel`]; pushdown of line and probe selections to the rows (and
//! snapshots) they touch in [`crate::execute`].
use crate::plan::{Id, Level, Op, Plan};
use std::collections::BTreeSet;

/// The nodes the outputs need, and how many of the plan's nodes were culled.
pub fn cull(plan: &Plan, roots: &[Id]) -> (BTreeSet<Id>, usize) {
    let keep = plan.closure(roots);
    let culled = plan.nodes.len() - keep.len();
    (keep, culled)
}

fn label(plan: &Plan, id: Id) -> String {
    let n = &plan.nodes[id];
    let axis = |a: usize| ["x", "y", "z"][a.min(2)];
    match &n.op {
        Op::Source(s) => format!("read {s}"),
        Op::Coord(a) => axis(*a).to_string(),
        Op::Time => "t".into(),
        Op::Step => "step".into(),
        Op::Const(c) => format!("{c}"),
        Op::Unary(u, _) => format!("{u:?}").to_lowercase(),
        Op::Binary(b, _, _) => format!("{b:?}").to_lowercase(),
        Op::Diff { axis: a, order, .. } => {
            if *order == 1 {
                format!("d/d{}", axis(*a))
            } else {
                format!("d²/d{}²", axis(*a))
            }
        }
        Op::Reduce(r, _) => format!("{r:?} over space").to_lowercase(),
        Op::TimeReduce(r, _, s) => format!("{r:?} over {} snapshots", plan.selections[*s].len()).to_lowercase(),
        Op::TimeStat(st, _, s) => format!("time {st:?} over {} snapshots", plan.selections[*s].len()).to_lowercase(),
    }
}

/// Graphviz text of the plan restricted to `keep`, with one box per output pointing at
/// the nodes it uses. Shapes: sources are cylinders (HDF5 reads), stencils diamonds,
/// reductions and time statistics inverted houses; element-wise nodes (fused into row
/// kernels) are plain ellipses.
pub fn dot(plan: &Plan, keep: &BTreeSet<Id>, outputs: &[(String, Vec<Id>)]) -> String {
    let mut s = String::from("digraph plan {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
    for &id in keep {
        let n = &plan.nodes[id];
        let shape = match n.op {
            Op::Source(_) => "cylinder",
            Op::Diff { .. } => "diamond",
            Op::Reduce(..) | Op::TimeReduce(..) | Op::TimeStat(..) => "invhouse",
            _ => "ellipse",
        };
        let style = match n.level {
            Level::Field => "",
            _ => ", style=dashed",
        };
        s += &format!("  n{id} [label=\"{}\\n#{id} pass {}\", shape={shape}{style}];\n", label(plan, id).replace('"', "'"), n.pass + 1);
        for c in plan.children(id) {
            s += &format!("  n{c} -> n{id};\n");
        }
    }
    for (k, (name, ids)) in outputs.iter().enumerate() {
        s += &format!("  out{k} [label=\"{}\", shape=box, style=filled, fillcolor=\"#dde8f5\"];\n", name.replace('"', "'"));
        for id in ids.iter().collect::<BTreeSet<_>>() {
            s += &format!("  n{id} -> out{k};\n");
        }
    }
    s += "}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Bin, Red};

    #[test]
    fn culling_and_dot() {
        let mut p = Plan::default();
        let u = p.add(Op::Source("u".into()));
        let v = p.add(Op::Source("v".into()));
        let unused = p.add(Op::Binary(Bin::Mul, v, v));
        let m = p.add(Op::Reduce(Red::Max, u));
        let (keep, culled) = cull(&p, &[m]);
        assert!(keep.contains(&u) && keep.contains(&m) && !keep.contains(&unused) && !keep.contains(&v));
        assert_eq!(culled, 2);
        let d = dot(&p, &keep, &[("stats".into(), vec![m])]);
        assert!(d.starts_with("digraph plan {") && d.contains("read u") && d.contains("-> out0") && !d.contains("read v"), "{d}");
    }
}
