//! Which CSV columns are features, which are the label, and which are ignored (SPEC §4).
//!
//! The label is the column(s) named by `--label` (several, comma-separated, for a real label
//! `t[k]`), else the column named `label`, else the last column (the last `k` for `t[k]`).
//! The features are the columns named by `--features`, in that order, else every other column
//! in file order. Columns that are neither (only with `--features`) are never parsed, so an
//! id or a free-text column may stay in the file.

use crate::data::{LabelPolicy, LoadOptions, list};
use crate::schema::Schema;

/// What one column of the file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Feature number `j` of an example row.
    Feature(usize),
    /// Element `k` of the label.
    Label(usize),
    Ignored,
}

/// The roles of a file's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Columns {
    /// One per header column.
    pub roles: Vec<Role>,
    /// Header indices of the features, in feature order.
    pub features: Vec<usize>,
    /// Header indices of the label elements, in order (empty: no label column).
    pub labels: Vec<usize>,
}

/// An error in the header row: column `field` (0-based) of line 1.
pub(crate) type HeaderError = (usize, String);

/// Assigns every column of `header` a role for a model with `schema`.
pub(crate) fn select(header: &[String], schema: &Schema, opts: &LoadOptions) -> Result<Columns, HeaderError> {
    let find = |name: &str, flag: &str| -> Result<usize, HeaderError> {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| (0, format!("no column named `{name}` for {flag} (the columns are: {})", list(header))))
    };
    let labels = label_columns(header, schema, opts, &find)?;
    let features: Vec<usize> = match opts.features {
        Some(names) => {
            let mut idx = Vec::with_capacity(names.len());
            for name in names {
                let i = find(name, "--features")?;
                if idx.contains(&i) {
                    return Err((i, format!("column `{name}` is named twice in --features")));
                }
                if labels.contains(&i) {
                    return Err((i, format!("column `{name}` is the label; it cannot also be a feature")));
                }
                idx.push(i);
            }
            idx
        }
        None => (0..header.len()).filter(|i| !labels.contains(i)).collect(),
    };
    let mut roles = vec![Role::Ignored; header.len()];
    for (j, &i) in features.iter().enumerate() {
        roles[i] = Role::Feature(j);
    }
    for (k, &i) in labels.iter().enumerate() {
        roles[i] = Role::Label(k);
    }
    check_width(header, &features, &labels, schema, opts)?;
    Ok(Columns { roles, features, labels })
}

/// Header indices of the label elements.
fn label_columns(
    header: &[String],
    schema: &Schema,
    opts: &LoadOptions,
    find: &dyn Fn(&str, &str) -> Result<usize, HeaderError>,
) -> Result<Vec<usize>, HeaderError> {
    let width = schema.label.as_ref().map_or(1, |l| l.kind.width());
    if let Some(text) = opts.label_column {
        let names: Vec<&str> = text.split(',').map(str::trim).collect();
        let idx = names.iter().map(|n| find(n, "--label")).collect::<Result<Vec<_>, _>>()?;
        if let Some(l) = &schema.label
            && idx.len() != width
        {
            return Err((
                idx[0],
                format!(
                    "--label names {} column{}, but the model's label `{}` takes {width} per example",
                    idx.len(),
                    if idx.len() == 1 { "" } else { "s" },
                    l.name
                ),
            ));
        }
        return Ok(idx);
    }
    if schema.label.is_none() {
        return Ok(Vec::new());
    }
    let named = header.iter().position(|h| h == "label").filter(|_| width == 1);
    match (opts.features, opts.policy) {
        // Predicting: no label column when the file holds exactly the features.
        (None, LabelPolicy::Optional) if header.len() == schema.features() => Ok(Vec::new()),
        (Some(f), _) => {
            // With --features: the `label` column, else (training) the last column not a feature.
            let free = |i: &usize| !f.iter().any(|n| *n == header[*i]);
            match named.filter(free) {
                Some(i) => Ok(vec![i]),
                None if opts.policy == LabelPolicy::Optional => Ok(Vec::new()),
                None => {
                    let rest: Vec<usize> = (0..header.len()).filter(free).collect();
                    Ok(rest[rest.len().saturating_sub(width)..].to_vec())
                }
            }
        }
        (None, _) => match named {
            Some(i) => Ok(vec![i]),
            None => Ok((header.len().saturating_sub(width)..header.len()).collect()),
        },
    }
}

/// The feature columns must fill the model's inputs exactly, and the label have its width.
fn check_width(
    header: &[String],
    features: &[usize],
    labels: &[usize],
    schema: &Schema,
    opts: &LoadOptions,
) -> Result<(), HeaderError> {
    if let Some(l) = &schema.label
        && !labels.is_empty()
        && labels.len() != l.kind.width()
    {
        return Err((
            0,
            format!(
                "the model's label `{}` takes {} columns per example, but the file has {} besides the features",
                l.name,
                l.kind.width(),
                labels.len()
            ),
        ));
    }
    let (have, want) = (features.len(), schema.features());
    if have == want {
        return Ok(());
    }
    let names: Vec<String> = labels.iter().map(|&i| format!("`{}`", header[i])).collect();
    let besides = match (labels.len(), opts.features) {
        (_, Some(_)) => "named by --features".to_string(),
        (0, None) => "and no label column".to_string(),
        (1, None) => format!("besides the label column {}", names[0]),
        (_, None) => format!("besides the label columns {}", names.join(", ")),
    };
    Err((
        0,
        format!(
            "the model's inputs ({}) take {want} columns per example, but the file has {have} columns {besides}",
            schema.describe_inputs()
        ),
    ))
}
