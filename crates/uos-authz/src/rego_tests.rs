//! The bundle's own Rego unit tests (OPA's convention: every rule named `test_*`, in any
//! package, usually in `*_test.rego` files): run at every load, and a bundle whose tests do
//! not all hold is refused.

use regorus::unstable::{Expr, Parser, Rule, RuleHead};
use regorus::{Engine, Source, Value};

use crate::{AuthzError, RegoTestFailure};

/// A test rule, where it is defined.
#[derive(Debug)]
struct RegoTest {
    /// `data.<package>.<name>`.
    path: String,
    file: String,
    line: u32,
}

/// Runs every test of the bundle `files` on `engine` (which has them all loaded) and fails
/// with every test that is not `true`.
pub(crate) fn run(engine: &mut Engine, files: &[(String, String)]) -> Result<usize, AuthzError> {
    let mut tests = Vec::new();
    for (file, text) in files {
        tests.extend(discover(file, text)?);
    }
    let mut failures = Vec::new();
    for test in &tests {
        // Tests give their own input (`with input as …`); none leaks in from a previous one.
        engine.set_input(Value::new_object());
        let outcome = match engine.eval_rule(test.path.clone()) {
            Ok(Value::Bool(true)) => continue,
            Ok(Value::Undefined) => "undefined (a condition of the test does not hold)".to_owned(),
            Ok(other) => format!("{other} instead of true"),
            // The bundle compiled before the tests ran, so this is an error at evaluation
            // (a builtin's, a conflict), which a request with the same input would hit too.
            Err(e) => match AuthzError::invalid(&test.path, &format!("{e:#}")) {
                AuthzError::InvalidPolicy {
                    file,
                    line: Some(line),
                    message,
                } => format!("an error at {file}:{line}: {message}"),
                other => format!("an error: {other}"),
            },
        };
        failures.push(RegoTestFailure {
            test: test.path.clone(),
            file: test.file.clone(),
            line: test.line,
            outcome,
        });
    }
    if failures.is_empty() {
        Ok(tests.len())
    } else {
        Err(AuthzError::RegoTestsFailed(failures))
    }
}

/// The test rules of one file. Parsed again here (the engine keeps no public rule list), with
/// the same parser regorus loads it with; a rule defined over several bodies is one test.
fn discover(file: &str, text: &str) -> Result<Vec<RegoTest>, AuthzError> {
    let invalid = invalid_in(file);
    let source = Source::from_contents(file.to_owned(), text.to_owned()).map_err(&invalid)?;
    let mut parser = Parser::new(&source).map_err(&invalid)?;
    parser.enable_rego_v1().map_err(&invalid)?;
    let module = parser.parse().map_err(invalid)?;
    let package = module.package.refr.span().text().to_owned();
    let mut tests: Vec<RegoTest> = Vec::new();
    for rule in &module.policy {
        let Rule::Spec {
            head: RuleHead::Compr { refr, .. },
            span,
            ..
        } = rule.as_ref()
        else {
            continue;
        };
        let Expr::Var { span: name, .. } = refr.as_ref() else {
            continue;
        };
        let name = name.text();
        if !name.starts_with("test_") {
            continue;
        }
        let path = format!("data.{package}.{name}");
        if tests.iter().any(|t| t.path == path) {
            continue;
        }
        tests.push(RegoTest {
            path,
            file: file.to_owned(),
            line: span.line,
        });
    }
    Ok(tests)
}

/// Maps a regorus error (an `anyhow::Error`, whose alternate form carries the source position)
/// to an invalid policy in `file`.
fn invalid_in<E: std::fmt::Display>(file: &str) -> impl Fn(E) -> AuthzError + '_ {
    move |e| AuthzError::invalid(file, &format!("{e:#}"))
}
