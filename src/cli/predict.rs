//! `bpc predict MODEL --params P --data D`: one CSV row per example (SPEC §4): the `output`
//! tensor flattened as `output_0, output_1, …`, then `predicted` (class index or name) for a
//! class label. The checkpoint's standardization statistics (and `--features` columns) are
//! applied to the data. When the file has labels, the accuracy (class labels) or R² and RMSE
//! (real labels) go to stderr.

use bpc::Error;
use bpc::train::checkpoint;
use bpc::train::data::{self, LoadOptions};
use bpc::train::{Evaluator, LabelEncoding, LabelPolicy, Labels, Predictions, Regression};

use super::train::{check_dir, load_model, print_line, run_error, schema};
use super::{PredictArgs, json_object};

pub fn run(a: &PredictArgs) -> Result<(), Error> {
    let model = load_model(&a.model)?;
    let schema = schema(&model)?;
    if let Some(o) = &a.out {
        check_dir(o)?;
    }
    let (params, meta) =
        checkpoint::load(&a.params, &model.func).map_err(|e| Error::msg(e.for_model(&model.source.path)))?;
    if !meta.model_hash.is_empty() && meta.model_hash != model.hash() {
        eprintln!(
            "warning: {} was trained from a different source of {}; its params fit, but check it is the model you mean",
            a.params.display(),
            a.model.display()
        );
    }
    let encoding = match (&meta.class_names, schema.classes()) {
        (Some(names), _) => Some(LabelEncoding::Names(names.clone())),
        (None, Some(_)) => Some(LabelEncoding::Integers),
        (None, None) => None,
    };
    let features = a.features.clone().or_else(|| meta.features.clone());
    let opts = LoadOptions {
        label_column: a.label.as_deref(),
        features: features.as_deref(),
        encoding: encoding.as_ref(),
        policy: LabelPolicy::Optional,
    };
    let mut data = data::load(&a.data, &schema, &opts).map_err(|e| Error::msg(e.to_string()))?;
    if let Some(s) = &meta.standardizer {
        if s.len() != data.n_features {
            return Err(Error::msg(format!(
                "{}: its standardization statistics cover {} features, the data has {}",
                a.params.display(),
                s.len(),
                data.n_features
            )));
        }
        s.apply(&mut data);
    }
    let mut ev =
        Evaluator::for_prediction(&model.func, &schema, &params, a.opt.level()).map_err(|e| run_error(&model, e))?;
    let pred = ev.predict(&data, &params, schema.classes()).map_err(|e| run_error(&model, e))?;
    let accuracy = pred.accuracy(&data);
    let regression = match &data.labels {
        Labels::Real(values) if pred.width == data.label_width => {
            Some(Regression::new(&pred.values, values, data.label_width))
        }
        Labels::Real(_) | Labels::Class { .. } | Labels::None => None,
    };
    let text = |c: usize| Predictions::class_text(c, encoding.as_ref());
    if a.out.is_some() || !a.json {
        let csv = to_csv(&pred, &text)?;
        match &a.out {
            Some(p) => checkpoint::write_atomic(p, csv.as_bytes())
                .map_err(|e| Error::msg(format!("{}: cannot write: {e}", p.display())))?,
            None => print_line(csv.trim_end_matches('\n')),
        }
    }
    if a.json {
        let rows: Vec<String> = pred.values.chunks(pred.width.max(1)).map(json_row).collect();
        let predicted: Vec<String> = pred
            .classes
            .iter()
            .flatten()
            .map(|&c| match &encoding {
                Some(LabelEncoding::Names(_)) => serde_json::Value::from(text(c)).to_string(),
                _ => c.to_string(),
            })
            .collect();
        print_line(&json_object([
            ("examples".to_string(), pred.rows.to_string()),
            ("accuracy".to_string(), accuracy.map_or("null".into(), |x| x.to_string())),
            (pred.name.clone(), format!("[{}]", rows.join(","))),
            (
                "predicted".to_string(),
                if pred.classes.is_some() { format!("[{}]", predicted.join(",")) } else { "null".into() },
            ),
            ("r2".to_string(), num(regression.map(|r| r.r2))),
            ("rmse".to_string(), num(regression.map(|r| r.rmse))),
        ]));
    }
    if let Some(acc) = accuracy {
        eprintln!("accuracy {acc:.4} on {} examples", pred.rows);
    }
    if let Some(r) = regression {
        eprintln!("R² {:.4}  RMSE {:.4} on {} examples", r.r2, r.rmse, pred.rows);
    }
    Ok(())
}

fn num(x: Option<f64>) -> String {
    x.map_or("null".into(), |x| serde_json::Value::from(x).to_string())
}

fn json_row(row: &[f32]) -> String {
    let xs: Vec<String> = row.iter().map(|x| serde_json::to_string(x).unwrap_or_else(|_| "null".into())).collect();
    format!("[{}]", xs.join(","))
}

/// The predictions as CSV text with a header.
fn to_csv(pred: &Predictions, class_text: &dyn Fn(usize) -> String) -> Result<String, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::msg(format!("cannot format predictions: {e}"));
    let mut header: Vec<String> = (0..pred.width).map(|i| format!("{}_{i}", pred.name)).collect();
    if pred.classes.is_some() {
        header.push("predicted".into());
    }
    w.write_record(&header).map_err(io)?;
    for r in 0..pred.rows {
        let mut rec: Vec<String> =
            pred.values[r * pred.width..(r + 1) * pred.width].iter().map(|x| x.to_string()).collect();
        if let Some(c) = &pred.classes {
            rec.push(class_text(c[r]));
        }
        w.write_record(&rec).map_err(io)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::msg(format!("cannot format predictions: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::msg(format!("cannot format predictions: {e}")))
}
