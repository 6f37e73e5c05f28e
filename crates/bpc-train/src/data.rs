//! Loading CSV (and `.csv.gz`) data sets into a [`Dataset`].
//!
//! A file has a header row; the label is the column named by `--label`, else the column
//! named `label`, else the last one; the features are the columns named by `--features`, else
//! the other columns in file order; they fill the model's inputs (see [`Schema`] and
//! the private `columns` module). Parsing is the `csv` crate's (quoted fields, CRLF, a UTF-8 BOM, blank
//! lines); fields are trimmed. Every error names `file:line:column` (column = character
//! position in the line, 1-based) and what was expected; loading stops at the first one,
//! before anything is trained.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rand::seq::SliceRandom;

use crate::columns::{Role, select};
use crate::labels::LabelReader;
use crate::schema::Schema;

/// A data error: the file, the position where the input has one, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    /// The data file.
    pub path: String,
    /// 1-based line and character column.
    pub at: Option<(u64, u64)>,
    /// What was expected (`Display` prints `path:line:column: message`).
    pub message: String,
}

impl DataError {
    fn file(path: &str, message: impl Into<String>) -> DataError {
        DataError { path: path.to_string(), at: None, message: message.into() }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for DataError {}

/// How class labels are written in a file: integers `0..K`, or names mapped to indices in
/// sorted order (`names[i]` is class `i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelEncoding {
    /// The file wrote the class indices `0..K` themselves.
    Integers,
    /// The file wrote names; `names[i]` is class `i` (the names sorted).
    Names(Vec<String>),
}

/// The label column of a data set.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// The file has no label column (only for `predict`).
    None,
    /// Class indices and how the file wrote them.
    Class {
        /// One class index in `0..K` per example (checked when loaded).
        values: Vec<i32>,
        /// Whether the file wrote indices or names.
        encoding: LabelEncoding,
    },
    /// Real targets: `label_width` per example, row-major.
    Real(Vec<f32>),
}

/// A loaded data set: `len()` examples of `n_features` floats, row-major, plus labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The file it was loaded from (for messages).
    pub path: String,
    /// Header names of the feature columns, in feature order.
    pub feature_names: Vec<String>,
    /// Header names of the label columns (empty without labels).
    pub label_names: Vec<String>,
    /// Label elements per example: 1, or `k` for a real label `t[k]`.
    pub label_width: usize,
    /// Floats per example: every input's elements, inputs in declaration order, each
    /// row-major (for one input `x[4]`: 4).
    pub n_features: usize,
    /// Number of examples.
    pub rows: usize,
    /// `rows * n_features` floats, one example per row.
    pub features: Vec<f32>,
    /// The label of every example ([`Dataset::class_labels`] for class indices).
    pub labels: Labels,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.n_features..(i + 1) * self.n_features]
    }

    /// The class index of every example ([`Labels::Class`]'s `values`), or `None` for real
    /// labels or none: the `y` of a `bpc::Label::Class` minibatch of the examples `idx` is
    /// `idx.iter().map(|&i| class_labels[i])`.
    pub fn class_labels(&self) -> Option<&[i32]> {
        match &self.labels {
            Labels::Class { values, .. } => Some(values),
            Labels::None | Labels::Real(_) => None,
        }
    }

    /// Class names, if the file wrote class labels as names.
    pub fn class_names(&self) -> Option<&[String]> {
        match &self.labels {
            Labels::Class { encoding: LabelEncoding::Names(n), .. } => Some(n),
            Labels::Class { encoding: LabelEncoding::Integers, .. } | Labels::None | Labels::Real(_) => None,
        }
    }

    /// The examples `idx`, in that order, as a new data set (for a validation split).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let f = self.n_features;
        let features = idx.iter().flat_map(|&i| self.row(i).iter().copied()).collect::<Vec<f32>>();
        debug_assert_eq!(features.len(), idx.len() * f);
        let labels = match &self.labels {
            Labels::None => Labels::None,
            Labels::Class { values, encoding } => {
                Labels::Class { values: idx.iter().map(|&i| values[i]).collect(), encoding: encoding.clone() }
            }
            Labels::Real(values) => {
                let w = self.label_width;
                Labels::Real(idx.iter().flat_map(|&i| values[i * w..(i + 1) * w].iter().copied()).collect())
            }
        };
        Dataset { rows: idx.len(), features, labels, ..self.clone_header() }
    }

    /// Moves a random fraction `fraction` (rounded, at least one example, leaving at least
    /// one) of the examples, chosen by `seed`, into a new data set for validation; both keep
    /// the file's order.
    pub fn split_validation(&mut self, fraction: f64, seed: u64) -> Result<Dataset, DataError> {
        let n = self.len();
        if n < 2 {
            return Err(DataError::file(&self.path, format!("--val-split needs at least 2 examples, found {n}")));
        }
        let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut crate::init::stream(seed, "validation split"));
        let (mut val, mut train) = (order[..k].to_vec(), order[k..].to_vec());
        val.sort_unstable();
        train.sort_unstable();
        let mut v = self.subset(&val);
        v.path = format!("{} (--val-split {fraction})", self.path);
        *self = self.subset(&train);
        Ok(v)
    }

    /// Everything but the examples.
    fn clone_header(&self) -> Dataset {
        Dataset {
            path: self.path.clone(),
            feature_names: self.feature_names.clone(),
            label_names: self.label_names.clone(),
            label_width: self.label_width,
            n_features: self.n_features,
            rows: 0,
            features: Vec::new(),
            labels: Labels::None,
        }
    }
}

