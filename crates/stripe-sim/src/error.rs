//! Stripe's error wire shape, for every error the simulator answers.
//!
//! Clients (async-stripe, stripe-python) parse `{"error": {...}}` into typed errors, so every
//! failure — auth, validation, declines, idempotency, injected faults — goes through
//! [`ApiError`] and renders exactly one way.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Stripe's `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A problem on Stripe's side (5xx).
    Api,
    /// The card was declined or could not be charged.
    Card,
    /// An idempotency key was reused with other parameters.
    Idempotency,
    /// The request itself is wrong.
    InvalidRequest,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api_error",
            Self::Card => "card_error",
            Self::Idempotency => "idempotency_error",
            Self::InvalidRequest => "invalid_request_error",
        }
    }
}

/// One Stripe error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// `error.type`.
    pub kind: ErrorType,
    /// `error.code`, e.g. `card_declined`.
    pub code: Option<&'static str>,
    /// `error.decline_code` for card errors.
    pub decline_code: Option<&'static str>,
    /// Human-readable `error.message`.
    pub message: String,
    /// The request parameter at fault.
    pub param: Option<String>,
    /// The objects a card error concerns (boxed: most errors have none).
    pub related: Option<Box<Related>>,
    /// Value of the `Stripe-Should-Retry` header, when Stripe would send one.
    pub should_retry: Option<bool>,
}

/// Objects a card error points at.
#[derive(Debug, Clone, Default)]
pub struct Related {
    /// Id of the failed charge.
    pub charge: Option<String>,
    /// Snapshot of the PaymentIntent.
    pub payment_intent: Option<Value>,
    /// Snapshot of the PaymentMethod.
    pub payment_method: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            param: None,
            related: None,
            should_retry: None,
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }

    /// A 400 naming the parameter at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    /// `Missing required param: {param}.`
    pub fn missing_param(param: &str) -> Self {
        Self::invalid_param(param, format!("Missing required param: {param}."))
            .with_code("parameter_missing")
    }

    /// `Received unknown parameter: {param}`.
    pub fn unknown_param(param: &str) -> Self {
        Self::invalid_param(param, format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
    }

    /// A 404 `resource_missing` for `object` (e.g. `payment_intent`) with this id.
    pub fn resource_missing(object: &str, id: &str, param: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            format!("No such {object}: '{id}'"),
        )
        .with_code("resource_missing")
        .with_param(param)
    }

    /// A 400 `payment_intent_unexpected_state`.
    pub fn unexpected_state(message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_code("payment_intent_unexpected_state")
    }

    /// A 401 for a missing or unusable API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorType::InvalidRequest, message)
    }

    /// A 404 for a path Stripe does not serve.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs \
                 or we can help at https://support.stripe.com/."
            ),
        )
    }

    /// A 500 `api_error`, as Stripe answers when something breaks on its side.
    pub fn internal() -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Api,
            "An unknown error occurred while processing your request. Please try again.",
        );
        err.should_retry = Some(true);
        err
    }

    /// A 400 for an idempotency key reused with other parameters or on another endpoint.
    pub fn idempotency_mismatch(key: &str) -> Self {
        let mut err = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::Idempotency,
            format!(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with. Try using a key other than '{key}' if you meant to \
                 execute a different request."
            ),
        );
        err.should_retry = Some(false);
        err
    }

    /// A 409 while another request with the same idempotency key is still running.
    pub fn idempotency_in_flight(key: &str) -> Self {
        let mut err = Self::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequest,
            format!(
                "There is currently another in-progress request using this Idempotent Key \
                 (that probably means you submitted twice, and the other request is still \
                 going through): {key}. Please try again later."
            ),
        )
        .with_code("idempotency_key_in_use");
        err.should_retry = Some(true);
        err
    }

    /// A 402 `card_error`.
    pub fn card(code: &'static str, decline_code: Option<&'static str>, message: &str) -> Self {
        let mut err = Self::new(StatusCode::PAYMENT_REQUIRED, ErrorType::Card, message);
        err.code = Some(code);
        err.decline_code = decline_code;
        err
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets `error.param`.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// The related objects, created on first use.
    pub fn related_mut(&mut self) -> &mut Related {
        self.related.get_or_insert_default()
    }

    /// The inner error object, as in a response or a PaymentIntent's `last_payment_error`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let related = self.related.as_deref().cloned().unwrap_or_default();
        if let Some(charge) = related.charge {
            map.insert("charge".into(), json!(charge));
        }
        if let Some(code) = self.code {
            map.insert("code".into(), json!(code));
            map.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        if let Some(decline_code) = self.decline_code {
            map.insert("decline_code".into(), json!(decline_code));
        }
        map.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            map.insert("param".into(), json!(param));
        }
        if let Some(pi) = related.payment_intent {
            map.insert("payment_intent".into(), pi);
        }
        if let Some(pm) = related.payment_method {
            map.insert("payment_method".into(), pm);
        }
        map.insert("type".into(), json!(self.kind.as_str()));
        Value::Object(map)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.to_json() }))).into_response();
        if let Some(retry) = self.should_retry {
            response.headers_mut().insert(
                "stripe-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_renders_stripes_fields() {
        let mut err = ApiError::card("card_declined", Some("insufficient_funds"), "No money.");
        err.related_mut().charge = Some("ch_1".into());
        let json = err.to_json();
        assert_eq!(json["type"], "card_error");
        assert_eq!(json["code"], "card_declined");
        assert_eq!(json["decline_code"], "insufficient_funds");
        assert_eq!(json["charge"], "ch_1");
        assert!(json.get("param").is_none());
    }
}
