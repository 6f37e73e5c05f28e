//! `--set 'x=-2,W=[[1,2],[3,4]]'`: name/value pairs for `eval` (SPEC §4).
//!
//! Pairs are separated by commas outside brackets; a value is a number or a nested,
//! rectangular bracketed list. Errors quote the pair they are about.

/// One `NAME=VALUE` pair: the value's shape (`[]` for a number) and its elements row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// The pair as written, for error messages.
    pub text: String,
}

/// Parses one `--set` argument into its pairs.
pub fn parse(arg: &str) -> Result<Vec<Setting>, String> {
    parse_flag(arg, "--set")
}

/// Parses the argument of `flag` (`--set` or `--hvp`); errors quote the flag and the pair.
pub fn parse_flag(arg: &str, flag: &str) -> Result<Vec<Setting>, String> {
    split_pairs(arg, flag)?.into_iter().map(|p| parse_pair(p, flag)).collect()
}

/// Splits at commas at bracket depth 0.
fn split_pairs<'a>(arg: &'a str, flag: &str) -> Result<Vec<&'a str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in arg.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Err(format!("in {flag} '{arg}': unmatched `]`")),
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&arg[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(format!("in {flag} '{arg}': unclosed `[`"));
    }
    out.push(&arg[start..]);
    Ok(out.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

fn parse_pair(pair: &str, flag: &str) -> Result<Setting, String> {
    let text = pair.trim().to_string();
    let err = |what: String| format!("in {flag} '{text}': {what}");
    let Some((name, value)) = text.split_once('=') else {
        return Err(err("expected NAME=VALUE".into()));
    };
    let name = name.trim();
    let ident = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !ident {
        return Err(err(format!("`{name}` is not a name")));
    }
    let mut p = ValueParser { s: value.as_bytes(), i: 0 };
    let (shape, data) = p.value().map_err(err)?;
    p.skip_ws();
    if p.i < p.s.len() {
        return Err(err(format!("unexpected `{}` after the value", &value[p.i..].trim())));
    }
    Ok(Setting { name: name.to_string(), shape, data, text })
}

struct ValueParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl ValueParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// A number or a bracketed list; returns (shape, elements).
    fn value(&mut self) -> Result<(Vec<usize>, Vec<f64>), String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'[') => self.list(),
            Some(_) => self.number().map(|x| (vec![], vec![x])),
            None => Err("expected a number or a [list], found nothing".into()),
        }
    }

    fn list(&mut self) -> Result<(Vec<usize>, Vec<f64>), String> {
        self.i += 1;
        let (mut item_shape, mut data, mut n) = (None::<Vec<usize>>, Vec::new(), 0);
        self.skip_ws();
        if self.s.get(self.i) == Some(&b']') {
            return Err("empty list `[]`".into());
        }
        loop {
            let (shape, elems) = self.value()?;
            match &item_shape {
                Some(s) if *s != shape => {
                    return Err(format!("ragged list: an element of shape {shape:?} after elements of shape {s:?}"));
                }
                _ => item_shape = Some(shape),
            }
            data.extend(elems);
            n += 1;
            self.skip_ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err("expected `,` or `]` in a list".into()),
            }
        }
        let mut shape = vec![n];
        shape.extend(item_shape.unwrap_or_default());
        Ok((shape, data))
    }

    fn number(&mut self) -> Result<f64, String> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| !matches!(c, b',' | b'[' | b']') && !c.is_ascii_whitespace()) {
            self.i += 1;
        }
        let tok = String::from_utf8_lossy(&self.s[start..self.i]);
        match tok.parse::<f64>() {
            Ok(x) if (x as f32).is_finite() => Ok(x),
            Ok(_) => Err(format!("`{tok}` is not a finite float32 number")),
            Err(_) => Err(format!("expected a number, found `{tok}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, shape: &[usize], data: &[f64], text: &str) -> Setting {
        Setting { name: name.into(), shape: shape.to_vec(), data: data.to_vec(), text: text.into() }
    }

    #[test]
    fn non_finite_values_are_refused() {
        for bad in ["x=1e40", "x=nan", "x=-inf"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("is not a finite float32 number"), "{bad}: {err}");
        }
    }

    #[test]
    fn scalars_and_nested_lists() {
        assert_eq!(
            parse("x=-2, y=5,z=-4e0").unwrap(),
            vec![one("x", &[], &[-2.0], "x=-2"), one("y", &[], &[5.0], "y=5"), one("z", &[], &[-4.0], "z=-4e0")]
        );
        assert_eq!(
            parse("W=[[1,2],[3, 4]],b=[.5]").unwrap(),
            vec![one("W", &[2, 2], &[1.0, 2.0, 3.0, 4.0], "W=[[1,2],[3, 4]]"), one("b", &[1], &[0.5], "b=[.5]")]
        );
    }

    #[test]
    fn errors_quote_the_pair() {
        assert_eq!(
            parse("x=1,W=[[1,2],[3]]").unwrap_err(),
            "in --set 'W=[[1,2],[3]]': ragged list: an element of shape [1] after elements of shape [2]"
        );
        assert_eq!(parse("w=[1,2").unwrap_err(), "in --set 'w=[1,2': unclosed `[`");
        assert_eq!(parse("x=abc").unwrap_err(), "in --set 'x=abc': expected a number, found `abc`");
        assert_eq!(parse("x").unwrap_err(), "in --set 'x': expected NAME=VALUE");
        assert_eq!(parse("2x=1").unwrap_err(), "in --set '2x=1': `2x` is not a name");
        assert_eq!(parse("x=").unwrap_err(), "in --set 'x=': expected a number or a [list], found nothing");
        assert_eq!(parse("x=[1 2]").unwrap_err(), "in --set 'x=[1 2]': expected `,` or `]` in a list");
        assert_eq!(parse("x=[]").unwrap_err(), "in --set 'x=[]': empty list `[]`");
        assert_eq!(parse("x=1]").unwrap_err(), "in --set 'x=1]': unmatched `]`");
    }
}