/// Whether the file must have a label column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelPolicy {
    /// Training and validation data.
    Required,
    /// `predict`: a file whose column count equals the model's feature count has no label.
    Optional,
}

/// How to read the label and feature columns.
#[derive(Clone, Debug)]
pub struct LoadOptions<'a> {
    /// `--label NAME` (`A,B,C` for a real label of three elements).
    pub label_column: Option<&'a str>,
    /// `--features A,B,C`: these columns, in this order, fill the inputs; others are ignored.
    pub features: Option<&'a [String]>,
    /// The training set's encoding, which a validation or test file must follow.
    pub encoding: Option<&'a LabelEncoding>,
    pub policy: LabelPolicy,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions { label_column: None, features: None, encoding: None, policy: LabelPolicy::Required }
    }
}

/// Opens `path`, decompressing `.gz`; the error names the path and the system's reason.
fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| DataError::file(&shown, format!("cannot open: {e}")))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file))))
    } else {
        Ok(Box::new(file))
    }
}

/// Loads `path` for a model with `schema`.
pub fn load(path: &Path, schema: &Schema, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let shown = path.display().to_string();
    let reader = open(path)?;
    let mut csv =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(1 << 16).from_reader(reader);
    let mut rec = csv::ByteRecord::new();
    let err = |e: csv::Error| csv_error(&shown, e);
    if !csv.read_byte_record(&mut rec).map_err(err)? {
        return Err(DataError { path: shown, at: Some((1, 1)), message: "empty file: expected a header row".into() });
    }
    // Fields are trimmed here rather than by the reader: its `Trim::All` rewrites every record.
    let header: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f.trim_ascii()).into_owned()).collect();
    let loc = Locator { path, shown: &shown };
    if header.iter().all(|h| parse_number(h.as_bytes()).is_ok()) {
        return Err(loc.at(0, "expected a header row naming the columns, found numbers"));
    }
    let cols = select(&header, schema, opts).map_err(|(field, message)| loc.at(field, message))?;
    let label_names: Vec<String> = cols.labels.iter().map(|&i| header[i].clone()).collect();

    let ncols = header.len();
    let mut features = Vec::new();
    let mut row = vec![0f32; cols.features.len()];
    let mut rows = 0;
    let mut labels = LabelReader::new(schema, opts, &label_names);
    while csv.read_byte_record(&mut rec).map_err(err)? {
        if rec.len() == 1 && rec[0].trim_ascii().is_empty() {
            continue; // a blank or all-space line
        }
        let byte = rec.position().map_or(0, |p| p.byte());
        if rec.len() != ncols {
            let col = if rec.len() < ncols { None } else { Some(ncols) };
            let msg = format!("expected {ncols} fields as in the header, found {}", rec.len());
            return Err(loc.at_field(byte, col, msg));
        }
        for (i, field) in rec.iter().enumerate() {
            let field = field.trim_ascii();
            let res = match cols.roles[i] {
                Role::Label(k) => labels.push(k, field),
                Role::Feature(j) => parse_number(field)
                    .map(|x| row[j] = x)
                    .map_err(|found| format!("expected a number in column `{}`, found {found}", header[i])),
                Role::Ignored => Ok(()),
            };
            if let Err(msg) = res {
                return Err(loc.at_field(byte, Some(i), msg));
            }
        }
        features.extend_from_slice(&row);
        labels.end_row();
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::file(&shown, "no data rows after the header"));
    }
    Ok(Dataset {
        path: shown,
        n_features: cols.features.len(),
        rows,
        feature_names: cols.features.iter().map(|&i| header[i].clone()).collect(),
        label_width: schema.label.as_ref().map_or(1, |l| l.kind.width()),
        label_names,
        features,
        labels: labels.finish(),
    })
}

