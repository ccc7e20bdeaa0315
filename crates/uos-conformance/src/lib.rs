//! `#[conformance]`: turns one storage conformance case into a test per backend, so a case
//! cannot be written without running on every backend (there is no list of cases to forget
//! it in).
//!
//! ```text
//! #[conformance]
//! async fn org_insert_and_get(store: Arc<dyn Store>) { … }
//! ```
//! keeps the function and adds a module of the same name with one `#[tokio::test]` per backend
//! (`org_insert_and_get::sqlite`, `org_insert_and_get::postgres`), each calling
//! `crate::backends::run(Backend::…, case)` in the test crate. The PostgreSQL test is
//! `#[ignore = "needs PostgreSQL"]`, so a plain `cargo test` passes anywhere and reports it as
//! ignored; CI runs it with `--include-ignored`.

use proc_macro::{TokenStream, TokenTree};

/// The backends every case runs on, with the attributes their tests carry.
const BACKENDS: &[(&str, &str)] = &[
    ("sqlite", ""),
    ("postgres", "#[ignore = \"needs PostgreSQL\"]"),
];

#[proc_macro_attribute]
pub fn conformance(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[conformance] takes no arguments");
    }
    let Some(name) = function_name(&item) else {
        return compile_error("#[conformance] goes on an `async fn`");
    };
    let mut tests = String::new();
    for (backend, attrs) in BACKENDS {
        let variant = variant(backend);
        tests.push_str(&format!(
            "#[tokio::test(flavor = \"multi_thread\", worker_threads = 2)] {attrs} \
             async fn {backend}() {{ \
                 crate::backends::run(crate::backends::Backend::{variant}, super::{name}).await \
             }}"
        ));
    }
    let module = format!("#[cfg(test)] mod {name} {{ {tests} }}");
    match module.parse::<TokenStream>() {
        Ok(generated) => {
            let mut out = item;
            out.extend(generated);
            out
        }
        Err(e) => compile_error(&format!("#[conformance] generated bad code: {e}")),
    }
}

/// The identifier after `fn`, if the item is a function.
fn function_name(item: &TokenStream) -> Option<String> {
    let mut tokens = item.clone().into_iter();
    while let Some(token) = tokens.next() {
        if let TokenTree::Ident(ident) = &token {
            if ident.to_string() == "fn" {
                return match tokens.next() {
                    Some(TokenTree::Ident(name)) => Some(name.to_string()),
                    _ => None,
                };
            }
        }
    }
    None
}

/// `sqlite` → `Sqlite`.
fn variant(backend: &str) -> String {
    let mut chars = backend.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn compile_error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .unwrap_or_default()
}
