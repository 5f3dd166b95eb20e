//! RFC 9457 problem details: the one error shape every service answers with, and the one
//! list of problem types (`ProblemType`) they draw from, so a client can match on `type`
//! knowing every value it may see. Services map their own error enum onto `Problem`;
//! `ApiJson` makes body-parsing failures problem+json too, so a client never sees a
//! plain-text rejection.

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, Serializer, de::DeserializeOwned};
use utoipa::{
    ToSchema,
    openapi::{ObjectBuilder, Type},
};

/// The media type of every error body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Declares `ProblemType` and its table: variant, wire code, status, title, meaning.
macro_rules! problem_types {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $status:ident, $title:literal, $meaning:literal;)+) => {
        /// Every kind of problem a service answers with. Its wire form, `/problems/<code>`, is
        /// the `type` of the body; codes never change once published.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($(#[$doc])* $variant,)+
        }

        impl ProblemType {
            /// Every problem type, in the order the README lists them.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant),+];

            /// The code: the last segment of the `type` URI (`idempotency-key-reused`).
            pub const fn code(self) -> &'static str {
                match self { $(ProblemType::$variant => $code,)+ }
            }

            /// The status this problem is answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(ProblemType::$variant => StatusCode::$status,)+ }
            }

            /// The summary that does not change between occurrences.
            pub const fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)+ }
            }

            /// What it means for a client, as the README's table says.
            pub const fn meaning(self) -> &'static str {
                match self { $(ProblemType::$variant => $meaning,)+ }
            }
        }
    };
}

