//! Checks a service's OpenAPI document is valid OpenAPI 3.1. Two layers: the rules the
//! services have broken before (a response without a description, a security scheme named
//! but not defined, a path parameter missing from its path) are checked here, in Rust, on
//! every run; the whole specification is checked by `openapi-spec-validator` (PyPI), which
//! ships the official 3.1 JSON schema. Without it, that second layer is skipped with a
//! message, except under `CI`, where it must be installed.

use std::{io::Write as _, process::Command};

use serde_json::Value;

/// Panics with every way `doc` breaks OpenAPI 3.1, or leaves out the probes every service
/// answers.
pub async fn assert_valid(doc: &Value) {
    assert_probes_documented(doc);
    let problems = lint(doc);
    assert!(
        problems.is_empty(),
        "the document breaks OpenAPI 3.1:\n  {}",
        problems.join("\n  ")
    );
    let doc = doc.clone();
    tokio::task::spawn_blocking(move || validate_with_the_official_schema(&doc))
        .await
        .expect("the validator ran");
}

/// The operations of `doc`: `(method, path, operation)`.
pub fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
            ) {
                out.push((method.clone(), path.clone(), op));
            }
        }
    }
    out
}

/// The statuses an operation documents.
pub fn statuses(op: &Value) -> Vec<String> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

/// A schema with its `$ref`s into `#/components/schemas` followed.
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn lint(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if doc["openapi"]
        .as_str()
        .is_none_or(|v| !v.starts_with("3.1"))
    {
        problems.push(format!("openapi is {}, not 3.1.x", doc["openapi"]));
    }
    let schemes = doc["components"]["securitySchemes"].as_object();
    for (method, path, op) in operations(doc) {
        let at = format!("{} {path}", method.to_uppercase());
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            if response["description"].as_str().is_none() {
                problems.push(format!("{at}: response {status} has no description"));
            }
        }
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if !schemes.is_some_and(|s| s.contains_key(name)) {
                    problems.push(format!("{at}: security scheme {name:?} is not defined"));
                }
            }
        }
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in &declared {
            if !path.contains(&format!("{{{name}}}")) {
                problems.push(format!("{at}: path parameter {name:?} is not in the path"));
            }
        }
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                && !declared.contains(&name)
            {
                problems.push(format!("{at}: {{{name}}} has no path parameter"));
            }
        }
    }
    problems
}

fn validate_with_the_official_schema(doc: &Value) {
    let mut file = tempfile();
    file.1
        .write_all(doc.to_string().as_bytes())
        .expect("the document is written");
    let run = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file.0)
        .output();
    let _ = std::fs::remove_file(&file.0);
    let missing = match &run {
        Err(_) => true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).contains("No module named"),
    };
    if missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "openapi-spec-validator is required under CI: python3 -m pip install openapi-spec-validator"
        );
        eprintln!(
            "SKIPPED the OpenAPI 3.1 schema validation: python3 -m openapi_spec_validator is not \
             installed (python3 -m pip install openapi-spec-validator); the built-in checks ran"
        );
        return;
    }
    let out = run.expect("the validator ran");
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "openapi-{}-{}.json",
        std::process::id(),
        common::id::new_id("doc")
    ));
    let file = std::fs::File::create(&path).expect("a temporary file");
    (path, file)
}

/// Every service answers `/healthz`, `/readyz` and `/metrics`: its document must say so.
fn assert_probes_documented(doc: &Value) {
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} is documented"
        );
    }
}