/// At most eight names, then the count of the rest.
pub(crate) fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
    match names.len() {
        n if n > 8 => format!("{}, … ({} more)", shown.join(", "), n - 8),
        _ => shown.join(", "),
    }
}

/// Parses one trimmed feature field; the error describes what was found.
pub(crate) fn parse_number(field: &[u8]) -> Result<f32, String> {
    // Fast path for small non-negative integers (pixels, counts): exact in f32.
    if !field.is_empty() && field.len() <= 7 && field.iter().all(u8::is_ascii_digit) {
        return Ok(field.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')) as f32);
    }
    if field.is_empty() {
        return Err("an empty field (a missing value?)".into());
    }
    let text = String::from_utf8_lossy(field);
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(format!("`{text}` (values must be finite)")),
        Err(_) if MISSING.contains(&text.as_ref()) => {
            Err(format!("`{text}`, a missing value (fill in or drop incomplete rows first)"))
        }
        Err(_) => Err(format!("`{text}`")),
    }
}

/// How published CSVs commonly write a missing value.
const MISSING: &[&str] = &["NA", "N/A", "n/a", "na", "NULL", "null", "None", "?", "-", "missing"];

fn csv_error(path: &str, e: csv::Error) -> DataError {
    let at = e.position().map(|p| (p.line(), 1));
    let message = match e.into_kind() {
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        other => format!("malformed CSV: {other:?}"),
    };
    DataError { path: path.to_string(), at, message }
}

/// Finds lines and character columns for errors by re-reading the file up to the offending
/// record (errors only). Lines are counted from the record's byte offset rather than taken
/// from the CSV reader, whose count is off for CRLF files.
struct Locator<'a> {
    path: &'a Path,
    shown: &'a str,
}

impl Locator<'_> {
    /// An error in the header row, at the start of field `field` (0-based).
    fn at(&self, field: usize, message: impl Into<String>) -> DataError {
        self.at_field(0, Some(field), message)
    }

    /// An error in the record starting at byte `byte`: at field `field`, or at the end of
    /// the line when `None`.
    fn at_field(&self, byte: u64, field: Option<usize>, message: impl Into<String>) -> DataError {
        let at = self.position(byte, field).unwrap_or((1, 1));
        DataError { path: self.shown.to_string(), at: Some(at), message: message.into() }
    }

    /// The 1-based line and column of field `field` of the record at byte `byte`.
    fn position(&self, byte: u64, field: Option<usize>) -> Option<(u64, u64)> {
        let mut r = BufReader::new(open(self.path).ok()?);
        let mut prefix = Vec::new();
        r.by_ref().take(byte).read_to_end(&mut prefix).ok()?;
        let mut line = 1 + prefix.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut raw = Vec::new();
        r.read_until(b'\n', &mut raw).ok()?;
        // A record's offset may point at the `\n` of the previous line's CRLF, or at empty
        // lines the reader skipped.
        while raw.ends_with(b"\n") && raw.iter().all(|&b| b == b'\r' || b == b'\n') {
            line += 1;
            raw.clear();
            r.read_until(b'\n', &mut raw).ok()?;
        }
        let text = String::from_utf8_lossy(&raw);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        Some((line, field_column(text.trim_end_matches(['\r', '\n']), field)))
    }
}

