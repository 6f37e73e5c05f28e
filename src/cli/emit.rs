//! `bpc MODEL --emit STAGE`: print what the compiler made at one stage.

use std::path::Path;

use bpc::{Error, Model, OptLevel};

use super::Stage;

pub fn run(path: &Path, stage: Stage, level: OptLevel) -> Result<(), Error> {
    let model = Model::load(path)?;
    let text = match stage {
        Stage::Ast => match bpc::front::parse(&model.source) {
            Ok(ast) => ast.to_string(),
            Err(d) => return Err(Error(bpc::front::render(&model.source, &d))),
        },
        Stage::Ir => model.func.to_string(),
        Stage::Grad | Stage::Opt => {
            let wrt = model.grad_names();
            let refs: Vec<&str> = wrt.iter().map(String::as_str).collect();
            let vg = model.value_and_grad(&refs)?;
            if stage == Stage::Opt { bpc::opt::optimize(&vg, level).to_string() } else { vg.to_string() }
        }
        Stage::Clif | Stage::Dot | Stage::Svg | Stage::Stats => {
            let name = format!("{stage:?}").to_lowercase();
            return Err(Error(format!("--emit {name} is not available yet (available: ast, ir, grad, opt)")));
        }
    };
    print!("{text}");
    Ok(())
}
