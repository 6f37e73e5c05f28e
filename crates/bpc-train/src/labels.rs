//! The label column: class labels written as integers or as names (mapped to classes in
//! sorted order), or real targets. Used by [`crate::data::load`] one field at a time.

use std::collections::HashMap;

use crate::data::{LabelEncoding, Labels, LoadOptions, list, parse_number};
use crate::schema::{LabelKind, Schema};

/// Reads class or real labels, inferring integers vs names from the first row unless the
/// training set's encoding is given.
pub(crate) struct LabelReader {
    kind: Option<LabelKind>,
    /// Names of the label columns.
    columns: Vec<String>,
    /// The current row's real label elements.
    row: Vec<f32>,
    /// Fixed (given) or inferred encoding; `None` until the first row of an inferred one.
    mode: Option<Mode>,
    classes: Vec<i32>,
    reals: Vec<f32>,
    /// Names in first-seen order, with their first-seen index.
    seen: HashMap<String, i32>,
    order: Vec<String>,
}

enum Mode {
    Integers,
    /// Names known in advance (from the training set): sorted, fixed.
    GivenNames(HashMap<String, i32>, Vec<String>),
    /// Names collected from this file; sorted at the end.
    NewNames,
}

impl LabelReader {
    pub(crate) fn new(schema: &Schema, opts: &LoadOptions, columns: &[String]) -> LabelReader {
        let mode = opts.encoding.map(|e| match e {
            LabelEncoding::Integers => Mode::Integers,
            LabelEncoding::Names(n) => {
                Mode::GivenNames(n.iter().enumerate().map(|(i, s)| (s.clone(), i as i32)).collect(), n.clone())
            }
        });
        let kind = schema.label.as_ref().filter(|_| !columns.is_empty()).map(|l| l.kind);
        LabelReader {
            kind,
            columns: columns.to_vec(),
            row: vec![0.0; kind.map_or(0, |k| k.width())],
            mode,
            classes: Vec::new(),
            reals: Vec::new(),
            seen: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Reads element `at` of the current row's label from `field`.
    pub(crate) fn push(&mut self, at: usize, field: &[u8]) -> Result<(), String> {
        let k = match self.kind {
            None => return Ok(()), // a label column for a model without labels: ignored
            Some(LabelKind::Real(_)) => {
                self.row[at] = parse_number(field).map_err(|found| {
                    format!("expected a number in label column `{}`, found {found}", self.columns[at])
                })?;
                return Ok(());
            }
            Some(LabelKind::Class(k)) => k,
        };
        let text = String::from_utf8_lossy(field);
        let numeric = text.parse::<f64>().ok();
        let mode = self.mode.get_or_insert(if numeric.is_some() { Mode::Integers } else { Mode::NewNames });
        let class = match mode {
            Mode::Integers => match numeric {
                Some(c) if c.fract() == 0.0 && c >= 0.0 && c < k as f64 => c as i32,
                Some(c) if c.fract() == 0.0 => {
                    return Err(format!(
                        "class label `{text}` is out of range: expected 0 to {} for class({k})",
                        k - 1
                    ));
                }
                Some(_) => return Err(format!("class label `{text}` is not an integer: expected 0 to {}", k - 1)),
                None => return Err(format!("expected an integer class label from 0 to {}, found `{text}`", k - 1)),
            },
            Mode::GivenNames(map, names) => match map.get(text.as_ref()) {
                Some(&c) => c,
                None => return Err(format!("unknown class `{text}`; the training data has classes {}", list(names))),
            },
            Mode::NewNames => match self.seen.get(text.as_ref()) {
                Some(&c) => c,
                None => {
                    if self.order.len() == k {
                        return Err(format!(
                            "`{text}` would be class name number {}, but the label is class({k})",
                            k + 1
                        ));
                    }
                    let c = self.order.len() as i32;
                    self.seen.insert(text.to_string(), c);
                    self.order.push(text.into_owned());
                    c
                }
            },
        };
        self.classes.push(class);
        Ok(())
    }

    /// Ends a row (real labels are stored once all their columns are read).
    pub(crate) fn end_row(&mut self) {
        if let Some(LabelKind::Real(_)) = self.kind {
            self.reals.extend_from_slice(&self.row);
        }
    }

    pub(crate) fn finish(mut self) -> Labels {
        match self.kind {
            None => Labels::None,
            Some(LabelKind::Real(_)) => Labels::Real(self.reals),
            Some(LabelKind::Class(_)) => match self.mode {
                None | Some(Mode::Integers) => {
                    Labels::Class { values: self.classes, encoding: LabelEncoding::Integers }
                }
                Some(Mode::GivenNames(_, names)) => {
                    Labels::Class { values: self.classes, encoding: LabelEncoding::Names(names) }
                }
                Some(Mode::NewNames) => {
                    // Renumber first-seen indices to sorted order.
                    let mut sorted: Vec<usize> = (0..self.order.len()).collect();
                    sorted.sort_by(|&a, &b| self.order[a].cmp(&self.order[b]));
                    let mut rank = vec![0i32; sorted.len()];
                    for (r, &i) in sorted.iter().enumerate() {
                        rank[i] = r as i32;
                    }
                    for c in &mut self.classes {
                        *c = rank[*c as usize];
                    }
                    let names = sorted.iter().map(|&i| std::mem::take(&mut self.order[i])).collect();
                    Labels::Class { values: self.classes, encoding: LabelEncoding::Names(names) }
                }
            },
        }
    }
}
