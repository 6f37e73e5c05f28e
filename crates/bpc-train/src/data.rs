//! Loading CSV (and `.csv.gz`) data sets into a [`Dataset`].
//!
//! A file has a header row; the label is the column named by `--label`, else the column
//! named `label`, else the last one; the other columns, in file order, are the features
//! that fill the model's inputs (see [`Schema`]). Parsing is the `csv` crate's (quoted
//! fields, CRLF, a UTF-8 BOM, blank lines); fields are trimmed. Every error names
//! `file:line:column` (column = character position in the line, 1-based) and what was
//! expected; loading stops at the first one, before anything is trained.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::labels::LabelReader;
use crate::schema::Schema;

/// A data error: the file, the position where the input has one, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    pub path: String,
    /// 1-based line and character column.
    pub at: Option<(u64, u64)>,
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
    Integers,
    Names(Vec<String>),
}

/// The label column of a data set.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// The file has no label column (only for `predict`).
    None,
    /// Class indices and how the file wrote them.
    Class { values: Vec<i32>, encoding: LabelEncoding },
    /// Real targets.
    Real(Vec<f32>),
}

/// A loaded data set: `len()` examples of `n_features` floats, row-major, plus labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub path: String,
    /// Header names of the feature columns, in file order.
    pub feature_names: Vec<String>,
    pub label_name: Option<String>,
    pub n_features: usize,
    /// Number of examples.
    pub rows: usize,
    /// `rows * n_features` floats, one example per row.
    pub features: Vec<f32>,
    pub labels: Labels,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.n_features..(i + 1) * self.n_features]
    }

    /// Class names, if the file wrote class labels as names.
    pub fn class_names(&self) -> Option<&[String]> {
        match &self.labels {
            Labels::Class { encoding: LabelEncoding::Names(n), .. } => Some(n),
            Labels::Class { encoding: LabelEncoding::Integers, .. } | Labels::None | Labels::Real(_) => None,
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

/// How to read the label column.
#[derive(Clone, Debug)]
pub struct LoadOptions<'a> {
    /// `--label NAME`.
    pub label_column: Option<&'a str>,
    /// The training set's encoding, which a validation or test file must follow.
    pub encoding: Option<&'a LabelEncoding>,
    pub policy: LabelPolicy,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions { label_column: None, encoding: None, policy: LabelPolicy::Required }
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
    let label_idx = label_column(&header, schema, opts, &loc)?;
    check_width(&header, label_idx, schema, &loc)?;

    let ncols = header.len();
    let mut features = Vec::new();
    let mut rows = 0;
    let mut labels = LabelReader::new(schema, opts, label_idx.map(|i| header[i].clone()));
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
            let res = if Some(i) == label_idx {
                labels.push(field)
            } else {
                parse_number(field)
                    .map(|x| features.push(x))
                    .map_err(|found| format!("expected a number in column `{}`, found {found}", header[i]))
            };
            if let Err(msg) = res {
                return Err(loc.at_field(byte, Some(i), msg));
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::file(&shown, "no data rows after the header"));
    }
    let labels = labels.finish();
    let feature_names: Vec<String> =
        header.iter().enumerate().filter(|&(i, _)| Some(i) != label_idx).map(|(_, h)| h.clone()).collect();
    Ok(Dataset {
        path: shown,
        n_features: feature_names.len(),
        rows,
        feature_names,
        label_name: label_idx.map(|i| header[i].clone()),
        features,
        labels,
    })
}

/// Which column holds the label, if any.
fn label_column(
    header: &[String],
    schema: &Schema,
    opts: &LoadOptions,
    loc: &Locator,
) -> Result<Option<usize>, DataError> {
    if let Some(name) = opts.label_column {
        return match header.iter().position(|h| h == name) {
            Some(i) => Ok(Some(i)),
            None => Err(loc.at(0, format!("no column named `{name}` for --label (columns: {})", list(header)))),
        };
    }
    if schema.label.is_none() {
        return Ok(None);
    }
    if opts.policy == LabelPolicy::Optional && header.len() == schema.features() {
        return Ok(None);
    }
    Ok(Some(header.iter().position(|h| h == "label").unwrap_or(header.len() - 1)))
}

/// The feature columns must fill the model's inputs exactly.
fn check_width(header: &[String], label: Option<usize>, schema: &Schema, loc: &Locator) -> Result<(), DataError> {
    let have = header.len() - label.is_some() as usize;
    let want = schema.features();
    if have == want {
        return Ok(());
    }
    let besides = match label {
        Some(i) => format!("besides the label column `{}`", header[i]),
        None => "and no label column".to_string(),
    };
    Err(loc.at(
        0,
        format!(
            "the model's inputs ({}) take {want} columns per example, but the file has {have} columns {besides}",
            schema.describe_inputs()
        ),
    ))
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
        return Err("an empty field".into());
    }
    let text = String::from_utf8_lossy(field);
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(format!("`{text}` (values must be finite)")),
        Err(_) => Err(format!("`{text}`")),
    }
}

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
        assert_eq!(d.label_name.as_deref(), Some("label"));
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
        let d = load(&path, &schema(2, Some(LabelKind::Real)), &opts).unwrap();
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
        assert_eq!(err("a,b,label\n1,,0\n", &s), "d.csv:2:3: expected a number in column `b`, found an empty field");
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