/// The 1-based character column where field `field` of a raw CSV line starts (its first
/// non-space character), or one past the end of the line for `None` or a missing field.
fn field_column(line: &str, field: Option<usize>) -> u64 {
    let end = line.chars().count() as u64 + 1;
    let Some(want) = field else { return end };
    let (mut index, mut quoted, mut start) = (0, false, true);
    for (col, ch) in line.chars().enumerate() {
        if start && ch == ' ' {
            continue;
        }
        if start && index == want {
            return col as u64 + 1;
        }
        start = false;
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                index += 1;
                start = true;
            }
            _ => {}
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{InputSpec, LabelKind, LabelSpec};
    use crate::testutil::TempDir;

    fn schema(features: usize, kind: Option<LabelKind>) -> Schema {
        Schema {
            inputs: vec![InputSpec { name: "x".into(), shape: vec![features], offset: 0, len: features }],
            label: kind.map(|kind| LabelSpec { name: "y".into(), kind }),
        }
    }

    fn load_text(text: &str, s: &Schema) -> Result<Dataset, DataError> {
        let dir = TempDir::new("data");
        let path = dir.write("d.csv", text.as_bytes());
        load(&path, s, &LoadOptions::default()).map_err(|mut e| {
            e.path = "d.csv".into();
            e
        })
    }

    fn err(text: &str, s: &Schema) -> String {
        load_text(text, s).unwrap_err().to_string()
    }

    #[test]
    fn loads_features_and_integer_labels() {
        let d = load_text("a,b,label\n1,2.5,0\n3,-4e-1,2\n", &schema(2, Some(LabelKind::Class(3)))).unwrap();
        assert_eq!(d.features, vec![1.0, 2.5, 3.0, -0.4]);
        assert_eq!(d.labels, Labels::Class { values: vec![0, 2], encoding: LabelEncoding::Integers });
        assert_eq!(d.feature_names, vec!["a", "b"]);
        assert_eq!(d.label_names, vec!["label"]);
        assert_eq!((d.len(), d.row(1)), (2, &[3.0, -0.4][..]));
    }

    #[test]
    fn real_world_csv_quirks() {
        // BOM, CRLF, quoted fields, spaces around values, label not last, blank trailing lines.
        let text = "\u{feff}\"label\",a , b\r\n 1 ,\"2\", 3 \r\n0,4,5\r\n\r\n\r\n";
        let d = load_text(text, &schema(2, Some(LabelKind::Class(2)))).unwrap();
        assert_eq!(d.features, vec![2.0, 3.0, 4.0, 5.0]);
        assert_eq!(d.labels, Labels::Class { values: vec![1, 0], encoding: LabelEncoding::Integers });
        assert_eq!(d.feature_names, vec!["a", "b"]);
    }

    #[test]
    fn crlf_errors_point_at_the_right_line_and_column() {
        let s = schema(4, Some(LabelKind::Class(2)));
        let bad = "a,b,c,d,label\r\n1,2,3,4,0\r\n1,2,3,4,0\r\n1,2,3,4,0\r\n1,2,x,4,1\r\n";
        assert_eq!(load_text(bad, &s).unwrap_err().at, Some((5, 5)));
        let ragged = "a,b,c,d,label\r\n1,2,3,4,0\r\n1,2,3,4\r\n";
        assert_eq!(load_text(ragged, &s).unwrap_err().at, Some((3, 8)));
        let blank_lines = "a,b,c,d,label\r\n\r\n1,2,3,4,0\r\n\r\n1,2,3,y,0\r\n";
        assert_eq!(load_text(blank_lines, &s).unwrap_err().at, Some((5, 7)));
        let bom_crlf = "\u{feff}a,b,c,d,label\r\n1,2,3,4,7\r\n";
        assert_eq!(load_text(bom_crlf, &s).unwrap_err().at, Some((2, 9)));
    }

    #[test]
    fn class_names_map_in_sorted_order() {
        let text = "f,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n";
        let d = load_text(text, &schema(1, Some(LabelKind::Class(3)))).unwrap();
        let names = vec!["setosa".to_string(), "versicolor".into(), "virginica".into()];
        assert_eq!(d.labels, Labels::Class { values: vec![2, 0, 1, 0], encoding: LabelEncoding::Names(names.clone()) });
        // A validation file follows the training set's names.
        let dir = TempDir::new("names");
        let path = dir.write("v.csv", b"f,species\n1,versicolor\n2,daisy\n");
        let enc = LabelEncoding::Names(names);
        let opts = LoadOptions { encoding: Some(&enc), ..LoadOptions::default() };
        let e = load(&path, &schema(1, Some(LabelKind::Class(3))), &opts).unwrap_err();
        assert_eq!(e.at, Some((3, 3)));
        assert_eq!(e.message, "unknown class `daisy`; the training data has classes setosa, versicolor, virginica");
    }

    #[test]
    fn label_by_name_real_labels_and_gzip() {
        let dir = TempDir::new("gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"target,a,b\n1.5,1,2\n-2,3,4\n").unwrap();
        let path = dir.write("d.csv.gz", &gz.finish().unwrap());
        let opts = LoadOptions { label_column: Some("target"), ..LoadOptions::default() };
        let d = load(&path, &schema(2, Some(LabelKind::Real(1))), &opts).unwrap();
        assert_eq!(d.labels, Labels::Real(vec![1.5, -2.0]));
        assert_eq!(d.features, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn predict_files_may_lack_the_label() {
        let dir = TempDir::new("pred");
        let path = dir.write("p.csv", b"a,b\n1,2\n");
        let opts = LoadOptions { policy: LabelPolicy::Optional, ..LoadOptions::default() };
        let d = load(&path, &schema(2, Some(LabelKind::Class(2))), &opts).unwrap();
        assert_eq!((d.labels, d.features), (Labels::None, vec![1.0, 2.0]));
    }

    #[test]
    fn ragged_rows_name_line_and_column() {
        let s = schema(2, Some(LabelKind::Class(3)));
        assert_eq!(err("a,b,label\n1,2,0\n3,4\n", &s), "d.csv:3:4: expected 3 fields as in the header, found 2");
        assert_eq!(err("a,b,label\n1,2,0,9\n", &s), "d.csv:2:7: expected 3 fields as in the header, found 4");
    }

    #[test]
    fn non_numbers_name_the_field_and_column() {
        let s = schema(2, Some(LabelKind::Class(3)));
        assert_eq!(err("a,b,label\n1,2,0\n3, x7 ,1\n", &s), "d.csv:3:4: expected a number in column `b`, found `x7`");
        assert_eq!(
            err("a,b,label\n1,,0\n", &s),
            "d.csv:2:3: expected a number in column `b`, found an empty field (a missing value?)"
        );
        assert_eq!(
            err("a,b,label\n1,2,0\n4, NA,1\n", &s),
            "d.csv:3:4: expected a number in column `b`, found `NA`, a missing value (fill in or drop incomplete rows first)"
        );
        assert_eq!(
            err("a,b,label\n1,nan,0\n", &s),
            "d.csv:2:3: expected a number in column `b`, found `nan` (values must be finite)"
        );
    }

    #[test]
    fn class_labels_out_of_range() {
        let s = schema(1, Some(LabelKind::Class(3)));
        assert_eq!(
            err("a,label\n1,0\n2,3\n", &s),
            "d.csv:3:3: class label `3` is out of range: expected 0 to 2 for class(3)"
        );
        assert_eq!(err("a,label\n1,1.5\n", &s), "d.csv:2:3: class label `1.5` is not an integer: expected 0 to 2");
        assert_eq!(
            err("a,label\n1,0\n1,cat\n", &s),
            "d.csv:3:3: expected an integer class label from 0 to 2, found `cat`"
        );
        let two = schema(1, Some(LabelKind::Class(2)));
        assert_eq!(
            err("a,label\n1,ant\n1,bee\n1,cat\n", &two),
            "d.csv:4:3: `cat` would be class name number 3, but the label is class(2)"
        );
    }

    #[test]
    fn header_and_width_errors() {
        let s = schema(2, Some(LabelKind::Class(3)));
        assert_eq!(err("", &s), "d.csv:1:1: empty file: expected a header row");
        assert_eq!(err("1,2,0\n", &s), "d.csv:1:1: expected a header row naming the columns, found numbers");
        assert_eq!(err("a,b,label\n", &s), "d.csv: no data rows after the header");
        assert_eq!(
            err("a,b,c,label\n1,2,3,0\n", &s),
            "d.csv:1:1: the model's inputs (x[2]) take 2 columns per example, but the file has 3 columns \
             besides the label column `label`"
        );
    }

    fn load_with(text: &str, s: &Schema, label: Option<&str>, features: Option<&[String]>) -> Result<Dataset, String> {
        let dir = TempDir::new("opts");
        let path = dir.write("d.csv", text.as_bytes());
        let opts = LoadOptions { label_column: label, features, ..LoadOptions::default() };
        load(&path, s, &opts).map_err(|mut e| {
            e.path = "d.csv".into();
            e.to_string()
        })
    }

    #[test]
    fn features_pick_and_order_columns_and_skip_the_rest() {
        // `id` and `name` are never parsed; `b` comes before `a` as --features says.
        let text = "id,name,a,b,label\nx1,\"Smith, J\",1,2,0\nx2,Doe,3,4,1\n";
        let f = vec!["b".to_string(), "a".into()];
        let d = load_with(text, &schema(2, Some(LabelKind::Class(2))), None, Some(&f)).unwrap();
        assert_eq!((d.features, d.feature_names), (vec![2.0, 1.0, 4.0, 3.0], f));
        assert_eq!(d.labels, Labels::Class { values: vec![0, 1], encoding: LabelEncoding::Integers });
        // Without a `label` column, the label is the last column that is not a feature.
        let d = load_with("a,note,y\n1,hi,5\n", &schema(1, Some(LabelKind::Real(1))), None, Some(&["a".into()]));
        assert_eq!(d.unwrap().labels, Labels::Real(vec![5.0]));
    }

    #[test]
    fn features_errors_point_at_the_header() {
        let s = schema(2, Some(LabelKind::Class(2)));
        let text = "a,b,c,label\n1,2,3,0\n";
        let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            load_with(text, &s, None, Some(&names(&["a", "z"]))).unwrap_err(),
            "d.csv:1:1: no column named `z` for --features (the columns are: a, b, c, label)"
        );
        assert_eq!(
            load_with(text, &s, None, Some(&names(&["a", "a"]))).unwrap_err(),
            "d.csv:1:1: column `a` is named twice in --features"
        );
        assert_eq!(
            load_with(text, &s, Some("label"), Some(&names(&["a", "label"]))).unwrap_err(),
            "d.csv:1:7: column `label` is the label; it cannot also be a feature"
        );
        assert_eq!(
            load_with(text, &s, None, Some(&names(&["c"]))).unwrap_err(),
            "d.csv:1:1: the model's inputs (x[2]) take 2 columns per example, but the file has 1 columns named by --features"
        );
    }

    #[test]
    fn real_labels_of_several_columns() {
        let s = schema(1, Some(LabelKind::Real(2)));
        // The last two columns by default, or those named by --label, in that order.
        let d = load_with("x,t0,t1\n1,2,3\n4,5,6\n", &s, None, None).unwrap();
        assert_eq!(
            (d.features.clone(), d.labels.clone(), d.label_width),
            (vec![1.0, 4.0], Labels::Real(vec![2.0, 3.0, 5.0, 6.0]), 2)
        );
        let d = load_with("t1,x,t0\n3,1,2\n", &s, Some("t0,t1"), None).unwrap();
        assert_eq!(
            (d.features, d.labels, d.label_names),
            (vec![1.0], Labels::Real(vec![2.0, 3.0]), vec!["t0".to_string(), "t1".into()])
        );
        assert_eq!(
            load_with("x,t0,t1\n1,2,3\n", &s, Some("t0"), None).unwrap_err(),
            "d.csv:1:3: --label names 1 column, but the model's label `y` takes 2 per example"
        );
        assert_eq!(
            load_with("x,t0,t1\n1,2,?\n", &s, None, None).unwrap_err(),
            "d.csv:2:5: expected a number in label column `t1`, found `?`, a missing value (fill in or drop incomplete rows first)"
        );
    }

    #[test]
    fn validation_split_is_seeded_and_disjoint() {
        let text: String = (0..10).fold("a,label\n".to_string(), |t, i| t + &format!("{i},{}\n", i % 2));
        let s = schema(1, Some(LabelKind::Class(2)));
        let mut d = load_text(&text, &s).unwrap();
        let v = d.split_validation(0.3, 7).unwrap();
        assert_eq!((d.len(), v.len()), (7, 3));
        let mut all: Vec<f32> = d.features.iter().chain(&v.features).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, (0..10).map(|i| i as f32).collect::<Vec<_>>());
        let mut again = load_text(&text, &s).unwrap();
        assert_eq!(again.split_validation(0.3, 7).unwrap().features, v.features);
        let Labels::Class { values, .. } = &v.labels else { panic!() };
        assert_eq!(values.iter().zip(&v.features).filter(|&(&y, &x)| y != x as i32 % 2).count(), 0);
    }

    #[test]
    fn missing_files_give_the_system_reason() {
        let e = load(Path::new("/nonexistent/dir/t.csv"), &schema(1, None), &LoadOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/dir/t.csv: cannot open: No such file or directory (os error 2)");
    }

    #[test]
    fn field_columns_skip_quotes_and_spaces() {
        assert_eq!(field_column("a,\"b,c\",  d", Some(2)), 11);
        assert_eq!(field_column("a,b", Some(5)), 4);
        assert_eq!(field_column("a,b", None), 4);
    }
}
