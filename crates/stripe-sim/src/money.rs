//! Amounts and currencies as Stripe checks and prints them.
//!
//! Stripe rejects amounts under a per-currency minimum or over eight digits and quotes
//! amounts in its messages in major units ("$0.50"); callers see the same here.

use crate::error::ApiError;

/// Largest amount Stripe accepts on one payment, in minor units.
const MAX_AMOUNT: i64 = 99_999_999;

/// Currencies whose minor unit is the major unit.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Stripe's minimum charge for the currencies it lists (minor units).
const MINIMUMS: &[(&str, i64)] = &[
    ("usd", 50),
    ("eur", 50),
    ("cad", 50),
    ("aud", 50),
    ("chf", 50),
    ("nzd", 50),
    ("sgd", 50),
    ("gbp", 30),
    ("jpy", 50),
];

/// Normalizes a currency parameter to Stripe's lower-case form.
pub fn parse_currency(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_param(
            "currency",
            format!("Invalid currency: {raw}."),
        ))
    }
}

/// Checks a payment amount against Stripe's minimum and maximum for the currency.
pub fn check_amount(amount: i64, currency: &str) -> Result<(), ApiError> {
    if let Some((_, min)) = MINIMUMS.iter().find(|(c, _)| *c == currency)
        && amount < *min
    {
        return Err(ApiError::invalid_param(
            "amount",
            format!(
                "Amount must be at least {} {currency}",
                format(*min, currency)
            ),
        )
        .with_code("amount_too_small"));
    }
    if amount > MAX_AMOUNT {
        return Err(ApiError::invalid_param(
            "amount",
            format!(
                "Amount must be no more than {}",
                format(MAX_AMOUNT, currency)
            ),
        )
        .with_code("amount_too_large"));
    }
    Ok(())
}

/// An amount in major units for messages: `$12.34`, `12.34 EUR`, `500 JPY`.
pub fn format(amount: i64, currency: &str) -> String {
    let major = if ZERO_DECIMAL.contains(&currency) {
        amount.to_string()
    } else {
        format!("{}.{:02}", amount / 100, (amount % 100).abs())
    };
    if currency == "usd" {
        format!("${major}")
    } else {
        format!("{major} {}", currency.to_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_lower_cased_and_checked() {
        assert_eq!(parse_currency("USD").unwrap(), "usd");
        assert!(parse_currency("dollars").is_err());
    }

    #[test]
    fn amounts_print_in_major_units() {
        assert_eq!(format(1234, "usd"), "$12.34");
        assert_eq!(format(5, "eur"), "0.05 EUR");
        assert_eq!(format(500, "jpy"), "500 JPY");
    }

    #[test]
    fn amounts_under_the_minimum_are_rejected() {
        let err = check_amount(49, "usd").unwrap_err();
        assert_eq!(err.code, Some("amount_too_small"));
        assert_eq!(err.message, "Amount must be at least $0.50 usd");
        assert!(check_amount(50, "usd").is_ok());
        assert!(check_amount(1, "xyz").is_ok());
        assert!(check_amount(MAX_AMOUNT + 1, "usd").is_err());
    }
}
