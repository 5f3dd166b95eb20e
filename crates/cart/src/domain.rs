//! The cart's domain types. Request bodies become these once, at the edge; the store and the
//! pricing code below never re-check a quantity or a sku.

use common::{FieldError, money::Currency};

common::prefixed_id!(
    /// A cart's id; it is also the cart's access token, hence its 130 random bits.
    CartId,
    "crt"
);

/// The largest quantity of one line.
pub const MAX_QUANTITY: u32 = 99;

/// A product's stock-keeping unit, as the catalog spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
    /// A sku when `raw` has the catalog's shape (1–64 of `A-Z a-z 0-9 . _ -`).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && raw.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new("sku", "unknown sku"))
        }
    }

    /// The sku as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A line quantity in `1..=99`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    /// A quantity to add or set on a line.
    pub fn parse(raw: i64) -> Result<Self, FieldError> {
        match u32::try_from(raw) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(Self(q)),
            _ => Err(FieldError::new(
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            )),
        }
    }

    /// The quantity as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// What a `PUT` on a line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTarget {
    /// Set the line to this quantity.
    Set(Quantity),
    /// Remove the line.
    Remove,
}

impl LineTarget {
    /// `0` removes; anything else must be a valid quantity.
    pub fn parse(raw: i64) -> Result<Self, FieldError> {
        if raw == 0 {
            Ok(Self::Remove)
        } else {
            Quantity::parse(raw).map(Self::Set)
        }
    }
}

/// ISO 4217 codes of money in circulation, sorted: what a catalog can price in. Fund,
/// metal and testing codes (`XAU`, `XTS`, `USN`…) are not money a shopper pays with.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
    "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG",
    "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// A new cart's currency: `USD` when absent, else a circulating ISO 4217 code. A well-formed
/// code that names no currency (`XYZ`) is refused like a malformed one: no product could
/// ever be priced in it, so every add would fail later.
pub fn cart_currency(raw: Option<&str>) -> Result<Currency, FieldError> {
    let Some(code) = raw else {
        return Ok(Currency::USD);
    };
    let refused = || {
        FieldError::new(
            "currency",
            "must be an ISO 4217 currency code such as USD or EUR",
        )
    };
    let currency: Currency = code.parse().map_err(|_| refused())?;
    if ISO_4217.binary_search(&currency.as_str()).is_ok() {
        Ok(currency)
    } else {
        Err(refused())
    }
}

/// A cart as stored: currency, version and quantities; prices are looked up on read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCart {
    /// The cart's id.
    pub id: CartId,
    /// The one currency every line must be priced in.
    pub currency: Currency,
    /// Incremented by every write; the cart's ETag.
    pub version: u64,
    /// `(sku, quantity)`, sorted by sku.
    pub lines: Vec<(String, u32)>,
    /// Milliseconds until the cart expires.
    pub ttl_ms: i64,
}

/// A precondition from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No precondition, or `If-Match: *` (the cart must exist, as it must anyway).
    Any,
    /// The cart must be at this version.
    Version(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_one_to_ninety_nine() {
        assert!(Quantity::parse(1).is_ok());
        assert!(Quantity::parse(99).is_ok());
        for bad in [0, -1, 100, i64::MAX] {
            assert_eq!(Quantity::parse(bad).unwrap_err().field, "quantity");
        }
        assert_eq!(LineTarget::parse(0).unwrap(), LineTarget::Remove);
    }

    #[test]
    fn currencies_are_circulating_iso_4217_codes() {
        assert_eq!(cart_currency(None).unwrap(), Currency::USD);
        assert_eq!(cart_currency(Some("EUR")).unwrap().as_str(), "EUR");
        assert_eq!(cart_currency(Some("JPY")).unwrap().as_str(), "JPY");
        for bad in ["XYZ", "XAU", "XTS", "usd", "US", ""] {
            assert_eq!(
                cart_currency(Some(bad)).unwrap_err().field,
                "currency",
                "{bad}"
            );
        }
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "the list stays sorted"
        );
    }

    #[test]
    fn skus_have_the_catalog_shape() {
        assert!(Sku::parse("TSHIRT-RED-M").is_ok());
        for bad in ["", "-x", "a b", "x;DROP", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }
}
