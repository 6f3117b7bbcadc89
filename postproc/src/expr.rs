//! Expressions of pipeline files: numbers, names, `+ - * / ^`, unary minus and
//! function calls, e.g. `max(abs(vorticity(velocity_x, velocity_y)))`. Parsing gives
//! a syntax tree with byte spans into the expression text, so later checks (unknown
//! field, wrong arity) can point at the offending name.
use std::fmt;

/// A syntax tree node with the byte range of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Ast {
    /// What the node is.
    pub kind: AstKind,
    /// Byte range in the expression text.
    pub span: (usize, usize),
}

/// Node kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum AstKind {
    /// A number literal.
    Num(f64),
    /// A name: a field, a derived field, a coordinate, `t`, `pi`, `e`.
    Name(String),
    /// Unary minus.
    Neg(Box<Ast>),
    /// A binary operator: one of `+ - * / ^`.
    Bin(char, Box<Ast>, Box<Ast>),
    /// A function call; the span of the name is the node's span start .. name end.
    Call(String, (usize, usize), Vec<Ast>),
}

/// A syntax error at a byte offset of the expression.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Byte offset.
    pub at: usize,
    /// Width of the offending text (>= 1).
    pub width: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(char),
    LParen,
    RParen,
    Comma,
    End,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize, usize)>, SyntaxError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && i + 1 < b.len() && (b[i + 1] as char).is_ascii_digit()) {
            while i < b.len() && ((b[i] as char).is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && (b[j] as char).is_ascii_digit() {
                    i = j;
                    while i < b.len() && (b[i] as char).is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = &src[start..i];
            let v: f64 =
                text.parse().map_err(|_| SyntaxError { at: start, width: i - start, message: format!("`{text}` is not a number") })?;
            out.push((Tok::Num(v), start, i));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start, i));
            continue;
        }
        let t = match c {
            '+' | '-' | '*' | '/' | '^' => Tok::Op(c),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            _ => {
                let w = src[start..].chars().next().map(char::len_utf8).unwrap_or(1);
                return Err(SyntaxError {
                    at: start,
                    width: w,
                    message: format!(
                        "unexpected character `{}` (allowed: numbers, names, + - * / ^, parentheses, commas)",
                        &src[start..start + w]
                    ),
                });
            }
        };
        i += 1;
        out.push((t, start, i));
    }
    out.push((Tok::End, src.len(), src.len()));
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn here(&self) -> (usize, usize) {
        let (_, a, b) = &self.toks[self.pos];
        (*a, *b)
    }

    fn bump(&mut self) -> (Tok, usize, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn fail<T>(&self, what: &str) -> Result<T, SyntaxError> {
        let (a, b) = self.here();
        let found = match self.peek() {
            Tok::End => "the end of the expression".to_string(),
            _ => format!("`{}`", &self.src[a..b]),
        };
        Err(SyntaxError { at: a, width: (b - a).max(1), message: format!("expected {what}, found {found}") })
    }

    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Result<Ast, SyntaxError> {
        let mut lhs = self.term()?;
        while let Tok::Op(c @ ('+' | '-')) = *self.peek() {
            self.bump();
            let rhs = self.term()?;
            let span = (lhs.span.0, rhs.span.1);
            lhs = Ast { kind: AstKind::Bin(c, Box::new(lhs), Box::new(rhs)), span };
        }
        Ok(lhs)
    }

    /// term := unary (('*' | '/') unary)*
    fn term(&mut self) -> Result<Ast, SyntaxError> {
        let mut lhs = self.unary()?;
        while let Tok::Op(c @ ('*' | '/')) = *self.peek() {
            self.bump();
            let rhs = self.unary()?;
            let span = (lhs.span.0, rhs.span.1);
            lhs = Ast { kind: AstKind::Bin(c, Box::new(lhs), Box::new(rhs)), span };
        }
        Ok(lhs)
    }

    /// unary := '-' unary | '+' unary | power
    fn unary(&mut self) -> Result<Ast, SyntaxError> {
        match *self.peek() {
            Tok::Op('-') => {
                let (_, a, _) = self.bump();
                let inner = self.unary()?;
                let span = (a, inner.span.1);
                Ok(Ast { kind: AstKind::Neg(Box::new(inner)), span })
            }
            Tok::Op('+') => {
                self.bump();
                self.unary()
            }
            _ => self.power(),
        }
    }

    /// power := atom ('^' unary)?   (right associative; -x^2 = -(x^2))
    fn power(&mut self) -> Result<Ast, SyntaxError> {
        let base = self.atom()?;
        if let Tok::Op('^') = self.peek() {
            self.bump();
            let exp = self.unary()?;
            let span = (base.span.0, exp.span.1);
            return Ok(Ast { kind: AstKind::Bin('^', Box::new(base), Box::new(exp)), span });
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Ast, SyntaxError> {
        match self.peek().clone() {
            Tok::Num(v) => {
                let (_, a, b) = self.bump();
                Ok(Ast { kind: AstKind::Num(v), span: (a, b) })
            }
            Tok::Ident(name) => {
                let (_, a, b) = self.bump();
                if *self.peek() != Tok::LParen {
                    return Ok(Ast { kind: AstKind::Name(name), span: (a, b) });
                }
                self.bump();
                let mut args = Vec::new();
                if *self.peek() != Tok::RParen {
                    loop {
                        args.push(self.expr()?);
                        match self.peek() {
                            Tok::Comma => {
                                self.bump();
                            }
                            Tok::RParen => break,
                            _ => return self.fail("`,` or `)`"),
                        }
                    }
                }
                let (_, _, end) = self.bump();
                Ok(Ast { kind: AstKind::Call(name, (a, b), args), span: (a, end) })
            }
            Tok::LParen => {
                let (_, a, _) = self.bump();
                let mut inner = self.expr()?;
                if *self.peek() != Tok::RParen {
                    return self.fail("`)`");
                }
                let (_, _, end) = self.bump();
                inner.span = (a, end);
                Ok(inner)
            }
            _ => self.fail("a number, a name or `(`"),
        }
    }
}

/// Parses `src` into a syntax tree.
pub fn parse(src: &str) -> Result<Ast, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, src };
    if *p.peek() == Tok::End {
        return Err(SyntaxError { at: 0, width: 1, message: "empty expression".into() });
    }
    let e = p.expr()?;
    if *p.peek() != Tok::End {
        return p.fail("an operator or the end of the expression");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(a: &Ast) -> String {
        match &a.kind {
            AstKind::Num(v) => format!("{v}"),
            AstKind::Name(n) => n.clone(),
            AstKind::Neg(x) => format!("(-{})", show(x)),
            AstKind::Bin(c, l, r) => format!("({} {c} {})", show(l), show(r)),
            AstKind::Call(f, _, args) => format!("{f}[{}]", args.iter().map(show).collect::<Vec<_>>().join(", ")),
        }
    }

    #[test]
    fn precedence_and_calls() {
        assert_eq!(show(&parse("1 + 2*x^2^3 - -y").unwrap()), "((1 + (2 * (x ^ (2 ^ 3)))) - (-y))");
        assert_eq!(show(&parse("-x^2").unwrap()), "(-(x ^ 2))");
        assert_eq!(show(&parse("max(abs(vorticity(u, v)))").unwrap()), "max[abs[vorticity[u, v]]]");
        assert_eq!(show(&parse("(a+b)/2.5e-1").unwrap()), "((a + b) / 0.25)");
        assert_eq!(show(&parse("f()").unwrap()), "f[]");
    }

    #[test]
    fn spans_point_at_names() {
        let a = parse("1 + sin(velx)").unwrap();
        let AstKind::Bin(_, _, r) = a.kind else { panic!() };
        let AstKind::Call(_, name, args) = r.kind else { panic!() };
        assert_eq!(name, (4, 7));
        assert_eq!(args[0].span, (8, 12));
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("1 + * 2").unwrap_err();
        assert_eq!((e.at, e.width), (4, 1));
        assert!(e.message.contains("expected a number"), "{}", e.message);
        let e = parse("max(a, b").unwrap_err();
        assert_eq!(e.at, 8);
        assert!(e.message.contains("end of the expression"));
        let e = parse("a $ b").unwrap_err();
        assert!(e.message.contains("unexpected character `$`"));
        assert!(parse("").is_err() && parse("   ").is_err());
        assert!(parse("a b").unwrap_err().message.contains("found `b`"));
    }
}
