//! What every service's OpenAPI document has besides its own routes: the operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`), the `bearer` security scheme its secured
//! operations name, their 401 and 403 answers, and a description on every response (OpenAPI
//! requires one). Each service serves `document(&ApiDoc::openapi())`.

use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// The name of the security scheme internal and admin operations use.
pub const BEARER: &str = "bearer";

/// A service's whole document: its routes' description completed with the shared parts.
pub fn document(api: &OpenApi) -> Value {
    let mut doc = serde_json::to_value(api).expect("an OpenAPI document serialises");
    complete(&mut doc);
    doc
}

/// Adds the shared parts to a document in its JSON form.
pub fn complete(doc: &mut Value) {
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let mut secured = false;
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for (method, op) in item.iter_mut() {
                if !is_method(method) {
                    continue;
                }
                let Some(op) = op.as_object_mut() else {
                    continue;
                };
                let needs_token = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.iter().any(|r| r.get(BEARER).is_some()));
                secured |= needs_token;
                if let Some(body) = op.get_mut("requestBody") {
                    never_null(body);
                }
                let responses = op
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("responses is an object");
                if needs_token {
                    add_problem(responses, "401", "No bearer token", &problem);
                    add_problem(responses, "403", "Wrong bearer token", &problem);
                }
                for (status, response) in responses.iter_mut() {
                    describe(status, response);
                }
            }
        }
        add_operations(paths, &problem);
    }
    let components = doc
        .as_object_mut()
        .expect("a document is an object")
        .entry("components")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("components is an object");
    if secured {
        components
            .entry("securitySchemes")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("securitySchemes is an object")
            .entry(BEARER)
            .or_insert_with(|| {
                json!({
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The service's internal or admin token, as `Authorization: Bearer <token>`",
                })
            });
    }
}

/// A request body is never a literal `null`: an optional body is one that may be absent
/// (`required: false`), and `null` is refused like any other body of the wrong shape.
fn never_null(body: &mut Value) {
    let Some(content) = body.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    for media in content.values_mut() {
        let Some(schema) = media.get_mut("schema") else {
            continue;
        };
        if let Some(alternatives) = schema.get_mut("oneOf").and_then(Value::as_array_mut) {
            alternatives.retain(|s| s.get("type") != Some(&Value::from("null")));
            if alternatives.len() == 1 {
                let only = alternatives.remove(0);
                *schema = only;
            }
        }
    }
}

fn is_method(key: &str) -> bool {
    matches!(
        key,
        "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
    )
}

fn add_problem(
    responses: &mut Map<String, Value>,
    status: &str,
    description: &str,
    schema: &Value,
) {
    responses.entry(status).or_insert_with(|| {
        json!({
            "description": description,
            "content": {crate::problem::CONTENT_TYPE: {"schema": schema}},
        })
    });
}

/// A response without a description gets its status's reason phrase.
fn describe(status: &str, response: &mut Value) {
    let Some(response) = response.as_object_mut() else {
        return;
    };
    if response.contains_key("$ref") {
        return;
    }
    let missing = response
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if missing {
        let reason = status
            .parse::<u16>()
            .ok()
            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Response");
        response.insert("description".into(), Value::from(reason));
    }
}

/// `/healthz`, `/readyz` and `/metrics`, as `common::health` and `common::metrics` serve them.
fn add_operations(paths: &mut Map<String, Value>, problem: &Value) {
    paths.entry("/healthz").or_insert_with(|| {
        json!({"get": {
            "tags": ["operations"],
            "summary": "The process answers",
            "operationId": "healthz",
            "responses": {"200": {
                "description": "Alive",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                }}},
            }},
        }})
    });
    paths.entry("/readyz").or_insert_with(|| {
        json!({"get": {
            "tags": ["operations"],
            "summary": "The service's stores answer",
            "operationId": "readyz",
            "responses": {
                "200": {
                    "description": "Ready; each check's outcome",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["status", "checks"],
                        "properties": {
                            "status": {"type": "string", "enum": ["ready"]},
                            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    }}},
                },
                "503": {
                    "description": "A store does not answer; `detail` names it",
                    "content": {crate::problem::CONTENT_TYPE: {"schema": problem}},
                },
            },
        }})
    });
    paths.entry("/metrics").or_insert_with(|| {
        json!({"get": {
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {"200": {
                "description": "The Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }},
        }})
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secured_operations_get_the_scheme_and_their_auth_answers() {
        let mut doc = json!({
            "openapi": "3.1.0",
            "paths": {"/admin/x": {"get": {
                "security": [{"bearer": []}],
                "responses": {"200": {}},
            }}},
        });
        complete(&mut doc);
        let op = &doc["paths"]["/admin/x"]["get"];
        assert_eq!(op["responses"]["200"]["description"], "OK");
        assert!(op["responses"]["401"]["description"].is_string());
        assert!(op["responses"]["403"]["description"].is_string());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
        }
    }

    #[test]
    fn a_document_without_secured_operations_declares_no_scheme() {
        let mut doc = json!({"openapi": "3.1.0", "paths": {"/v1/x": {"get": {"responses": {}}}}});
        complete(&mut doc);
        assert!(doc["components"].get("securitySchemes").is_none());
    }
}