problem_types! {
    /// A field breaks a rule; `errors` names each one.
    Validation = "validation", UNPROCESSABLE_ENTITY, "The request is not valid",
        "a field breaks a rule; `errors` names each field";
    /// The body is not JSON.
    MalformedJson = "malformed-json", BAD_REQUEST, "The body is not valid JSON",
        "the body does not parse as JSON";
    /// A JSON body sent without `Content-Type: application/json`.
    UnsupportedMediaType = "unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "Expected a JSON body",
        "a body operation was sent without `Content-Type: application/json`";
    /// The body is larger than the service takes.
    PayloadTooLarge = "payload-too-large", PAYLOAD_TOO_LARGE, "The body is too large",
        "the body is over the size limit";
    /// The request head or body could not be read.
    BadRequest = "bad-request", BAD_REQUEST, "The request could not be read",
        "the request's head or body is unreadable or ambiguous";
    /// No such resource or route.
    NotFound = "not-found", NOT_FOUND, "Not found",
        "no such resource (a malformed id included) or route";
    /// The route exists, not with this method.
    MethodNotAllowed = "method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "the route does not take this method";
    /// No bearer token.
    Unauthorized = "unauthorized", UNAUTHORIZED, "Authentication required",
        "an internal or admin route was called without a bearer token";
    /// A bearer token that is not the right one.
    Forbidden = "forbidden", FORBIDDEN, "Not allowed",
        "the bearer token is not the right one";
    /// Too many wrong admin tokens from this client.
    LockedOut = "locked-out", TOO_MANY_REQUESTS, "Too many wrong admin tokens",
        "the gateway's admin API refuses this client for a while (`Retry-After`)";
    /// A store or upstream did not answer.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE, "Service temporarily unavailable",
        "a store or upstream did not answer; retry (`Retry-After`)";
    /// `/readyz`: a store does not answer.
    NotReady = "not-ready", SERVICE_UNAVAILABLE, "Not ready",
        "`/readyz`: a store the service needs does not answer";
    /// A bug or corrupt data; the cause is in the logs.
    Internal = "internal", INTERNAL_SERVER_ERROR, "Internal server error",
        "an unexpected error, logged with its cause";
    /// `If-Match` names a version the cart is no longer at.
    StaleCart = "stale-cart", PRECONDITION_FAILED, "The cart has changed",
        "`If-Match` names an older version of the cart; read it again";
    /// A checkout or payment without an `Idempotency-Key`.
    IdempotencyKeyRequired = "idempotency-key-required", BAD_REQUEST, "Idempotency-Key required",
        "the operation needs an `Idempotency-Key` header (1–255 visible characters)";
    /// The key was used before with another body.
    IdempotencyKeyReused = "idempotency-key-reused", UNPROCESSABLE_ENTITY, "Idempotency-Key reused",
        "the `Idempotency-Key` was used before with a different body";
    /// The first request with this key has not finished.
    IdempotencyKeyInFlight = "idempotency-key-in-flight", CONFLICT, "Request in flight",
        "the first request with this `Idempotency-Key` has not finished; retry";
    /// The cart is missing, empty or holds a product no longer sold.
    CartNotOrderable = "cart-not-orderable", UNPROCESSABLE_ENTITY, "The cart cannot be checked out",
        "the cart is missing, expired, empty or holds a product no longer sold";
    /// A payment outcome arrived before the order recorded its payment.
    PaymentNotRecorded = "payment-not-recorded", CONFLICT, "The order has not recorded a payment yet",
        "internal: the order has not recorded its payment yet; retry";
    /// The process follows as many orders as it may.
    TooManyEventStreams = "too-many-event-streams", TOO_MANY_REQUESTS, "Too many event streams",
        "orders holds as many event streams as it may; poll the order instead";
    /// The order already has a payment for another amount or currency.
    OrderHasPayment = "order-has-payment", UNPROCESSABLE_ENTITY, "The order already has a payment",
        "internal: the order's payment was created with other terms";
    /// The order ended without its payment.
    PaymentClosed = "payment-closed", UNPROCESSABLE_ENTITY, "The order's payment is closed",
        "internal: the order ended; nothing more is charged for it";
    /// The refund cannot be made.
    NotRefundable = "not-refundable", UNPROCESSABLE_ENTITY, "The refund cannot be made",
        "the payment is not paid, or the amount is more than is left to refund";
    /// Stripe refused the request.
    ProviderRefused = "provider-refused", UNPROCESSABLE_ENTITY, "The payment provider refused the request",
        "Stripe refused the request; `detail` has its code";
    /// A webhook whose signature does not verify.
    InvalidSignature = "invalid-signature", BAD_REQUEST, "The webhook signature is not valid",
        "a webhook's `Stripe-Signature` is missing, stale or forged";
    /// A signed webhook body that is not a Stripe event.
    MalformedEvent = "malformed-event", BAD_REQUEST, "The body is not a Stripe event",
        "a webhook's body is not a Stripe event";
    /// One client holds as many event streams through the gateway as it may.
    TooManyStreams = "too-many-streams", TOO_MANY_REQUESTS, "Too many event streams",
        "gateway: this client holds as many event streams as it may";
    /// One client holds as many connections to the gateway as it may.
    TooManyConnections = "too-many-connections", TOO_MANY_REQUESTS, "Too many connections",
        "gateway: this client holds as many connections as it may";
    /// The body did not arrive whole in time.
    BodyTimeout = "body-timeout", REQUEST_TIMEOUT, "The request body took too long",
        "gateway: the body did not arrive whole in time";
    /// A `Transfer-Encoding` other than one `chunked`.
    NotImplemented = "not-implemented", NOT_IMPLEMENTED, "Transfer coding not supported",
        "gateway: a `Transfer-Encoding` other than a single `chunked`";
    /// Per-client rate limit.
    RateLimited = "rate-limited", TOO_MANY_REQUESTS, "Too many requests",
        "gateway: the client's rate limit; retry after `Retry-After`";
    /// Load shedding.
    Overloaded = "overloaded", SERVICE_UNAVAILABLE, "The gateway is overloaded",
        "gateway: too many requests in flight; retry shortly";
    /// The service behind the route did not answer in time.
    UpstreamTimeout = "upstream-timeout", GATEWAY_TIMEOUT, "The service did not answer in time",
        "gateway: the service behind the route did not answer in time";
    /// The service behind the route could not be reached.
    BadGateway = "bad-gateway", BAD_GATEWAY, "The service is unreachable",
        "gateway: the service behind the route could not be reached";
    /// The route belongs to the legacy system, which is not configured.
    NoUpstream = "no-upstream", BAD_GATEWAY, "No service handles this route",
        "gateway: the route goes to the legacy system, which is not configured";
}

impl ProblemType {
    /// The wire form: `/problems/<code>`.
    pub fn uri(self) -> String {
        format!("/problems/{}", self.code())
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/problems/{}", self.code())
    }
}

