//! Expressions of space and time (`"sin(pi*x)*exp(-t)"`) for initial values,
//! sources and boundary values, parsed once with `exmex` and evaluated per cell.
use exmex::{BinOp, Express, FlatEx, FloatOpsFactory, MakeOperators, MatchLiteral, Operator};

/// exmex's float operators plus lowercase `pi`, as users write it.
#[derive(Clone, Debug)]
pub struct Ops;

impl MakeOperators<f64> for Ops {
    fn make<'a>() -> Vec<Operator<'a, f64>> {
        let mut ops = FloatOpsFactory::<f64>::make();
        ops.push(Operator::make_constant("pi", std::f64::consts::PI));
        ops.push(Operator::make_bin("%", BinOp { apply: |a, b| a.rem_euclid(b), prio: 3, is_commutative: false }));
        ops
    }
}

/// Number literals including scientific notation (`1e-3`, `2.5E+4`, `.5`), which
/// exmex's default matcher does not accept.
#[derive(Clone, Debug)]
pub struct SciNumber;

impl MatchLiteral for SciNumber {
    fn is_literal(text: &str) -> Option<&str> {
        let b = text.as_bytes();
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut i = digits(0);
        let int_len = i;
        if i < b.len() && b[i] == b'.' {
            i = digits(i + 1);
        }
        if i == 0 || (int_len == 0 && i == 1) {
            return None;
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            let k = digits(j);
            if k > j {
                i = k;
            }
        }
        Some(&text[..i])
    }
}

/// Variables an expression may use.
pub const VARIABLES: [&str; 4] = ["x", "y", "z", "t"];

/// A parsed expression in the variables x, y, z, t.
#[derive(Clone, Debug)]
pub struct Expr {
    src: String,
    ex: FlatEx<f64, Ops, SciNumber>,
    /// Position of x, y, z, t in exmex's (sorted) variable list.
    slots: [Option<usize>; 4],
    /// Constant value when the expression has no variables.
    constant: Option<f64>,
}

impl Expr {
    /// Parses `src`. Errors say what is wrong and which variables and functions exist.
    pub fn parse(src: &str) -> Result<Self, String> {
        if src.trim().is_empty() {
            return Err("empty expression; write a number or a formula in x, y, z, t such as \"sin(pi*x)\"".into());
        }
        let ex = FlatEx::<f64, Ops, SciNumber>::parse(src).map_err(|e| {
            format!(
                "cannot parse expression \"{src}\": {}; allowed: numbers, + - * / ^ %, parentheses, variables x y z t, \
                 constants pi PI E, functions sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh exp ln log log2 log10 sqrt cbrt abs signum floor ceil round trunc fract",
                e.msg()
            )
        })?;
        let mut slots = [None; 4];
        for (pos, name) in ex.var_names().iter().enumerate() {
            match VARIABLES.iter().position(|v| v == name) {
                Some(i) => slots[i] = Some(pos),
                None => {
                    let hint = crate::error::suggest(name, &VARIABLES).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    return Err(format!(
                        "unknown name `{name}` in expression \"{src}\"{hint}; allowed variables: x, y, z, t (and constants pi, E)"
                    ));
                }
            }
        }
        let constant = if ex.var_names().is_empty() {
            Some(ex.eval(&[]).map_err(|e| format!("cannot evaluate \"{src}\": {}", e.msg()))?)
        } else {
            None
        };
        Ok(Expr { src: src.to_string(), ex, slots, constant })
    }

    /// A constant expression.
    pub fn constant(v: f64) -> Self {
        Self::parse(&format!("{v:e}")).expect("a float literal parses")
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The value when the expression has no variables.
    pub fn as_constant(&self) -> Option<f64> {
        self.constant
    }

    /// True when the expression uses `t`.
    pub fn depends_on_time(&self) -> bool {
        self.slots[3].is_some()
    }

    /// True when the expression uses `z`.
    pub fn uses_z(&self) -> bool {
        self.slots[2].is_some()
    }

    /// Evaluates at (x, y, z, t).
    #[inline]
    pub fn eval(&self, x: f64, y: f64, z: f64, t: f64) -> f64 {
        if let Some(c) = self.constant {
            return c;
        }
        let all = [x, y, z, t];
        let mut vars = [0.0; 4];
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(p) = s {
                vars[*p] = all[i];
            }
        }
        let n = self.ex.var_names().len();
        // Variables were checked at parse time, so evaluation cannot fail on arity.
        self.ex.eval(&vars[..n]).unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_in_xyzt() {
        let e = Expr::parse("sin(pi*x)*cos(pi*y) + t*z").unwrap();
        let v = e.eval(0.5, 0.0, 2.0, 3.0);
        assert!((v - 7.0).abs() < 1e-15);
        assert!(e.depends_on_time() && e.uses_z());
        assert_eq!(Expr::parse("2^3").unwrap().as_constant(), Some(8.0));
        assert_eq!(Expr::parse("y").unwrap().eval(1.0, 2.0, 3.0, 4.0), 2.0);
        assert_eq!(Expr::constant(0.25).eval(9.0, 9.0, 9.0, 9.0), 0.25);
        assert_eq!(Expr::parse("1e-3*2").unwrap().as_constant(), Some(2e-3));
        assert_eq!(Expr::parse("2.5E+1 + .5").unwrap().as_constant(), Some(25.5));
        // `e` alone is still Euler's number; `2*e` is not an exponent.
        assert_eq!(Expr::parse("2*e").unwrap().as_constant(), Some(2.0 * std::f64::consts::E));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Expr::parse("sin(pi*q)").unwrap_err();
        assert!(e.contains("unknown name `q`") && e.contains("x, y, z, t"), "{e}");
        let e = Expr::parse("sin(pi*x").unwrap_err();
        assert!(e.contains("cannot parse"), "{e}");
        assert!(Expr::parse("  ").is_err());
        let e = Expr::parse("xx + 1").unwrap_err();
        assert!(e.contains("did you mean `x`"), "{e}");
    }
}
