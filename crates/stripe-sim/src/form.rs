//! Stripe's form-encoded request parameters.
//!
//! Stripe takes `application/x-www-form-urlencoded` bodies with bracketed nesting
//! (`metadata[order_id]=…`, `expand[]=…`, `automatic_payment_methods[enabled]=true`).
//! [`Params`] decodes a body once and answers typed questions with Stripe's own error messages.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Most metadata keys Stripe accepts on one object.
const METADATA_MAX_KEYS: usize = 50;
/// Longest metadata key Stripe accepts.
const METADATA_MAX_KEY_LEN: usize = 40;
/// Longest metadata value Stripe accepts.
const METADATA_MAX_VALUE_LEN: usize = 500;

/// Decoded request parameters, in the order they were sent.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes a form-encoded body (or query string).
    pub fn parse(body: &[u8]) -> Self {
        let pairs = form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()));
        Self {
            pairs: pairs.collect(),
        }
    }

    /// Rejects any top-level parameter not in `allowed`, as Stripe does.
    pub fn reject_unknown(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self
            .pairs
            .iter()
            .map(|(k, _)| root(k))
            .find(|r| !allowed.contains(r))
        {
            Some(unknown) => Err(ApiError::unknown_param(unknown)),
            None => Ok(()),
        }
    }

    /// The value of a plain (non-nested) parameter; empty values count as absent.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A parameter that must be present.
    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing_param(name))
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name)
            .map(|raw| {
                raw.parse::<i64>()
                    .map_err(|_| ApiError::invalid_param(name, format!("Invalid integer: {raw}")))
            })
            .transpose()
    }

    /// A strictly positive integer parameter, such as an amount.
    pub fn positive_int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.int(name)? {
            Some(n) if n < 1 => Err(ApiError::invalid_param(
                name,
                "This value must be greater than or equal to 1.",
            )),
            other => Ok(other),
        }
    }

    /// A boolean parameter (`true`/`false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(raw) => Err(ApiError::invalid_param(
                name,
                format!("Invalid boolean: {raw}"),
            )),
        }
    }

    /// A string parameter limited to `allowed` values.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(v) => Err(ApiError::invalid_param(
                name,
                format!(
                    "Invalid {name}: must be one of {} (got {v:?})",
                    allowed.join(", ")
                ),
            )
            .with_code("parameter_invalid_string")),
        }
    }

    /// The entries of a hash parameter: `name[key]=value`.
    pub fn map(&self, name: &str) -> BTreeMap<String, String> {
        let prefix = format!("{name}[");
        self.pairs
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(&prefix)?.strip_suffix(']')?;
                (!key.contains('[')).then(|| (key.to_owned(), v.clone()))
            })
            .collect()
    }

    /// The items of an array parameter: `name[]=a&name[]=b` or `name[0]=a&name[1]=b`.
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}[");
        self.pairs
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(']'))
                    .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Metadata under Stripe's limits; an empty value deletes a key, as on Stripe.
    pub fn metadata(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let mut metadata = self.map("metadata");
        metadata.retain(|_, v| !v.is_empty());
        if metadata.len() > METADATA_MAX_KEYS {
            return Err(ApiError::invalid_param(
                "metadata",
                format!("You can only specify up to {METADATA_MAX_KEYS} keys in metadata."),
            ));
        }
        for (key, value) in &metadata {
            if key.chars().count() > METADATA_MAX_KEY_LEN {
                return Err(ApiError::invalid_param(
                    &format!("metadata[{key}]"),
                    format!("Metadata keys can have up to {METADATA_MAX_KEY_LEN} characters."),
                ));
            }
            if value.chars().count() > METADATA_MAX_VALUE_LEN {
                return Err(ApiError::invalid_param(
                    &format!("metadata[{key}]"),
                    format!("Metadata values can have up to {METADATA_MAX_VALUE_LEN} characters."),
                ));
            }
        }
        Ok(metadata)
    }

    /// A canonical form of the parameters: equal for equal requests, whatever their order.
    pub fn fingerprint(&self) -> String {
        let mut pairs: Vec<_> = self.pairs.iter().collect();
        pairs.sort();
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

/// The top-level name of a possibly nested key: `metadata[order_id]` → `metadata`.
fn root(key: &str) -> &str {
    key.split_once('[').map_or(key, |(root, _)| root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_decode_into_maps_and_lists() {
        let params = Params::parse(
            b"amount=1500&metadata%5Border_id%5D=ord_1&metadata[note]=a+b&expand[]=x&expand[1]=y",
        );
        assert_eq!(params.int("amount").unwrap(), Some(1500));
        let metadata = params.metadata().unwrap();
        assert_eq!(metadata["order_id"], "ord_1");
        assert_eq!(metadata["note"], "a b");
        assert_eq!(params.list("expand"), ["x", "y"]);
    }

    #[test]
    fn unknown_parameters_are_named() {
        let params = Params::parse(b"amount=1&colour=red");
        let err = params.reject_unknown(&["amount"]).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("colour"));
    }

    #[test]
    fn bad_scalars_are_rejected_with_stripes_wording() {
        let params = Params::parse(b"amount=ten&confirm=yes");
        assert_eq!(
            params.int("amount").unwrap_err().message,
            "Invalid integer: ten"
        );
        assert_eq!(
            params.bool("confirm").unwrap_err().message,
            "Invalid boolean: yes"
        );
    }

    #[test]
    fn the_fingerprint_ignores_parameter_order() {
        let a = Params::parse(b"amount=1&currency=usd&metadata[a]=1");
        let b = Params::parse(b"metadata%5Ba%5D=1&currency=usd&amount=1");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(
            a.fingerprint(),
            Params::parse(b"amount=2&currency=usd").fingerprint()
        );
    }
}