impl Serialize for ProblemType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `type` field's schema: one of the published URIs.
fn problem_type_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("What kind of problem this is; one of a fixed list"))
        .enum_values(Some(ProblemType::ALL.iter().map(|t| t.uri())))
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name (`quantity`, `items[2].sku`).
    pub field: String,
    /// What is wrong with it, in words a client can show.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem; the body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem (`/problems/validation`).
    #[serde(rename = "type")]
    #[schema(schema_with = problem_type_schema)]
    pub kind: ProblemType,
    /// A short summary that does not change between occurrences.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// An explanation specific to this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `kind`, with its status and title.
    pub fn new(kind: ProblemType) -> Self {
        Self {
            kind,
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds the occurrence-specific explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a header to the response (`Retry-After`, `ETag`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 422 with the invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut problem = Self::new(ProblemType::Validation).detail(detail);
        problem.errors = errors;
        problem
    }

    /// 422 for a single invalid field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: &str) -> Self {
        Self::new(ProblemType::NotFound).detail(format!("{what} was not found"))
    }

    /// 401: credentials missing.
    pub fn unauthorized() -> Self {
        Self::new(ProblemType::Unauthorized)
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 403: credentials present but wrong.
    pub fn forbidden() -> Self {
        Self::new(ProblemType::Forbidden)
    }

    /// 503 for a store or upstream that does not answer; the cause is logged, never sent.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what} unavailable");
        Self::new(ProblemType::Unavailable)
            .detail(format!("{what} is not answering; retry shortly"))
            .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// 500 for an unexpected error: the cause chain is logged here, inside the request's
    /// span, and the client gets a fixed text.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "unexpected error");
        Self::new(ProblemType::Internal).detail("An unexpected error occurred; it has been logged")
    }

    /// A Postgres failure: 503 when the database cannot be reached (pool exhausted or closed,
    /// connection lost), so a client retries; 500 for anything else. Neither sends SQL.
    pub fn database(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable("The database", e)
            }
            e => Self::internal(e),
        }
    }

    /// A body that did not parse as JSON (400), or parsed but does not fit the request's
    /// shape (422).
    pub fn from_json_error(e: &serde_json::Error) -> Self {
        let kind = if e.is_data() {
            ProblemType::Validation
        } else {
            ProblemType::MalformedJson
        };
        Self::new(kind).detail(e.to_string())
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let status = self.status();
        let mut headers = HeaderMap::with_capacity(1 + self.headers.len());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        (status, headers, body).into_response()
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                let mut problem = Self::new(ProblemType::Validation);
                // axum's text is "<context>: <path>: <serde message>"; the path names the field.
                let cause = text
                    .split_once(": ")
                    .map_or(text.as_str(), |(_, rest)| rest);
                if let Some((field, message)) = cause.split_once(": ")
                    && !field.contains(' ')
                {
                    problem.errors = vec![FieldError::new(field, message)];
                }
                problem.detail(cause.to_owned())
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(ProblemType::MalformedJson).detail(e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => {
                Self::new(ProblemType::UnsupportedMediaType)
                    .detail("Send the body with Content-Type: application/json")
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(ProblemType::PayloadTooLarge)
            }
            other => Self::new(ProblemType::BadRequest).detail(other.body_text()),
        }
    }
}

/// A JSON body whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Answers any route that does not exist.
pub async fn not_found_fallback() -> Problem {
    Problem::new(ProblemType::NotFound).detail("No such route")
}

/// Answers a known route called with the wrong method.
pub async fn method_not_allowed_fallback() -> Problem {
    Problem::new(ProblemType::MethodNotAllowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_has_a_distinct_code_and_an_error_status() {
        let mut codes: Vec<&str> = ProblemType::ALL.iter().map(|t| t.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ProblemType::ALL.len());
        for t in ProblemType::ALL {
            assert!(t.status().as_u16() >= 400, "{t}");
            assert!(
                t.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{t}"
            );
        }
    }

    #[test]
    fn a_problem_serialises_its_type_as_the_published_uri() {
        let body = serde_json::to_value(Problem::new(ProblemType::IdempotencyKeyReused)).unwrap();
        assert_eq!(body["type"], "/problems/idempotency-key-reused");
        assert_eq!(body["status"], 422);
        assert_eq!(body["title"], "Idempotency-Key reused");
    }

    #[test]
    fn the_readme_lists_every_problem_type() {
        let readme = include_str!("../../../README.md");
        for t in ProblemType::ALL {
            let row = format!("| `{}` | {} |", t.uri(), t.status().as_u16());
            assert!(readme.contains(&row), "README.md has no row {row}");
        }
    }
}
