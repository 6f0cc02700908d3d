//! Running a policy: compile, evaluate with the inputs in scope, collect the Plans, and
//! validate them with each problem placed at the script line that set the field.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use rhai::{Dynamic, Map, Scope};

use super::engine;
use super::limits::MAX_SOURCE_BYTES;
use super::resolver::{FolderResolver, read_limited};
use super::script_plan::{Group, ScriptPlan};
use super::{Diagnostic, Inputs, PolicyError};
use plan::{Error, Plan, Plans};

/// The Plans a script computed, with what is needed to point back into it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    plans: Vec<ScriptPlan>,
    sequential: bool,
    sources: BTreeMap<String, String>,
}

/// Evaluates the script at `path`; it imports from its own folder.
pub fn evaluate(path: &Path, inputs: &Inputs) -> Result<Evaluation, PolicyError> {
    if path.extension().is_none_or(|e| e != "rhai") {
        return Err(PolicyError::Refused(format!(
            "{}: a policy script's name ends in .rhai",
            path.display()
        )));
    }
    let text = read_limited(path).map_err(PolicyError::Refused)?;
    evaluate_source(&path.display().to_string(), &text, path.parent(), inputs)
}

/// Evaluates `text`, named `name` in messages; `folder` is where it may import from (none
/// when `None`).
pub fn evaluate_source(
    name: &str,
    text: &str,
    folder: Option<&Path>,
    inputs: &Inputs,
) -> Result<Evaluation, PolicyError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(PolicyError::Refused(format!(
            "{name} is larger than {MAX_SOURCE_BYTES} bytes, too large for a policy"
        )));
    }
    let sources = Rc::new(RefCell::new(BTreeMap::from([(
        name.to_owned(),
        text.to_owned(),
    )])));
    let engine = engine::build(
        name,
        FolderResolver::new(folder, sources.clone()),
        inputs.image_files.clone(),
    );
    let fail = |d: Diagnostic| PolicyError::Script(vec![d]);

    let mut ast = engine
        .compile(text)
        .map_err(|e| fail(Diagnostic::from_parse(&sources.borrow(), name, &e)))?;
    ast.set_source(name);
    let mut scope = Scope::new();
    scope.push_constant("host", inputs.host.clone());
    scope.push_constant("workload", inputs.workload.clone());
    let vars: Map = inputs
        .vars
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect();
    scope.push_constant("vars", vars);
    let value = engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        .map_err(|e| fail(Diagnostic::from_eval(&sources.borrow(), name, &e)))?;

    let sources = sources.borrow().clone();
    let (mut plans, sequential) = plans_of(value, &engine).map_err(|message| {
        fail(Diagnostic::at(
            &sources,
            name,
            rhai::Position::NONE,
            message,
        ))
    })?;
    plans.iter_mut().for_each(ScriptPlan::derive_defaults);
    Ok(Evaluation {
        plans,
        sequential,
        sources,
    })
}

/// How the launcher checks one Plan: [`plan::validate`] against the host facts and what the
/// backend of the Plan's isolation knows (`Err(Error::Invalid)` listing every problem,
/// `Err(Error::Unsupported)` for an isolation it cannot run at all).
pub type Check<'a> = &'a dyn Fn(&Plan) -> Result<(), Error>;

/// Evaluates and validates: the library side of `capsule check`.
pub fn check(path: &Path, inputs: &Inputs, check: Check<'_>) -> Result<Evaluation, PolicyError> {
    let evaluation = evaluate(path, inputs)?;
    evaluation.validate(check)?;
    Ok(evaluation)
}

/// [`check`] of a script given as text, importing nothing: what the fuzz target feeds.
pub fn check_source(
    name: &str,
    text: &str,
    inputs: &Inputs,
    check: Check<'_>,
) -> Result<Evaluation, PolicyError> {
    let evaluation = evaluate_source(name, text, None, inputs)?;
    evaluation.validate(check)?;
    Ok(evaluation)
}

/// The script's value as Plans: one Plan, an array launched together, or an `in_order`
/// group.
fn plans_of(value: Dynamic, engine: &rhai::Engine) -> Result<(Vec<ScriptPlan>, bool), String> {
    let type_name = engine.map_type_name(value.type_name()).to_owned();
    if value.is::<ScriptPlan>() {
        return Ok((vec![value.cast::<ScriptPlan>()], false));
    }
    if value.is::<Group>() {
        let group = value.cast::<Group>();
        return Ok((group.plans, group.sequential));
    }
    let wrong = || {
        format!(
            "the script's value is {type_name}; end it with a Plan, an array of Plans (launched together) or in_order([...])"
        )
    };
    let Some(items) = value.try_cast::<rhai::Array>() else {
        return Err(wrong());
    };
    if items.is_empty() {
        return Err("the script's value is an empty array: there is nothing to launch".to_owned());
    }
    let plans = items
        .into_iter()
        .map(|item| {
            let item_type = engine.map_type_name(item.type_name()).to_owned();
            item.try_cast::<ScriptPlan>().ok_or_else(|| {
                format!(
                    "the script's value is an array holding {item_type}; every item must be a Plan"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plans, false))
}

impl Evaluation {
    /// The Plans, in the script's order.
    pub fn plans(&self) -> Vec<Plan> {
        self.plans.iter().map(|p| p.plan.clone()).collect()
    }

    /// The Plans with where each field was set.
    pub fn script_plans(&self) -> &[ScriptPlan] {
        &self.plans
    }

    /// Whether the group launches one after another (`in_order`) rather than together.
    pub fn sequential(&self) -> bool {
        self.sequential
    }

    /// The Plans with their launch order, as `capsule plan` prints them ([`Plans`]).
    pub fn to_plans(&self) -> Plans {
        Plans::new(self.plans(), self.sequential)
    }

    /// `capsule plan`'s output: one Plan as a JSON object, a group launched together as an
    /// array, an `in_order` group as `{"inOrder": [...]}` ([`Plans`]).
    pub fn to_json(&self) -> String {
        self.to_plans().to_json()
    }

    /// Validates every Plan with `check`; each problem points at the script line that set
    /// the field at fault.
    pub fn validate(&self, check: Check<'_>) -> Result<(), PolicyError> {
        let mut diagnostics = Vec::new();
        for p in &self.plans {
            match check(&p.plan) {
                Ok(()) => {}
                Err(Error::Invalid(problems)) => {
                    for problem in problems {
                        let written = p.exact_origin(&problem.field).map(|o| o.written.as_str());
                        let text = problem.script_text(written);
                        diagnostics.push(self.at(p, &problem.field, text));
                    }
                }
                Err(other) => diagnostics.push(self.at(p, "isolation", other.to_string())),
            }
        }
        if diagnostics.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Script(diagnostics))
        }
    }

    fn at(&self, p: &ScriptPlan, field: &str, message: String) -> Diagnostic {
        match p.origin(field) {
            Some(origin) => Diagnostic::at(&self.sources, &origin.source, origin.position, message),
            None => Diagnostic {
                file: String::new(),
                line: None,
                column: None,
                message,
                source_line: None,
            },
        }
    }
}
